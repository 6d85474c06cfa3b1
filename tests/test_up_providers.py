"""`trackflow up --providers simulated`: the SendGrid and Twilio doubles as one more
supervised child; the worker sends through the official SDKs to them, the API takes their
signed callbacks, a STOP reply ends SMS for that customer, and SIGTERM stops everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from starters import demo
from starters.demo import _feedback_lines, _wrapped
from starters.embedded import _runs
from starters.simulators.providers.local import SIMULATED_FROM
from storage import MessageState, open_ledger
from tests.harness import (
    clean_env,
    eventually,
    up_command,
    up_ports,
    wait_until_healthy,
    zone_at_local_hour,
)
from workers.runtime import PID_FILE_NAME

TRACKING_NUMBER = "1Z5R89390357567127"
PHONE = "+15025550123"
EMAIL = "ada@example.com"
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _children(data_dir: Path) -> list[dict[str, Any]]:
    children: list[dict[str, Any]] = json.loads((data_dir / PID_FILE_NAME).read_bytes())["children"]
    return children


def _doubles_url(data_dir: Path) -> str:
    """The doubles' port, from the command line `up` started them with."""
    [argv] = [c["argv"] for c in _children(data_dir) if c["argv"][3:5] == ["simulate", "providers"]]
    return f"http://127.0.0.1:{argv[argv.index('--port') + 1]}"


async def _rows(data_dir: Path) -> list[MessageState]:
    ledger = open_ledger(str(data_dir / "ledger.sqlite3"), read_only=True)
    try:
        return [s for s in await ledger.states(TRACKING_NUMBER) if s.kind == "message"]
    finally:
        await ledger.close()


def _row(rows: list[MessageState], trigger: str, channel: str) -> MessageState | None:
    return next((r for r in rows if r.trigger == trigger and r.channel == channel), None)


async def test_up_with_simulated_providers_sends_through_the_sdks_and_honours_stop(
    tmp_path: Path,
) -> None:
    ports = up_ports()
    data_dir = tmp_path / "data"
    log_path = tmp_path / "up.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*up_command(data_dir, ports), "--providers", "simulated"],
            env=clean_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    children: list[dict[str, Any]] = []
    try:
        token = wait_until_healthy(ports["api"], data_dir, process)
        children = _children(data_dir)
        doubles_url = _doubles_url(data_dir)
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{ports['api']}", headers=headers, timeout=30
            ) as api,
            httpx.AsyncClient(base_url=doubles_url, timeout=30) as doubles,
        ):
            shipment = {
                "order_id": "7001",
                "tracking_number": TRACKING_NUMBER,
                "carrier": "ups",
                "customer": {
                    "name": "Ada Lovelace",
                    "email": EMAIL,
                    "phone": PHONE,
                    "sms_consent": True,
                    "timezone": zone_at_local_hour(12),  # inside the send window
                },
                "order_value": 400,  # above the SMS threshold: email and SMS
            }
            event = {"tracking_number": TRACKING_NUMBER, "occurred_at": "2026-11-20T14:03:00Z"}
            assert (await api.post("/v1/shipments", json=shipment)).status_code == 202
            in_transit = event | {"status": "in_transit"}
            assert (await api.post("/v1/events", json=in_transit)).status_code == 202

            async def sent_with_ids() -> list[MessageState]:
                return await _rows(data_dir)

            rows = await eventually(
                sent_with_ids,
                lambda rows: all(
                    (row := _row(rows, "in_transit", channel)) is not None
                    and row.status == "sent"
                    and row.provider_message_id
                    for channel in ("email", "sms")
                ),
                deadline_s=60,
                what="in_transit email and SMS accepted by the doubles",
            )
            email, sms = _row(rows, "in_transit", "email"), _row(rows, "in_transit", "sms")
            assert email is not None and sms is not None
            mails = (await doubles.get("/_double/sendgrid/messages")).json()["messages"]
            texts = (await doubles.get("/_double/twilio/messages")).json()["messages"]
            [mail] = mails
            [text] = texts
            assert mail["to"] == [EMAIL]
            assert mail["custom_args"]["trackflow_key"] == email.idempotency_key
            assert email.transport == "sendgrid"
            assert email.provider_message_id == mail["message_id"]  # SendGrid's X-Message-Id
            assert text["to"] == PHONE and text["key"] == sms.idempotency_key
            assert sms.transport == "twilio" and sms.provider_message_id == text["sid"]

            # The doubles' signed delivery reports reach the API and land on the rows.
            delivered = await eventually(
                sent_with_ids,
                lambda rows: all(
                    (row := _row(rows, "in_transit", channel)) is not None
                    and row.delivery_status == "delivered"
                    for channel in ("email", "sms")
                ),
                what="delivery receipts",
            )
            assert len(delivered) == 2

            stop = {"from": PHONE, "to": SIMULATED_FROM, "body": "STOP"}
            assert (await doubles.post("/_double/twilio/inbound", json=stop)).status_code == 200
            callbacks = (await doubles.get("/_double/callbacks")).json()["callbacks"]
            [inbound] = [c for c in callbacks if c["kind"] == "twilio_inbound"]
            assert inbound["status_code"] == 200, inbound  # signed as Twilio signs: accepted

            out = event | {"status": "out_for_delivery", "occurred_at": "2026-11-21T08:00:00Z"}
            assert (await api.post("/v1/events", json=out)).status_code == 202
            rows = await eventually(
                sent_with_ids,
                lambda rows: (
                    (row := _row(rows, "out_for_delivery", "sms")) is not None
                    and row.status == "suppressed"
                    and (mail_row := _row(rows, "out_for_delivery", "email")) is not None
                    and mail_row.status == "sent"
                ),
                deadline_s=60,
                what="the SMS after STOP suppressed, the email sent",
            )
            suppressed = _row(rows, "out_for_delivery", "sms")
            assert suppressed is not None and suppressed.provider_message_id is None
            texts = (await doubles.get("/_double/twilio/messages")).json()["messages"]
            assert [t["sid"] for t in texts] == [sms.provider_message_id]  # no SMS since
            mails = (await doubles.get("/_double/sendgrid/messages")).json()["messages"]
            assert len(mails) == 2
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    output = log_path.read_text()
    assert process.returncode == 0, output
    assert "stopping" in output
    [banner_line] = [line for line in output.splitlines() if line.startswith("  providers  ")]
    assert f"providers  {doubles_url}" in banner_line and len(banner_line) <= 80
    assert {c["argv"][3] for c in children if len(c["argv"]) > 3} >= {
        "simulate",
        "worker",
        "api",
        "codec-server",
    }
    assert len(children) == 5  # Temporal, codec server, doubles, worker, API
    assert [c["pid"] for c in children if _runs(c["pid"], c["argv"])] == []


def _state(**values: Any) -> MessageState:
    fields = dict.fromkeys(MessageState.model_fields) | {"attempts": 1, "kind": "message"}
    base = fields | {"idempotency_key": "k", "tracking_number": "1Z5R89390357567127"}
    return MessageState.model_validate(base | values)


def test_the_demo_shows_each_providers_word_once_and_a_suppressed_sms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo, "_width", lambda: 70)
    shown: set[str] = set()
    accepted = _state(
        status="sent", channel="email", trigger="in_transit", transport="sendgrid",
        provider_message_id="X-1",
    )  # fmt: skip
    assert _feedback_lines(accepted, shown) == ["      ↳ …7127 email/in_transit: sendgrid id X-1"]
    assert _feedback_lines(accepted, shown) == []
    clicked = accepted.model_copy(
        update={"delivery_status": "delivered", "opened_at": NOW, "clicked_at": NOW}
    )
    assert [line.split(": ")[-1] for line in _feedback_lines(clicked, shown)] == [
        "delivered",
        "opened",
        "clicked",
    ]
    stopped = _state(
        status="suppressed", channel="sms", trigger="delivered", to=PHONE, error_code="sms_stop"
    )
    assert _feedback_lines(stopped, set()) == [
        f"      ↳ …7127 sms/delivered: suppressed, not sent: {PHONE} replied STOP"
    ]
    long = f"      ↳ …7127 sms/return_requested: suppressed, not sent: {PHONE} replied STOP"
    assert _wrapped(long).splitlines() == [
        "      ↳ …7127 sms/return_requested: suppressed, not sent: +15025550123",
        "        replied STOP",
    ]
    assert _feedback_lines(_state(status="sent", kind="alert"), set()) == []
    assert _feedback_lines(accepted, {"*"}) == []  # a row from before the demo


def _stack(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], **options: Any) -> Any:
    from starters.embedded import EmbeddedStack
    from trackflow.settings import Settings

    for name in [n for n in os.environ if n.startswith("TRACKFLOW_")]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    defaults: dict[str, Any] = {"api_port": 1, "temporal_port": 2, "ui_port": 3, "demo": True}
    return EmbeddedStack(Settings(), **(defaults | options))


def test_the_demo_doubles_only_the_integrations_the_environment_leaves_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_slack = {"TRACKFLOW_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x"}
    stack = _stack(monkeypatch, real_slack)
    assert stack.doubled == ("gorgias", "zendesk", "klaviyo")
    assert stack.ops_url is not None and stack.providers_url is None  # no SendGrid/Twilio
    env = stack._doubles_env(dict(os.environ), tmp_path, "http://d")
    assert not [name for name in env if name.startswith("TRACKFLOW_SLACK_")]
    assert env["TRACKFLOW_GORGIAS_BASE_URL"] == "http://d/gorgias"
    assert env["TRACKFLOW_ZENDESK_BASE_URL"] == "http://d/zendesk"
    assert env["TRACKFLOW_KLAVIYO_BASE_URL"] == "http://d/klaviyo"
    # With the outbox, texts become the Klaviyo double's events; email stays in the outbox.
    assert env["TRACKFLOW_SMS_DELIVERY_MODE"] == "klaviyo"
    assert "TRACKFLOW_SENDGRID_BASE_URL" not in env and "TRACKFLOW_EMAIL_DELIVERY_MODE" not in env
    lines = stack._ops_lines()
    assert [line.split()[0] for line in lines[2:]] == ["Gorgias", "Zendesk", "Klaviyo", "delayed"]

    chosen = _stack(monkeypatch, {"TRACKFLOW_DELIVERY_MODE": "outbox"})
    assert "TRACKFLOW_SMS_DELIVERY_MODE" not in chosen._doubles_env(dict(os.environ), tmp_path, "u")
    own_klaviyo = _stack(monkeypatch, {"TRACKFLOW_KLAVIYO_API_KEY": "pk_real"})
    env = own_klaviyo._doubles_env(dict(os.environ), tmp_path, "http://d")
    assert "klaviyo" not in own_klaviyo.doubled and "TRACKFLOW_SMS_DELIVERY_MODE" not in env
    assert not [name for name in env if "KLAVIYO" in name]

    simulated = _stack(monkeypatch, {}, providers="simulated")
    env = simulated._doubles_env(dict(os.environ), tmp_path, "http://d")
    assert simulated.doubled == ("slack", "gorgias", "zendesk", "klaviyo")
    assert env["TRACKFLOW_TWILIO_BASE_URL"] == "http://d"  # SMS stay Twilio's (STOP, receipts)
    assert "TRACKFLOW_SMS_DELIVERY_MODE" not in env

    plain = _stack(monkeypatch, {}, demo=False)
    assert plain.doubled == () and plain.providers_port is None and plain._ops_lines() == []
