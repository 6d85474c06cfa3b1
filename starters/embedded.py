"""`trackflow up`: the embedded stack — Temporal dev server (SQLite file), one worker, the API,
and the codec server through which the dev server's Web UI decrypts payloads.

The supervisor's children die with it, even when it is SIGKILLed: on Linux through the
parent-death signal, everywhere through a watchdog pipe the Python children read (see
`starters.cli`). It holds an flock on `up.pids` in the data dir, which lists its children,
so the next `up` can stop any that outlived it before taking the ports again.

Once the stack is up, a child that exits is started again after a delay that doubles with
each exit (`RestartPolicy`), and `up` says so; a child that keeps exiting stops the stack
(exit status 1). Before that, any child's exit stops the start: it is a configuration
problem, said at once.

With `--demo` or `--providers simulated` it also runs parts of the development stack
(`devstack/`: the carrier simulator, the doubles, the demo), imported only then.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from starters.codec_server import TOKEN_ENV, ui_origins
from starters.devstack_gate import require_devstack
from starters.web_ui import QUERIES, list_url
from trackflow.contracts import ALL_KEYS, WORKFLOW_NAME
from trackflow.encryption import generate_key_entry
from trackflow.models import Channel
from trackflow.settings import SUPERVISOR_FD_ENV, Settings
from workers.runtime import ENCRYPTION_KEYS_FILE, PID_FILE_NAME, secure_data_dir

READY_TIMEOUT_S = 60.0
DEFAULT_TEMPORAL_PORT = 7233
STOP_TIMEOUT_S = 15.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
Providers = Literal["outbox", "simulated"]
SUPERVISE_EVERY_S = 0.2


@dataclass(frozen=True)
class RestartPolicy:
    """A child that exits is started again `first_delay_s` later, twice as long for each
    further exit within `window_s` (at most `max_delay_s`); its `limit`-th exit within
    `window_s` stops the stack."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    limit: int = 5
    window_s: float = 60.0

    def delay_s(self, recent_exits: int) -> float:
        return min(self.first_delay_s * 2.0 ** (recent_exits - 1), self.max_delay_s)


class ChildKeepsExiting(RuntimeError):
    """A child exited `RestartPolicy.limit` times within its window."""


@dataclass
class _Child:
    name: str  # as `up` names it in what it prints: "the worker"
    command: list[str]
    options: dict[str, Any]  # Popen's
    log: Path | None  # its stdout and stderr, appended; None: `up`'s own
    process: subprocess.Popen[bytes]
    exits: deque[float] = field(default_factory=deque)  # monotonic times, within the window
    restarts: int = 0
    restart_at: float | None = None  # exited, to be started again then


class EmbeddedStack:
    def __init__(
        self,
        settings: Settings,
        *,
        api_port: int,
        temporal_port: int,
        ui_port: int,
        demo: bool,
        simulator_port: int = 8765,
        providers: Providers = "outbox",
        restarts: RestartPolicy = RestartPolicy(),
    ) -> None:
        self.settings = settings.model_copy(
            update={"temporal_address": f"127.0.0.1:{temporal_port}"}
        )
        self.api_port = api_port
        self.temporal_port = temporal_port
        self.ui_port = ui_port
        self.demo = demo
        self.simulator_port = simulator_port
        self.providers = providers
        self.doubled: tuple[str, ...] = ()
        if demo or providers == "simulated":
            require_devstack("up --demo" if demo else "up --providers simulated")
            from devstack.doubles.providers.ops import doubled_integrations

            # The Slack, Gorgias, Zendesk and Klaviyo doubles stand in for the integrations
            # the environment does not configure, with the demo or the provider doubles.
            self.doubled = doubled_integrations(os.environ)
        # The doubles' server, on a port of its own: SendGrid and Twilio's (`--providers
        # simulated`, else idle there) with the ops integrations' under path prefixes.
        simulated = providers == "simulated"
        self.providers_port = free_port() if simulated or self.doubled else None
        self.metrics_port = free_port()  # the dev server would pick one and tell no one
        self.codec_port = free_port()
        self.restarts = restarts
        self._children: list[_Child] = []
        self._pid_file = -1

    def run(self) -> int:
        data_dir = secure_data_dir(self.settings.data_dir.resolve())
        pid_path = data_dir / PID_FILE_NAME
        self._pid_file = _lock(pid_path)
        if self._pid_file < 0:
            holder = _read_pid_file(pid_path).get("supervisor", "?")
            print(
                f"trackflow up: another trackflow up (pid {holder}) is running on {data_dir}",
                file=sys.stderr,
            )
            return 2
        umask = os.umask(0o077)  # Temporal's and SQLite's files, logs: owner only
        try:
            _stop_stale_children(_read_pid_file(pid_path).get("children", []))
            self._write_pid_file()
            return self._run_locked(data_dir)
        except RuntimeError as error:
            print(f"trackflow up: {error}", file=sys.stderr)
            return 1
        finally:
            os.umask(umask)
            os.close(self._pid_file)

    def _run_locked(self, data_dir: Path) -> int:
        ports = (self.temporal_port, self.ui_port, self.api_port)
        for port in ports + ((self.simulator_port,) if self.demo else ()):
            if _port_in_use(port):
                print(f"trackflow up: port {port} is already in use", file=sys.stderr)
                return 2
        # The Python children watch the read end; they see EOF once this process is gone.
        watched, watchdog = os.pipe()
        env = self._child_env(data_dir)
        env[SUPERVISOR_FD_ENV] = str(watched)
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        status = 0
        try:
            self._start_temporal(data_dir)
            self._start_codec_server(env)
            self._wait_for_port(self.temporal_port, "Temporal")
            # Counted before the API starts: only shipments from an earlier run, never one
            # a client registers the moment the API answers.
            resumed = self._running_shipments()
            if self.demo:
                self._start_carrier_simulator(env)
            if self.providers_port is not None:
                self._start_provider_doubles(env, data_dir, self.providers_port)
            klaviyo_channels = _klaviyo_channels(env)
            self._spawn([sys.executable, "-m", "starters.cli", "worker"], env, name="the worker")
            self._spawn(
                [sys.executable, "-m", "starters.cli", "api", "--port", str(self.api_port)],
                env,
                name="the API",
            )
            self._wait_for_port(self.api_port, "the trackflow API")
            self._wait_for_port(self.codec_port, "the codec server")
            self._print_banner(resumed)
            demo = self._play_demo(env, data_dir, klaviyo_channels) if self.demo else None
            self._supervise(demo)
        except KeyboardInterrupt:
            print("\ntrackflow up: stopping…", flush=True)
        except ChildKeepsExiting as error:
            print(f"trackflow up: {error}; stopping everything", file=sys.stderr, flush=True)
            status = 1
        finally:
            self._stop_children()
            os.close(watched)
            os.close(watchdog)
            os.ftruncate(self._pid_file, 0)
        return status

    def _play_demo(
        self, env: dict[str, str], data_dir: Path, klaviyo_channels: tuple[str, ...]
    ) -> _Demo:
        """In the background, so that the children are looked after while it plays."""
        from devstack.demo import ProductViews, play_demo
        from starters.render import format_outbox_line
        from starters.report import load_summary, write_report

        views = ProductViews(format_outbox_line, load_summary, write_report)
        demo = _Demo(
            lambda: play_demo(
                views=views,
                api_url=f"http://127.0.0.1:{self.api_port}",
                api_token=env["TRACKFLOW_API_TOKEN"],
                shopify_secret=env["TRACKFLOW_SHOPIFY_WEBHOOK_SECRET"],
                simulator_url=env["TRACKFLOW_EASYPOST_BASE_URL"],
                ledger_url=self.settings.resolved_ledger_url,
                data_dir=data_dir,
                providers_url=self.providers_url,
                ops_url=self.ops_url,
                doubled=self.doubled,
                klaviyo_channels=klaviyo_channels,
            )
        )
        demo.start()
        return demo

    def _child_env(self, data_dir: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            TRACKFLOW_TEMPORAL_ADDRESS=self.settings.temporal_address,
            TRACKFLOW_DATA_DIR=str(data_dir),
            TRACKFLOW_TEMPORAL_UI_URL=f"http://127.0.0.1:{self.ui_port}",
            TRACKFLOW_TIME_SCALE=str(self.settings.time_scale),
            TRACKFLOW_API_TOKEN=self.settings.api_token or _local_secret(data_dir, "api_token"),
            TRACKFLOW_SHOPIFY_WEBHOOK_SECRET=self.settings.shopify_webhook_secret
            or _local_secret(data_dir, "shopify_webhook_secret"),
            # Payload encryption; the CLI in another terminal reads the same file.
            TRACKFLOW_ENCRYPTION_KEYS=self.settings.encryption_keys
            or _local_secret(
                data_dir, ENCRYPTION_KEYS_FILE, lambda: generate_key_entry(_new_key_id())
            ),
            # Signs the unsubscribe links of emails (worker) and checks them (API, /u/<token>).
            TRACKFLOW_UNSUBSCRIBE_SECRET=self.settings.unsubscribe_secret
            or _local_secret(data_dir, "unsubscribe_secret"),
            TRACKFLOW_PUBLIC_URL=self.settings.public_url or f"http://127.0.0.1:{self.api_port}",
        )
        return env

    def _start_temporal(self, data_dir: Path) -> None:
        command = [
            _temporal_cli(),
            "server",
            "start-dev",
            "--db-filename",
            str(data_dir / "temporal.sqlite"),
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.temporal_port),
            "--ui-port",
            str(self.ui_port),
            "--metrics-port",
            str(self.metrics_port),
            "--ui-codec-endpoint",
            self.codec_url,
            "--log-level",
            "error",
        ]
        for key in ALL_KEYS:
            kind = key.indexed_value_type.name.title()  # KEYWORD -> Keyword, DATETIME -> Datetime
            command += ["--search-attribute", f"{key.name}={kind}"]
        self._start("the Temporal dev server", command, log=data_dir / "temporal.log")

    @property
    def codec_url(self) -> str:
        return f"http://127.0.0.1:{self.codec_port}"

    def _start_codec_server(self, env: dict[str, str]) -> None:
        """For the Web UI, which calls it from the browser. Loopback only; without a token
        (TRACKFLOW_CODEC_TOKEN) it asks none: the dev UI cannot send one over http. The
        keys reach it in the environment, never on the command line (readable by every
        local user)."""
        command = [sys.executable, "-m", "starters.cli", "codec-server"]
        command += ["--host", "127.0.0.1", "--port", str(self.codec_port)]
        for origin in ui_origins(self.ui_port):
            command += ["--ui-origin", origin]
        self._spawn(command, env, name="the codec server")

    def _start_carrier_simulator(self, env: dict[str, str]) -> None:
        """The demo's EasyPost: polled by the worker, and sending signed webhooks to the API."""
        from devstack.demo import DEMO_TIME_SCALE

        port = self.simulator_port
        env.update(
            TRACKFLOW_EASYPOST_API_KEY="EZTK-demo",
            TRACKFLOW_EASYPOST_BASE_URL=f"http://127.0.0.1:{port}",
            TRACKFLOW_EASYPOST_WEBHOOK_SECRET=_local_secret(
                self.settings.data_dir.resolve(), "easypost_webhook_secret"
            ),
        )
        command = [sys.executable, "-m", "starters.cli", "simulate", "carrier"]
        # The demo's shipments ask for DEMO_TIME_SCALE themselves; its carrier keeps pace.
        command += ["--port", str(port), "--time-scale", str(DEMO_TIME_SCALE)]
        command += ["--webhook-url", f"http://127.0.0.1:{self.api_port}/webhooks/easypost"]
        # The secret stays in the environment: a command line is readable by every local user.
        log = self.settings.data_dir.resolve() / "simulator.log"
        self._spawn(command, env, name="the carrier simulator", log=log)
        self._wait_for_port(port, "the carrier simulator")

    @property
    def doubles_url(self) -> str | None:
        return f"http://127.0.0.1:{self.providers_port}" if self.providers_port else None

    @property
    def providers_url(self) -> str | None:
        """The SendGrid and Twilio doubles, when email and SMS go to them."""
        return self.doubles_url if self.providers == "simulated" else None

    @property
    def ops_url(self) -> str | None:
        """The Slack, Gorgias, Zendesk and Klaviyo doubles, when one stands in for its
        integration."""
        return self.doubles_url if self.doubled else None

    def _start_provider_doubles(self, env: dict[str, str], data_dir: Path, port: int) -> None:
        """The doubles (loopback only): with `--providers simulated`, SendGrid and Twilio's,
        to which the worker's and the API's settings point the official SDKs, accepting
        their signed callbacks (the doubles call back the local API, TRACKFLOW_PUBLIC_URL);
        and, for each ops integration the environment does not configure, Slack, Gorgias,
        Zendesk or Klaviyo's, under path prefixes.

        The demo with the outbox turns SMS into Klaviyo events (the doubled Klaviyo's), so it
        shows some, unless the environment chose a delivery mode for SMS or configured Twilio
        (then SMS stay where they were meant to go)."""
        from devstack.doubles.providers.local import providers_command

        env.update(self._doubles_env(env, data_dir, f"http://127.0.0.1:{port}"))
        # Keys and the auth token stay in the environment, never on the command line.
        command = providers_command(data_dir, port)
        self._spawn(command, env, name="the provider doubles", log=data_dir / "providers.log")
        self._wait_for_port(port, "the provider doubles")

    def _doubles_env(self, env: dict[str, str], data_dir: Path, url: str) -> dict[str, str]:
        """The settings that point the children at the doubles at `url` (see above); `env`
        is what they would get without them, which keeps what the user configured."""
        from devstack.doubles.providers.local import simulated_provider_env
        from devstack.doubles.providers.ops import simulated_ops_env

        updates: dict[str, str] = {}
        if self.providers == "simulated":
            api = f"http://127.0.0.1:{self.api_port}"
            updates.update(simulated_provider_env(data_dir, url, api))
        updates.update(simulated_ops_env(url, env))
        if self.demo and self.providers == "outbox" and "klaviyo" in self.doubled:
            chosen = env.get("TRACKFLOW_SMS_DELIVERY_MODE") or env.get("TRACKFLOW_DELIVERY_MODE")
            if not chosen and not Settings.from_env(env).twilio_configured:
                updates["TRACKFLOW_SMS_DELIVERY_MODE"] = "klaviyo"
        return updates

    def _spawn(
        self, command: list[str], env: dict[str, str], *, name: str, log: Path | None = None
    ) -> None:
        """A Python child: it also watches the supervisor's pipe (see `starters.cli`)."""
        pass_fds = (int(env[SUPERVISOR_FD_ENV]),)
        self._start(name, command, log=log, env=dict(env), pass_fds=pass_fds)

    def _start(self, name: str, command: list[str], *, log: Path | None, **options: Any) -> None:
        """`command`, as `name`, with `options` for Popen; started again the same way if it
        exits once the stack is up (`env`: a copy, as it is now)."""
        child = _Child(name, command, options, log, _launch(command, log, options))
        self._children.append(child)
        self._write_pid_file()

    def _write_pid_file(self) -> None:
        """Rewritten in place under the lock: only the next holder of the lock reads it."""
        children = [{"pid": c.process.pid, "argv": c.command} for c in self._children]
        content = json.dumps({"supervisor": os.getpid(), "children": children}).encode()
        os.ftruncate(self._pid_file, 0)
        os.pwrite(self._pid_file, content, 0)

    def _wait_for_port(self, port: int, what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _port_in_use(port):
            self._check_children()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start listening on port {port}")
            time.sleep(0.2)

    def _check_children(self) -> None:
        """While the stack starts: a child that exits stops it."""
        for child in self._children:
            if (code := child.process.poll()) is not None:
                raise RuntimeError(f"{child.name} exited with {_exit_status(code)}")

    def _supervise(self, demo: _Demo | None = None) -> None:
        """Until Ctrl-C (KeyboardInterrupt) or a child keeps exiting (ChildKeepsExiting);
        a failure of the `demo` is raised here."""
        while True:
            now = time.monotonic()
            for child in self._children:
                self._tend(child, now)
            if demo is not None:
                demo.raise_failure()
            time.sleep(SUPERVISE_EVERY_S)

    def _tend(self, child: _Child, now: float) -> None:
        """Notice that `child` exited and schedule its restart, or restart it when due."""
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.process = _launch(child.command, child.log, child.options)
                child.restart_at = None
                self._write_pid_file()  # a later `up` stops it if this one is SIGKILLed
                _warn(f"{child.name} started again (pid {child.process.pid})")
            return
        code = child.process.poll()
        if code is None:
            return
        policy = self.restarts
        child.exits.append(now)
        while now - child.exits[0] > policy.window_s:
            child.exits.popleft()
        if len(child.exits) >= policy.limit:
            raise ChildKeepsExiting(
                f"{child.name} exited {len(child.exits)} times within {policy.window_s:g} s "
                f"(the last with {_exit_status(code)})"
            )
        delay = policy.delay_s(len(child.exits))
        child.restarts += 1
        child.restart_at = now + delay
        _warn(
            f"{child.name} exited with {_exit_status(code)}; restarting it in {delay:g} s "
            f"(restart {child.restarts})"
        )

    def _stop_children(self) -> None:
        """Last started first, each after the one before has exited: the API, then the
        worker while Temporal still answers (without it, its shutdown waits for retries)."""
        for child in reversed(self._children):
            process = child.process
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _running_shipments(self) -> int | None:
        """In-flight shipments in the data dir (resumed by the worker), or None if unknown."""
        query = f'WorkflowType = "{WORKFLOW_NAME}" AND ExecutionStatus = "Running"'
        command = [_temporal_cli(), "workflow", "count", "--query", query, "--output", "json"]
        command += ["--address", self.settings.temporal_address]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=15, check=True)
            return int(json.loads(done.stdout)["count"])
        except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
            return None

    def _cli_environment(self) -> list[str]:
        """What the CLI needs to find this stack when it is not on the defaults."""
        lines = []
        if self.settings.data_dir.resolve() != Settings().data_dir.resolve():
            lines.append(f"  export TRACKFLOW_DATA_DIR={_shown_path(self.settings.data_dir)}")
        if self.temporal_port != DEFAULT_TEMPORAL_PORT:
            lines.append(f"  export TRACKFLOW_TEMPORAL_ADDRESS={self.settings.temporal_address}")
        if self.settings.encryption_keys:  # else the CLI reads the data dir's keys file
            lines.append("  # and the TRACKFLOW_ENCRYPTION_KEYS given to this `up`")
        return lines

    def _ops_lines(self) -> list[str]:
        """Where the ops doubles list what they received (kept in memory: a restart of `up`
        starts them empty)."""
        if not self.ops_url:
            return []
        from devstack.doubles.providers.ops import ops_listings

        listings = ops_listings(self.ops_url)
        lines = ["", "What the ops doubles received (kept in memory until Ctrl-C):"]
        for name, what in (
            ("slack", "Slack alerts"),
            ("gorgias", "Gorgias tickets"),
            ("zendesk", "Zendesk tickets"),
            ("klaviyo", "Klaviyo events"),
            ("klaviyo_list", "delayed list"),
        ):
            if name.split("_")[0] in self.doubled:
                lines.append(f"  {what:<17}{listings[name]}")
        return lines

    def _print_banner(self, resumed: int | None) -> None:
        """What runs where, and lines to copy; 80 columns but for the Web UI query link."""
        ui = f"http://127.0.0.1:{self.ui_port}"
        data_dir = _shown_path(self.settings.data_dir.resolve())
        token_file = _shown_path(self.settings.data_dir / "api_token")
        scale = f"{self.settings.time_scale:g}x"
        if self.demo:
            from devstack.demo import DEMO_TIME_SCALE

            scale += f" (the demo's own shipments: {DEMO_TIME_SCALE:g}x)"
        lines = [
            "",
            "trackflow is up",
            f"  Web UI     {ui}",
            f"  API        http://127.0.0.1:{self.api_port}  (docs: /docs)",
            f"  Temporal   {self.settings.temporal_address}"
            f"  (metrics: http://127.0.0.1:{self.metrics_port}/metrics)",
            f"  codec      {self.codec_url}  "
            + (
                "(token set: the Web UI cannot send it)"
                if os.environ.get(TOKEN_ENV)
                else "(the Web UI decrypts payloads through it)"
            ),
        ]
        if self.demo:
            lines.append(
                f"  simulator  http://127.0.0.1:{self.simulator_port}"
                "  (the demo's EasyPost; trackflow simulate carrier -h)"
            )
        if self.providers_url:
            lines.append(f"  providers  {self.providers_url}  (SendGrid and Twilio doubles)")
        if self.ops_url:
            from devstack.doubles.providers.ops import OPS_NAMES

            names = ", ".join(OPS_NAMES[name] for name in self.doubled)
            lines.append(f"  ops        {self.ops_url}  ({names} doubles)")
        lines += [
            f"  data       {data_dir}",
            f"  API token  {token_file} (or TRACKFLOW_API_TOKEN)",
            f"  time       {scale}",
        ]
        if resumed:
            lines.append(f"  resumed    {resumed} in-flight shipment(s) from the data dir")
        lines += [
            "",
            "In trouble (lost, exception, gone quiet), in the Web UI:",
            f"  {list_url(ui, QUERIES['in trouble'])}",
            "",
            "Try it (another terminal, in this directory):",
            f"  source {_shown_path(Path(sys.executable).parent / 'activate')}",
            *self._cli_environment(),
            f"  TOKEN=$(cat {token_file})",
            '  curl -H "Authorization: Bearer $TOKEN" \\',
            f"       http://127.0.0.1:{self.api_port}/v1/shipments/NUMBER",
            "  trackflow outbox     # what went out",
            "  trackflow shipment show NUMBER",
            *self._ops_lines(),
            "",
            "Ctrl-C stops everything; running it again resumes in-flight shipments.",
        ]
        print("\n".join(lines) + "\n", flush=True)


class _Demo(threading.Thread):
    """`play` in a thread of its own (a daemon: Ctrl-C does not wait for it); what it raised
    is kept for `raise_failure`."""

    def __init__(self, play: Callable[[], None]) -> None:
        super().__init__(name="demo", daemon=True)
        self._play = play
        self._failure: Exception | None = None

    def run(self) -> None:
        try:
            self._play()
        except Exception as failure:  # raised again in the supervisor
            self._failure = failure

    def raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure


def _launch(
    command: list[str], log: Path | None, options: dict[str, Any]
) -> subprocess.Popen[bytes]:
    """Own session: a Ctrl-C in the terminal reaches only the supervisor, which then stops
    the children in order."""
    with contextlib.ExitStack() as streams:
        if log is not None:
            output = streams.enter_context(log.open("ab"))
            options = options | {"stdout": output, "stderr": output}
        return subprocess.Popen(
            command, start_new_session=True, preexec_fn=_die_with_parent(), **options
        )


def _exit_status(code: int) -> str:
    """`code -9 (SIGKILL)` for a signal, `code 3` otherwise."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"code {code} ({signal.Signals(-code).name})"
    return f"code {code}"


def _warn(text: str) -> None:
    print(f"trackflow up: {text}", file=sys.stderr, flush=True)


def _klaviyo_channels(env: dict[str, str]) -> tuple[str, ...]:
    """The customer channels in `klaviyo` delivery mode (their messages are Klaviyo events)."""
    try:
        settings = Settings.from_env(env)
        return tuple(c.value for c in Channel if settings.delivery_mode_for(c) == "klaviyo")
    except ValueError:  # a setting error: the worker says which
        return ()


def _new_key_id() -> str:
    return f"local-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(2)}"


def _local_secret(
    data_dir: Path, name: str, generate: Callable[[], str] = lambda: secrets.token_urlsafe(24)
) -> str:
    """A per-install secret kept in the data dir, so restarts keep working with the same one.

    Written to a private temporary file and hard-linked into place, so the secret is never
    readable by others nor seen half-written; when two processes create it at once, the
    loser's link fails and it reads the winner's.
    """
    path = data_dir / name
    if not path.exists():
        fd, draft = tempfile.mkstemp(dir=data_dir, prefix=f".{name}.")  # mode 0600
        try:
            with os.fdopen(fd, "w") as file:
                file.write(generate())
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
        finally:
            os.unlink(draft)
    return path.read_text().strip()


def _lock(path: Path) -> int:
    """The pid file's descriptor, locked for as long as this process lives; -1 if another
    live `up` holds it. Children do not inherit it (close_fds)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return -1
    return fd


def _read_pid_file(path: Path) -> dict[str, Any]:
    try:
        content: dict[str, Any] = json.loads(path.read_bytes() or b"{}")
    except (OSError, ValueError):
        return {}
    return content


def _stop_stale_children(children: list[dict[str, Any]]) -> None:
    """Stop the processes a dead supervisor left: those listed that still run the command it
    started (a pid since reused by an unrelated process is left alone)."""
    stale = {c["pid"]: c["argv"] for c in children if _runs(c["pid"], c["argv"])}
    for signum, grace in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        for pid in stale:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        deadline = time.monotonic() + grace
        while stale and time.monotonic() < deadline:
            time.sleep(0.05)
            stale = {pid: argv for pid, argv in stale.items() if _runs(pid, argv)}
        if not stale:
            return
    raise RuntimeError(f"could not stop processes left by an earlier trackflow up: {list(stale)}")


def _runs(pid: int, argv: list[str]) -> bool:
    """Whether process `pid` is alive and running `argv` (a zombie has no command line)."""
    if Path("/proc/self/cmdline").exists():
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes() == "\0".join(argv).encode() + b"\0"
        except (FileNotFoundError, ProcessLookupError):
            return False
    # No procfs (macOS): ps shows the arguments joined by spaces.
    shown = subprocess.run(
        ["ps", "-ww", "-o", "command=", "-p", str(pid)], capture_output=True, text=True
    ).stdout
    return shown.strip() == " ".join(argv)


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when the supervisor dies — any child,
    the Go Temporal server too, since it is set before exec."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, not in the child
    supervisor = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != supervisor:  # it died before prctl: no signal will come
            os._exit(1)

    return preexec


def _temporal_cli() -> str:
    beside_python = Path(sys.executable).parent / "temporal"
    return str(beside_python) if beside_python.exists() else "temporal"


def _shown_path(path: Path) -> str:
    """`path` relative to the working directory when it is below it, for copy and paste."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
