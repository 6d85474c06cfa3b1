"""`trackflow up`: the embedded stack — Temporal dev server (SQLite file), one worker, the API."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from starters.demo import DEMO_TIME_SCALE
from trackflow.settings import Settings
from workers.runtime import secure_data_dir
from workflows.search_attributes import ALL_KEYS

READY_TIMEOUT_S = 60.0


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
    ) -> None:
        self.settings = settings.model_copy(
            update={"temporal_address": f"127.0.0.1:{temporal_port}"}
        )
        if demo and "TRACKFLOW_TIME_SCALE" not in os.environ:
            # A policy day passes in under nine seconds: the demo's timers fire while you watch.
            self.settings = self.settings.model_copy(update={"time_scale": DEMO_TIME_SCALE})
        self.api_port = api_port
        self.temporal_port = temporal_port
        self.ui_port = ui_port
        self.demo = demo
        self.simulator_port = simulator_port
        self._children: list[subprocess.Popen[bytes]] = []

    def run(self) -> int:
        data_dir = secure_data_dir(self.settings.data_dir.resolve())
        ports = (self.temporal_port, self.ui_port, self.api_port)
        for port in ports + ((self.simulator_port,) if self.demo else ()):
            if _port_in_use(port):
                print(f"trackflow up: port {port} is already in use", file=sys.stderr)
                return 2
        umask = os.umask(0o077)  # Temporal's and SQLite's files, logs: owner only
        env = self._child_env(data_dir)
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            self._start_temporal(data_dir)
            self._wait_for_port(self.temporal_port, "Temporal")
            if self.demo:
                self._start_carrier_simulator(env)
            self._spawn([sys.executable, "-m", "starters.cli", "worker"], env)
            self._spawn(
                [sys.executable, "-m", "starters.cli", "api", "--port", str(self.api_port)], env
            )
            self._wait_for_port(self.api_port, "the trackflow API")
            self._print_banner(env)
            if self.demo:
                from starters.demo import play_demo

                play_demo(
                    api_url=f"http://127.0.0.1:{self.api_port}",
                    api_token=env["TRACKFLOW_API_TOKEN"],
                    shopify_secret=env["TRACKFLOW_SHOPIFY_WEBHOOK_SECRET"],
                    simulator_url=env["TRACKFLOW_EASYPOST_BASE_URL"],
                    ledger_url=self.settings.resolved_ledger_url,
                )
            self._supervise()
        except KeyboardInterrupt:
            print("\ntrackflow up: stopping…", flush=True)
        except RuntimeError as error:
            print(f"trackflow up: {error}", file=sys.stderr)
            return 1
        finally:
            self._stop_children()
            os.umask(umask)
        return 0

    def _child_env(self, data_dir: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            TRACKFLOW_TEMPORAL_ADDRESS=self.settings.temporal_address,
            TRACKFLOW_DATA_DIR=str(data_dir),
            TRACKFLOW_TIME_SCALE=str(self.settings.time_scale),
            TRACKFLOW_API_TOKEN=self.settings.api_token or _local_secret(data_dir, "api_token"),
            TRACKFLOW_SHOPIFY_WEBHOOK_SECRET=self.settings.shopify_webhook_secret
            or _local_secret(data_dir, "shopify_webhook_secret"),
        )
        return env

    def _start_temporal(self, data_dir: Path) -> None:
        temporal = Path(sys.executable).parent / "temporal"
        command = [
            str(temporal) if temporal.exists() else "temporal",
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
            "--log-level",
            "error",
        ]
        for key in ALL_KEYS:
            kind = key.indexed_value_type.name.title()  # KEYWORD -> Keyword, DATETIME -> Datetime
            command += ["--search-attribute", f"{key.name}={kind}"]
        log = (data_dir / "temporal.log").open("ab")
        self._children.append(
            subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        )

    def _start_carrier_simulator(self, env: dict[str, str]) -> None:
        """The demo's EasyPost: polled by the worker, and sending signed webhooks to the API."""
        port = self.simulator_port
        env.update(
            TRACKFLOW_EASYPOST_API_KEY="EZTK-demo",
            TRACKFLOW_EASYPOST_BASE_URL=f"http://127.0.0.1:{port}",
            TRACKFLOW_EASYPOST_WEBHOOK_SECRET=_local_secret(
                self.settings.data_dir.resolve(), "easypost_webhook_secret"
            ),
        )
        command = [sys.executable, "-m", "starters.cli", "simulate", "carrier"]
        command += ["--port", str(port), "--time-scale", str(self.settings.time_scale)]
        command += ["--webhook-url", f"http://127.0.0.1:{self.api_port}/webhooks/easypost"]
        command += ["--webhook-secret", env["TRACKFLOW_EASYPOST_WEBHOOK_SECRET"]]
        log = (self.settings.data_dir.resolve() / "simulator.log").open("ab")
        self._children.append(
            subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
        )
        self._wait_for_port(port, "the carrier simulator")

    def _spawn(self, command: list[str], env: dict[str, str]) -> None:
        self._children.append(subprocess.Popen(command, env=env, start_new_session=True))

    def _wait_for_port(self, port: int, what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _port_in_use(port):
            self._check_children()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start listening on port {port}")
            time.sleep(0.2)

    def _check_children(self) -> None:
        for child in self._children:
            if child.poll() is not None:
                raise RuntimeError(
                    f"{' '.join(map(str, child.args[:3]))} exited ({child.returncode})"
                )

    def _supervise(self) -> None:
        while True:
            self._check_children()
            time.sleep(0.5)

    def _stop_children(self) -> None:
        for child in reversed(self._children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in reversed(self._children):
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def _print_banner(self, env: dict[str, str]) -> None:
        print(
            "\ntrackflow is up\n"
            f"  Temporal Web UI : http://127.0.0.1:{self.ui_port}\n"
            f"  Temporal gRPC   : {self.settings.temporal_address}\n"
            f"  trackflow API   : http://127.0.0.1:{self.api_port}  (docs at /docs)\n"
            f"  API token       : in {self.settings.data_dir / 'api_token'} "
            "(or TRACKFLOW_API_TOKEN)\n"
            f"  data            : {self.settings.data_dir.resolve()}\n"
            f"  time scale      : {self.settings.time_scale:g}x\n"
            "Ctrl-C stops everything; running it again resumes in-flight shipments.\n",
            flush=True,
        )


def _local_secret(data_dir: Path, name: str) -> str:
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
                file.write(secrets.token_urlsafe(24))
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
        finally:
            os.unlink(draft)
    return path.read_text().strip()


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
