"""`trackflow up` as a user runs it: start, work, Ctrl-C, start again, resume; and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.harness import free_port, zone_at_local_hour

TRACKING_NUMBER = "1Z5R89390357567127"
START_DEADLINE_S = 60.0


def _trackflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starters.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextmanager
def stack(data_dir: Path, ports: dict[str, int]) -> Iterator[httpx.Client]:
    command = [
        sys.executable, "-m", "starters.cli", "up",
        "--data-dir", str(data_dir),
        "--port", str(ports["api"]),
        "--temporal-port", str(ports["temporal"]),
        "--ui-port", str(ports["ui"]),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKFLOW_")}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        token = _wait_until_healthy(ports["api"], data_dir, process)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{ports['api']}", headers=headers) as http:
            yield http
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0, output
        assert "stopping" in output


def _wait_until_healthy(port: int, data_dir: Path, process: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "trackflow up exited early"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return (data_dir / "api_token").read_text().strip()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("trackflow up did not become healthy")


def _poll_json(http: httpx.Client, path: str, accept: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        body: dict[str, Any] = http.get(path).json()
        if accept(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_up_restart_resumes_in_flight_shipments_and_cli_reads_them(tmp_path: Path) -> None:
    ports = {"api": free_port(), "temporal": free_port(), "ui": free_port()}
    shipment = {
        "order_id": "5001",
        "tracking_number": TRACKING_NUMBER,
        "carrier": "ups",
        "customer": {
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "timezone": zone_at_local_hour(12),  # inside the send window whenever this runs
        },
        "order_value": 20,
    }
    event = {"tracking_number": TRACKING_NUMBER, "occurred_at": "2026-11-20T14:03:00Z"}

    with stack(tmp_path, ports) as http:
        assert http.post("/v1/shipments", json=shipment).status_code == 202
        assert http.post("/v1/events", json=event | {"status": "in_transit"}).status_code == 202
        view = _poll_json(http, f"/v1/shipments/{TRACKING_NUMBER}", lambda v: v["notifications"])
        assert [n["trigger"] for n in view["notifications"]] == ["in_transit"]

    with stack(tmp_path, ports) as http:
        later = event | {"status": "out_for_delivery", "occurred_at": "2026-11-21T08:00:00Z"}
        assert http.post("/v1/events", json=later).status_code == 202
        view = _poll_json(
            http, f"/v1/shipments/{TRACKING_NUMBER}", lambda v: len(v["notifications"]) == 2
        )
        assert view["status"] == "out_for_delivery"

        env = dict(
            os.environ,
            TRACKFLOW_DATA_DIR=str(tmp_path),
            TRACKFLOW_TEMPORAL_ADDRESS=f"127.0.0.1:{ports['temporal']}",
        )
        shown = _trackflow("shipment", "show", TRACKING_NUMBER, "--json", env=env)
        outbox = _trackflow("outbox", "--tracking-number", TRACKING_NUMBER, "--json", env=env)
        missing = _trackflow("shipment", "show", "1Z0000000000000000", env=env)

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "out_for_delivery"
    assert outbox.returncode == 0, outbox.stderr
    messages = json.loads(outbox.stdout)
    assert [(m["trigger"], m["channel"]) for m in messages] == [
        ("in_transit", "email"),
        ("out_for_delivery", "email"),
    ]
    required = {"tracking_number", "order_id", "trigger", "channel", "to", "subject", "body"}
    assert required | {"sent_at", "idempotency_key"} <= set(messages[0])
    assert messages[0]["sent_at"].endswith("Z")
    assert missing.returncode == 1
    assert "no active shipment" in missing.stderr
