"""`trackflow up` as a supervisor: its children die with it, the next `up` starts cleanly;
and the data dir it shares with the worker stays private."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from starters.embedded import ChildKeepsExiting, EmbeddedStack, RestartPolicy, _local_secret
from tests.harness import (
    clean_env,
    eventually,
    free_port,
    outbox,
    poll_json,
    sent,
    up_command,
    up_ports,
    wait_until_healthy,
    zone_at_local_hour,
)
from trackflow.settings import SUPERVISOR_FD_ENV, Settings
from workers.worker import run_worker

TRACKING_NUMBER = "1Z5R89390357567127"
RESTART_DEADLINE_S = 30.0


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for whoever adopted it to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _wait_until_dead(pids: set[int], what: str, deadline_s: float = 12.0) -> None:
    deadline = time.monotonic() + deadline_s
    while (alive := {pid for pid in pids if _alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive, f"{what}: still running after {deadline_s}s: {sorted(alive)}"


@contextmanager
def supervisor(
    data_dir: Path,
    ports: dict[str, int],
    log: Path,
    previous: frozenset[int] = frozenset(),
    env: dict[str, str] | None = None,
) -> Iterator[tuple[subprocess.Popen[str], httpx.Client]]:
    """`trackflow up` in its own process group, as a shell runs it, healthy within the
    restart deadline. The `previous` stack's processes must be gone first, so that it is
    the new API that answers. `env`: settings added to a clean environment."""
    started = time.monotonic()
    with log.open("w") as output:
        process = subprocess.Popen(
            up_command(data_dir, ports),
            env=clean_env() | (env or {}),
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        _wait_until_dead(set(previous), "the processes of the SIGKILLed supervisor")
        left = RESTART_DEADLINE_S - (time.monotonic() - started)
        token = wait_until_healthy(ports["api"], data_dir, process, left)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{ports['api']}", headers=headers) as http:
            yield process, http
    except BaseException:
        print(log.read_text())
        raise
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)


def _notified(http: httpx.Client, count: int) -> list[str]:
    view = poll_json(
        http, f"/v1/shipments/{TRACKING_NUMBER}", lambda v: len(v["notifications"]) >= count
    )
    return [n["trigger"] for n in view["notifications"]]


def test_up_starts_again_after_its_group_or_itself_is_sigkilled(tmp_path: Path) -> None:
    data_dir, ports = tmp_path / "data", up_ports()
    shipment = {
        "order_id": "5002",
        "tracking_number": TRACKING_NUMBER,
        "carrier": "ups",
        "customer": {"name": "Ada", "email": "ada@example.com", "timezone": zone_at_local_hour(12)},
        "order_value": 20,
    }
    event = {"tracking_number": TRACKING_NUMBER, "occurred_at": "2026-11-20T14:03:00Z"}
    started: set[int] = set()
    try:
        with supervisor(data_dir, ports, tmp_path / "up-1.log") as (process, http):
            assert http.post("/v1/shipments", json=shipment).status_code == 202
            assert http.post("/v1/events", json=event | {"status": "in_transit"}).status_code == 202
            assert _notified(http, 1) == ["in_transit"]
            children = _descendants(process.pid)
            started |= children
            os.killpg(process.pid, signal.SIGKILL)  # a terminal closing, or `kill -9 -PGID`
            process.wait()
            _wait_until_dead(children, "children of a SIGKILLed process group")

        with supervisor(data_dir, ports, tmp_path / "up-2.log") as (process, http):
            later = event | {"status": "out_for_delivery", "occurred_at": "2026-11-21T08:00:00Z"}
            assert http.post("/v1/events", json=later).status_code == 202
            assert _notified(http, 2) == ["in_transit", "out_for_delivery"]
            children = _descendants(process.pid)
            started |= children
            process.kill()  # the supervisor alone; `up` runs again at once, while they stop
            process.wait()

        previous = frozenset(children)
        with supervisor(data_dir, ports, tmp_path / "up-3.log", previous) as (process, http):
            last = event | {"status": "delivered", "occurred_at": "2026-11-21T12:00:00Z"}
            assert http.post("/v1/events", json=last).status_code == 202
            assert _notified(http, 3) == ["in_transit", "out_for_delivery", "delivered"]
            started |= _descendants(process.pid)
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
        _wait_until_dead(started, "children after a clean stop")

        records = asyncio.run(outbox(data_dir, TRACKING_NUMBER))
        assert sent(records) == [
            ("in_transit", "email"),
            ("out_for_delivery", "email"),
            ("delivered", "email"),
        ]
    finally:
        for pid in started:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _child_pid(data_dir: Path, command: str) -> int | None:
    """The pid `up.pids` lists for `trackflow <command>`."""
    try:
        children = json.loads((data_dir / "up.pids").read_text() or "{}").get("children", [])
    except ValueError:  # read while `up` rewrites it
        return None
    pids = [c["pid"] for c in children if c["argv"][3:4] == [command]]
    return pids[0] if pids else None


def _restarted(data_dir: Path, command: str, old: int, process: subprocess.Popen[str]) -> int:
    """The pid of the `trackflow <command>` that replaced `old`, once it runs."""
    deadline = time.monotonic() + RESTART_DEADLINE_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "trackflow up exited"
        pid = _child_pid(data_dir, command)
        if pid is not None and pid != old and _alive(pid):
            return pid
        time.sleep(0.1)
    raise AssertionError(f"no new {command} within {RESTART_DEADLINE_S}s")


def test_up_restarts_a_killed_worker_and_the_stack_keeps_working(tmp_path: Path) -> None:
    """A long-running `up` outlives its worker's death: the worker comes back, listed in
    up.pids (so a later `up` after a kill -9 of this one stops it), and does the work."""
    data_dir, ports, log = tmp_path / "data", up_ports(), tmp_path / "up.log"
    shipment = {
        "order_id": "5003",
        "tracking_number": TRACKING_NUMBER,
        "carrier": "ups",
        "customer": {"name": "Mae", "email": "mae@example.com", "timezone": zone_at_local_hour(12)},
        "order_value": 20,
    }
    event = {"tracking_number": TRACKING_NUMBER, "occurred_at": "2026-11-20T14:03:00Z"}
    with supervisor(data_dir, ports, log) as (process, http):
        killed = _child_pid(data_dir, "worker")
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        worker = _restarted(data_dir, "worker", killed, process)

        assert http.get("/healthz").status_code == 200
        assert http.post("/v1/shipments", json=shipment).status_code == 202
        assert http.post("/v1/events", json=event | {"status": "in_transit"}).status_code == 202
        assert _notified(http, 1) == ["in_transit"]  # the new worker at work
        assert worker in _descendants(process.pid)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    _wait_until_dead({worker}, "the restarted worker after Ctrl-C")
    output = log.read_text()
    restarting = "the worker exited with code -9 (SIGKILL); restarting it in 1 s (restart 1)"
    assert restarting in output, output


def test_a_worker_that_keeps_exiting_stops_up_with_status_1_and_says_why(tmp_path: Path) -> None:
    """Its policy file broken while it runs: each new worker exits at start."""
    data_dir, ports, log = tmp_path / "data", up_ports(), tmp_path / "up.log"
    policy = tmp_path / "policy.json"
    policy.write_text("{}")
    env = {"TRACKFLOW_POLICY_FILE": str(policy)}
    with supervisor(data_dir, ports, log, env=env) as (process, _):
        children = _descendants(process.pid)
        policy.write_text("not a policy")
        worker = _child_pid(data_dir, "worker")
        assert worker is not None
        os.kill(worker, signal.SIGKILL)
        assert process.wait(timeout=90) == 1
    _wait_until_dead(children, "the children of an `up` that gave up")
    output = log.read_text()
    for restart, delay in ((1, 1), (2, 2), (3, 4), (4, 8)):
        assert f"restarting it in {delay} s (restart {restart})" in output, output
    assert "(restart 5)" not in output
    stopped = "the worker exited 5 times within 60 s (the last with code 1); stopping everything"
    assert f"trackflow up: {stopped}" in output, output
    assert "stopping…" not in output  # that is Ctrl-C's


def test_the_restart_delay_doubles_and_the_limit_stops_the_supervision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = RestartPolicy(first_delay_s=0.05, max_delay_s=0.1, limit=4, window_s=60)
    stack = EmbeddedStack(
        Settings(data_dir=tmp_path),
        api_port=1,
        temporal_port=2,
        ui_port=3,
        demo=False,
        restarts=policy,
    )
    stack._pid_file = os.open(tmp_path / "up.pids", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        stack._start("the worker", [sys.executable, "-c", "raise SystemExit(3)"], log=None)
        with pytest.raises(ChildKeepsExiting) as stopped:
            stack._supervise()
        listed = json.loads((tmp_path / "up.pids").read_text())["children"]
    finally:
        os.close(stack._pid_file)
    assert str(stopped.value) == "the worker exited 4 times within 60 s (the last with code 3)"
    said = capsys.readouterr().err.splitlines()
    assert [line for line in said if "restarting" in line] == [
        "trackflow up: the worker exited with code 3; restarting it in 0.05 s (restart 1)",
        "trackflow up: the worker exited with code 3; restarting it in 0.1 s (restart 2)",
        "trackflow up: the worker exited with code 3; restarting it in 0.1 s (restart 3)",
    ]
    assert [child["pid"] for child in listed] == [stack._children[0].process.pid]


@contextmanager
def _listening() -> Iterator[int]:
    """A port something already listens on, so `up` returns right after its checks."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def _up(data_dir: Path, api_port: int) -> int:
    stack = EmbeddedStack(
        Settings(data_dir=data_dir),
        api_port=api_port,
        temporal_port=free_port(),
        ui_port=free_port(),
        demo=False,
    )
    return stack.run()


def test_a_second_up_on_the_same_data_dir_exits_2_naming_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pid_file = tmp_path / "up.pids"
    pid_file.write_text(json.dumps({"supervisor": 4242, "children": []}))
    with pid_file.open() as held, _listening() as port:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert _up(tmp_path, port) == 2
    assert f"another trackflow up (pid 4242) is running on {tmp_path}" in capsys.readouterr().err


def test_up_stops_the_children_a_dead_supervisor_left_and_nothing_else(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import signal; signal.pause()"]
    orphan = subprocess.Popen(argv)
    stranger = subprocess.Popen([*argv, "stranger"])
    try:
        children = [
            {"pid": orphan.pid, "argv": argv},
            {"pid": stranger.pid, "argv": argv},  # its pid, since reused by someone else
        ]
        (tmp_path / "up.pids").write_text(json.dumps({"supervisor": 1, "children": children}))
        with _listening() as port:
            assert _up(tmp_path, port) == 2

        assert orphan.wait(timeout=5) == -signal.SIGTERM
        assert stranger.poll() is None
    finally:
        for process in (orphan, stranger):
            process.kill()
            process.wait()


def test_python_children_stop_when_the_supervisor_pipe_closes(tmp_path: Path) -> None:
    """The watchdog alone, as on systems without a parent-death signal."""
    watched, watchdog = os.pipe()
    port = free_port()
    command = [sys.executable, "-m", "starters.cli", "simulate", "carrier", "--port", str(port)]
    child = subprocess.Popen(
        command,
        env=clean_env() | {SUPERVISOR_FD_ENV: str(watched)},
        pass_fds=(watched,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(watched)
    try:
        deadline = time.monotonic() + 30
        while _unreachable(port) and time.monotonic() < deadline:
            assert child.poll() is None
            time.sleep(0.1)
        os.close(watchdog)
        assert child.wait(timeout=20) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def _unreachable(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    except httpx.TransportError:
        return True
    return False


STUBBORN_WORKER = """
import asyncio
from starters.cli import _run_until_signal

async def shutdown_waiting_for_an_unreachable_server():
    print("running", flush=True)
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue

_run_until_signal(shutdown_waiting_for_an_unreachable_server())
"""


def test_worker_stops_within_bounds_even_when_its_shutdown_hangs() -> None:
    """A worker told to stop while Temporal is unreachable (it died with the supervisor)
    would wait out the SDK's retries for half a minute."""
    worker = subprocess.Popen(
        [sys.executable, "-c", STUBBORN_WORKER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline() == "running\n"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) != 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def _create_concurrently(data_dir: Path, name: str, creators: int) -> list[str]:
    start = threading.Barrier(creators)
    seen: list[str] = []

    def create() -> None:
        start.wait()
        seen.append(_local_secret(data_dir, name))

    threads = [threading.Thread(target=create) for _ in range(creators)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seen


def test_local_secret_is_private_and_one_value_when_created_concurrently(tmp_path: Path) -> None:
    for attempt in range(30):
        data_dir = tmp_path / str(attempt)
        data_dir.mkdir()
        seen = _create_concurrently(data_dir, "api_token", 8)

        assert len(seen) == 8 and len(set(seen)) == 1 and seen[0], seen
        assert [p.name for p in data_dir.iterdir()] == ["api_token"]
        assert stat.S_IMODE((data_dir / "api_token").stat().st_mode) == 0o600


async def test_worker_makes_its_data_dir_private(temporal_address: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    (data_dir / "ledger.sqlite3").write_bytes(b"")
    (data_dir / "ledger.sqlite3").chmod(0o644)
    stop = asyncio.Event()
    settings = Settings(temporal_address=temporal_address, task_queue="data-dir", data_dir=data_dir)
    worker = asyncio.create_task(run_worker(settings, stop))
    try:
        await eventually(
            lambda: asyncio.to_thread(lambda: stat.S_IMODE(data_dir.stat().st_mode)),
            lambda mode: mode == 0o700,
            what="data dir 0700",
        )
        assert stat.S_IMODE((data_dir / "ledger.sqlite3").stat().st_mode) == 0o600
    finally:
        stop.set()
        await worker


def test_no_secret_is_on_a_child_command_line(tmp_path: Path) -> None:
    """Command lines are readable by every local user (`ps`, /proc) and kept in up.pids."""
    stack = EmbeddedStack(
        Settings(data_dir=tmp_path), api_port=1, temporal_port=2, ui_port=3, demo=True
    )
    spawned: list[tuple[list[str], dict[str, str]]] = []
    stack._spawn = lambda command, env, **_: spawned.append((command, dict(env)))  # type: ignore[method-assign]
    stack._wait_for_port = lambda port, what: None  # type: ignore[method-assign]
    env: dict[str, str] = {}
    stack._start_carrier_simulator(env)
    [(command, child_env)] = spawned
    secret = child_env["TRACKFLOW_EASYPOST_WEBHOOK_SECRET"]
    assert secret and not any(secret in part for part in command), command
