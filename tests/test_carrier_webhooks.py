"""Carrier/aggregator webhooks in: signatures checked, events signalled, unknown numbers kept."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from temporalio.client import Client

from starters.api import create_app
from tests.api_support import shipengine_headers, shipengine_jwks, shipengine_track_event
from tests.factories import ANY_TIME_POLICY
from tests.harness import eventually, outbox, running_worker, sent
from trackflow.carriers.samples import random_tracking_number
from trackflow.settings import Settings
from workers.runtime import connect

FIXTURES = Path(__file__).parent / "fixtures"
EASYPOST_SECRET = "sécret"
AFTERSHIP_SECRET = "aftership-secret"


@pytest.fixture
async def api(
    temporal_address: str, task_queue: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        temporal_address=temporal_address,
        task_queue=task_queue,
        data_dir=tmp_path,
        api_token="t",
        easypost_webhook_secret=EASYPOST_SECRET,
        aftership_webhook_secret=AFTERSHIP_SECRET,
        shipengine_webhook_keys=shipengine_jwks(),
    )
    app = create_app(settings, lambda: connect(settings), ANY_TIME_POLICY)
    headers = {"Authorization": "Bearer t"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as http:
        yield http


def _number() -> str:
    return random_tracking_number("ups")


def _easypost_event(number: str) -> bytes:
    event = json.loads((FIXTURES / "easypost" / "easypost_tracker_updated_event.json").read_text())
    event["result"]["tracking_code"] = number
    return json.dumps(event).encode()


def _easypost_signature(body: bytes, secret: str = EASYPOST_SECRET) -> str:
    key = unicodedata.normalize("NFKD", secret).encode()
    return "hmac-sha256-hex=" + hmac.new(key, body, hashlib.sha256).hexdigest()


async def _register(api: httpx.AsyncClient, number: str) -> None:
    body = {
        "order_id": "W-1",
        "tracking_number": number,
        "customer": {"name": "Ada", "email": "ada@example.com"},
        "order_value": 20,
    }
    assert (await api.post("/v1/shipments", json=body)).status_code == 202


async def test_signed_easypost_webhook_reaches_the_shipment(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    number = _number()
    body = _easypost_event(number)
    async with running_worker(client, task_queue, tmp_path):
        await _register(api, number)
        response = await api.post(
            "/webhooks/easypost",
            content=body,
            headers={"X-Hmac-Signature": _easypost_signature(body)},
        )
        records = await eventually(lambda: outbox(tmp_path, number), lambda r: len(r) >= 2)
    assert response.status_code == 200, response.text
    assert response.json()["kept_for_later"] == 0
    assert response.json()["matched"] == response.json()["events"] > 1
    assert sent(records)[:2] == [("label_created", "email"), ("in_transit", "email")]


@pytest.mark.parametrize("signature", [None, "hmac-sha256-hex=00", "tampered"])
async def test_easypost_webhook_with_a_bad_signature_is_401(
    api: httpx.AsyncClient, signature: str | None
) -> None:
    body = _easypost_event(_number())
    if signature == "tampered":
        signature = _easypost_signature(body)
        body = body.replace(b"Picked up", b"Picked UP")
    headers = {"X-Hmac-Signature": signature} if signature else {}
    response = await api.post("/webhooks/easypost", content=body, headers=headers)
    assert response.status_code == 401


async def test_events_for_an_unknown_number_are_kept_and_handed_over_on_registration(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    number = _number()
    body = _easypost_event(number)
    headers = {"X-Hmac-Signature": _easypost_signature(body)}
    async with running_worker(client, task_queue, tmp_path):
        early = await api.post("/webhooks/easypost", content=body, headers=headers)
        kept = await client.get_workflow_handle(f"unmatched-{number}").query("events")
        await _register(api, number)
        records = await eventually(
            lambda: outbox(tmp_path, number), lambda r: ("in_transit", "email") in sent(r)
        )
        handed = await client.get_workflow_handle(f"unmatched-{number}").result()
    assert early.status_code == 200
    assert early.json()["matched"] == 0
    assert early.json()["kept_for_later"] == len(kept) == handed > 0
    assert sent(records)[-1] == ("in_transit", "email")


def _aftership_body(number: str) -> bytes:
    sample = json.loads((FIXTURES / "aftership" / "aftership_tracking_update.json").read_text())
    body = sample["body"]
    body["msg"]["tracking_number"] = number
    return json.dumps(body).encode()


async def test_aftership_webhook_signature_checked(api: httpx.AsyncClient) -> None:
    body = _aftership_body(_number())
    good = base64.b64encode(hmac.new(AFTERSHIP_SECRET.encode(), body, hashlib.sha256).digest())
    accepted = await api.post(
        "/webhooks/aftership", content=body, headers={"aftership-hmac-sha256": good.decode()}
    )
    rejected = await api.post(
        "/webhooks/aftership", content=body + b" ", headers={"aftership-hmac-sha256": good.decode()}
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["events"] >= 1
    assert rejected.status_code == 401


def _shipengine_body(number: str) -> bytes:
    return json.dumps(shipengine_track_event(number)).encode()


async def test_shipengine_webhook_rsa_signature_checked(api: httpx.AsyncClient) -> None:
    body = _shipengine_body(_number())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    accepted = await api.post(
        "/webhooks/shipengine", content=body, headers=shipengine_headers(body)
    )
    forged = await api.post(
        "/webhooks/shipengine", content=body, headers=shipengine_headers(body, key=other)
    )
    unsigned = await api.post("/webhooks/shipengine", content=body)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["events"] >= 1
    assert forged.status_code == 401
    assert unsigned.status_code == 404


async def test_malformed_carrier_payload_is_422_naming_the_field(api: httpx.AsyncClient) -> None:
    body = json.dumps({"description": "tracker.updated", "result": {"status": "x"}}).encode()
    response = await api.post(
        "/webhooks/easypost", content=body, headers={"X-Hmac-Signature": _easypost_signature(body)}
    )
    assert response.status_code == 422
    assert "tracking_code" in response.json()["detail"]


async def test_an_unknown_carrier_code_is_kept_counted_and_shown(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    number = _number()
    event = json.loads(_easypost_event(number))
    event["result"]["tracking_details"] = []
    event["result"]["status"] = "teleported"
    event["result"]["status_detail"] = "beamed_up"
    body = json.dumps(event).encode()
    async with running_worker(client, task_queue, tmp_path):
        await _register(api, number)
        response = await api.post(
            "/webhooks/easypost",
            content=body,
            headers={"X-Hmac-Signature": _easypost_signature(body)},
        )
        view = await eventually(
            lambda: api.get(f"/v1/shipments/{number}"),
            lambda r: bool(r.json()["timeline"]),
            what="unknown-code event in the timeline",
        )
    assert response.json()["unrecognised_codes"] == ["easypost:teleported/beamed_up"]
    shown = view.json()
    assert shown["unrecognised_codes"] == ["easypost:teleported/beamed_up"]
    entry = shown["timeline"][0]
    assert (entry["status"], entry["exception"], entry["raw_code"], entry["recognised"]) == (
        "exception",
        "unknown",
        "teleported/beamed_up",
        False,
    )
