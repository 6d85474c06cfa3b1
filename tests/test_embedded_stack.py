"""`trackflow up` as a user runs it: start, work, Ctrl-C, start again, resume; and the CLI."""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from starters.web_ui import QUERIES, list_url
from tests.conftest import temporal_cli
from tests.harness import (
    clean_env,
    poll_json,
    trackflow_cli,
    up_command,
    up_ports,
    wait_until_healthy,
    zone_at_local_hour,
)
from trackflow.shipment_state import ShipmentDocument, ShipmentView

TRACKING_NUMBER = "1Z5R89390357567127"


@contextmanager
def stack(
    data_dir: Path, ports: dict[str, int], outputs: list[str] | None = None
) -> Iterator[httpx.Client]:
    """`trackflow up`, stopped with Ctrl-C on exit; what it printed (stdout and stderr,
    its children's included) is appended to `outputs`."""
    process = subprocess.Popen(
        up_command(data_dir, ports),
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        token = wait_until_healthy(ports["api"], data_dir, process)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{ports['api']}", headers=headers) as http:
            yield http
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0, output
        assert "stopping" in output
        if outputs is not None:
            outputs.append(output)


def test_up_restart_resumes_in_flight_shipments_and_cli_reads_them(tmp_path: Path) -> None:
    ports = up_ports()
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
    tmp_path.chmod(0o755)  # as an older version left it
    (tmp_path / "api_token").write_text("token-from-an-older-version")
    (tmp_path / "api_token").chmod(0o644)

    outputs: list[str] = []
    with stack(tmp_path, ports, outputs) as http:
        assert http.post("/v1/shipments", json=shipment).status_code == 202
        assert http.post("/v1/events", json=event | {"status": "in_transit"}).status_code == 202
        view = poll_json(http, f"/v1/shipments/{TRACKING_NUMBER}", lambda v: v["notifications"])
        assert [n["trigger"] for n in view["notifications"]] == ["in_transit"]

    with stack(tmp_path, ports, outputs) as http:
        later = event | {"status": "out_for_delivery", "occurred_at": "2026-11-21T08:00:00Z"}
        assert http.post("/v1/events", json=later).status_code == 202
        view = poll_json(
            http, f"/v1/shipments/{TRACKING_NUMBER}", lambda v: len(v["notifications"]) == 2
        )
        assert view["status"] == "out_for_delivery"

        env = dict(
            os.environ,
            TRACKFLOW_DATA_DIR=str(tmp_path),
            TRACKFLOW_TEMPORAL_ADDRESS=f"127.0.0.1:{ports['temporal']}",
        )
        shown = trackflow_cli("shipment", "show", TRACKING_NUMBER, "--json", env=env)
        shown_text = trackflow_cli("shipment", "show", TRACKING_NUMBER, env=env)
        debug = trackflow_cli("shipment", "show", TRACKING_NUMBER, "--debug", env=env)
        outbox = trackflow_cli("outbox", "--tracking-number", TRACKING_NUMBER, "--json", env=env)
        temporal = temporal_cli()
        described = subprocess.run(
            [
                *(temporal, "workflow", "describe", "-o", "json"),
                *("-w", f"shipment-{TRACKING_NUMBER}"),
                *("--address", env["TRACKFLOW_TEMPORAL_ADDRESS"]),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        missing = trackflow_cli("shipment", "show", "1Z0000000000000000", env=env)
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}

    first, second = outputs
    assert "resumed" not in first
    assert "resumed    1 in-flight shipment(s)" in second
    banner = first[first.index("trackflow is up") : first.index("Ctrl-C stops")]
    wide = [
        line
        for line in banner.splitlines()
        if len(line) > 80 and "?query=" not in line and str(tmp_path) not in line
    ]
    assert wide == [], "the banner fits 80 columns (the query link and long paths aside)"
    trouble = list_url(f"http://127.0.0.1:{ports['ui']}", QUERIES["in trouble"])
    assert trouble in first
    assert f"export TRACKFLOW_DATA_DIR={tmp_path}" in first
    assert "/bin/activate" in first
    assert not [line for line in (first + second).splitlines() if "WARN" in line or "rror" in line]

    # No payload encryption unless asked for: the Web UI can show the summary as it is.
    summary = json.loads(described.stdout)["executionConfig"]["userMetadata"]["summary"]
    assert "Order 5001" in json.dumps(summary), summary
    encrypted = base64.b64encode(b"binary/encrypted").decode()
    assert "binary/encrypted" not in described.stdout and encrypted not in described.stdout
    assert not (tmp_path / "encryption_keys").exists()

    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    assert {"temporal.sqlite", "ledger.sqlite3", "ledger.sqlite3-wal", "api_token"} <= set(modes)
    assert {name: oct(mode) for name, mode in modes.items() if mode != 0o600} == {}

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "out_for_delivery"
    assert set(json.loads(shown.stdout)) == set(ShipmentDocument.model_fields)
    assert shown_text.returncode == 0, shown_text.stderr
    assert "status: out_for_delivery" in shown_text.stdout.splitlines()
    assert debug.returncode == 0, debug.stderr
    assert set(json.loads(debug.stdout)) == set(ShipmentView.model_fields)
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
