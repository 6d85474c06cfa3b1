"""`trackflow up` as a user runs it: start, work, Ctrl-C, start again, resume; the CLI; and
payload encryption, with the codec server the Web UI decrypts through."""

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
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from starters.embedded import EmbeddedStack
from starters.web_ui import QUERIES, list_url
from tests.browser import offline_chromium
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
from trackflow.encryption import generate_key_entry, parse_keys
from trackflow.settings import Settings
from trackflow.shipment_state import ShipmentDocument, ShipmentView

TRACKING_NUMBER = "1Z5R89390357567127"
ENCRYPTED = base64.b64encode(b"binary/encrypted").decode()


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
        described = _temporal("describe", env)
        raw_history = _temporal("show", env)
        # Where the dev server's Web UI sends payloads to decode, from the browser.
        ui = f"http://127.0.0.1:{ports['ui']}"
        codec = httpx.get(f"{ui}/api/v1/settings", timeout=10).json()["Codec"]["Endpoint"]
        decoded_history = _temporal("show", env, "--codec-endpoint", codec)
        summary = json.loads(described)["executionConfig"]["userMetadata"]["summary"]
        browser = {"Origin": ui, "X-Namespace": "default"}
        preflight = httpx.options(
            f"{codec}/decode",
            headers={
                "Origin": ui,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace",
            },
        )
        decoded_summary = httpx.post(
            f"{codec}/decode", json={"payloads": [summary]}, headers=browser
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

    # `up` generated the key its children and the CLI (through the data dir) share; the
    # restart kept it (the second run read the first one's history), and it is printed nowhere.
    [key] = parse_keys((tmp_path / "encryption_keys").read_text())
    assert key.key_id.startswith("local-")
    assert base64.b64encode(key.key).decode() not in first + second

    # The history holds the customer only encrypted; the summary too.
    for personal in ("Ada Lovelace", "ada@example.com"):
        for output in (raw_history, described):
            assert personal not in output + _payload_texts(output), personal
        assert personal in _payload_texts(decoded_history), personal
    assert summary["metadata"]["encoding"] == ENCRYPTED and "Order 5001" not in described
    # The Web UI is told to decode through the codec server, which answers its origin.
    assert codec.startswith("http://127.0.0.1:") and f"codec      {codec}  " in second
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ui
    assert {"content-type", "x-namespace"} <= {
        h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")
    }
    assert decoded_summary.status_code == 200, decoded_summary.text
    assert decoded_summary.headers["access-control-allow-origin"] == ui
    [readable] = decoded_summary.json()["payloads"]
    assert base64.b64decode(readable["metadata"]["encoding"]) == b"json/plain"
    assert "Order 5001" in json.loads(base64.b64decode(readable["data"])), readable

    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    assert {
        "temporal.sqlite", "ledger.sqlite3", "ledger.sqlite3-wal", "api_token", "encryption_keys"
    } <= set(modes)  # fmt: skip
    assert {name: oct(mode) for name, mode in modes.items() if mode != 0o600} == {}

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "out_for_delivery"
    document = json.loads(shown.stdout)
    assert set(document) == set(ShipmentDocument.model_fields) | {"deliveries"}
    assert [
        (d["trigger"], d["channel"], d["status"], d["transport"]) for d in document["deliveries"]
    ] == [
        ("in_transit", "email", "sent", "outbox"),
        ("out_for_delivery", "email", "sent", "outbox"),
    ]
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


def _temporal(command: str, env: dict[str, str], *codec: str) -> str:
    """`temporal workflow show|describe -o json` of the test's shipment."""
    done = subprocess.run(
        [
            *(temporal_cli(), "workflow", command, "-o", "json"),
            *("-w", f"shipment-{TRACKING_NUMBER}"),
            *("--address", env["TRACKFLOW_TEMPORAL_ADDRESS"], *codec),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _payload_texts(shown: str) -> str:
    """Every payload's data in `temporal workflow ... -o json` output, out of its base64
    (protobuf JSON keeps bytes so): what a reader of the history gets to see."""
    texts: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("data"), str) and "metadata" in node:
                texts.append(base64.b64decode(node["data"]).decode(errors="replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(shown))
    return "\n".join(texts)


def _stack(settings: Settings) -> EmbeddedStack:
    return EmbeddedStack(settings, api_port=1, temporal_port=2, ui_port=8233, demo=False)


def test_up_generates_one_private_key_and_hands_it_to_the_codec_server_out_of_sight(
    tmp_path: Path,
) -> None:
    stack = _stack(Settings(data_dir=tmp_path))
    spawned: list[tuple[list[str], dict[str, str]]] = []
    stack._spawn = lambda command, env, **_: spawned.append((command, dict(env)))  # type: ignore[method-assign]

    env = stack._child_env(tmp_path)
    again = stack._child_env(tmp_path)
    stack._start_codec_server(env)

    [key] = parse_keys(env["TRACKFLOW_ENCRYPTION_KEYS"])
    assert again["TRACKFLOW_ENCRYPTION_KEYS"] == env["TRACKFLOW_ENCRYPTION_KEYS"]
    assert (tmp_path / "encryption_keys").read_text() == env["TRACKFLOW_ENCRYPTION_KEYS"]
    assert stat.S_IMODE((tmp_path / "encryption_keys").stat().st_mode) == 0o600
    [(command, child_env)] = spawned
    assert command[-9:] == [
        "codec-server",
        *("--host", "127.0.0.1", "--port", str(stack.codec_port)),
        *("--ui-origin", "http://localhost:8233", "--ui-origin", "http://127.0.0.1:8233"),
    ]
    assert child_env["TRACKFLOW_ENCRYPTION_KEYS"] == env["TRACKFLOW_ENCRYPTION_KEYS"]
    encoded_key = base64.b64encode(key.key).decode()
    assert not any(encoded_key in part for part in command), command


def test_up_with_keys_given_uses_them_and_writes_no_key_file(tmp_path: Path) -> None:
    given = f"{generate_key_entry('mine')},{generate_key_entry('older')}"
    env = _stack(Settings(data_dir=tmp_path, encryption_keys=given))._child_env(tmp_path)
    assert env["TRACKFLOW_ENCRYPTION_KEYS"] == given
    assert not (tmp_path / "encryption_keys").exists()


def test_the_web_ui_in_a_browser_shows_the_customer_decrypted(tmp_path: Path) -> None:
    """The dev server's Web UI, as a user opens it: the browser calls `up`'s codec server
    (another origin: CORS) and shows the workflow's input decrypted."""
    ports = up_ports()
    shipment = {
        "order_id": "5003",
        "tracking_number": TRACKING_NUMBER,
        "carrier": "ups",
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "order_value": 20,
    }
    with stack(tmp_path, ports) as http:
        assert http.post("/v1/shipments", json=shipment).status_code == 202
        with offline_chromium() as driver:
            page = f"http://127.0.0.1:{ports['ui']}/namespaces/default/workflows"
            driver.get(f"{page}/shipment-{TRACKING_NUMBER}")

            def shown(driver: WebDriver) -> str | None:
                text: str = driver.find_element(By.TAG_NAME, "body").text
                return text if "ada@example.com" in text else None

            text = WebDriverWait(driver, 30).until(shown, "the decrypted input never shown")
            driver.save_screenshot(str(tmp_path / "web-ui.png"))
    assert text is not None and "Ada Lovelace" in text and "binary/encrypted" not in text
