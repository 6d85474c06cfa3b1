"""The HTTP service against the real dev server: auth, validation, durability, dedupe."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from starters.api import create_app
from tests.api_support import (
    SHOPIFY_FIXTURES,
    TOKEN,
    api_client,
    api_settings,
    event_body,
    fulfillment,
    shipment_body,
    shopify_signature,
    tracking_number,
    workflow_started,
)
from tests.factories import ANY_TIME_POLICY
from tests.harness import eventually, outbox, running_worker, sent, zone_at_local_hour
from trackflow.contracts import ANOTHER_ORDER, UPDATE_REGISTER
from trackflow.models import Shipment, ShipmentUpdate, workflow_id_for
from trackflow.pinning import pin
from trackflow.settings import Settings
from trackflow.shipment_state import ShipmentDocument, WaitingMessage
from trackflow.tracking_policy import TrackingPolicy
from workers.runtime import connect


@pytest.fixture
async def api(
    temporal_address: str, task_queue: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(api_settings(temporal_address, task_queue, tmp_path)) as http:
        yield http


def _fulfillment(*tracking_numbers: str, status: str | None = None) -> dict[str, Any]:
    return fulfillment(*tracking_numbers, shipment_status=status)


async def _post_shopify(
    http: httpx.AsyncClient,
    payload: dict[str, Any],
    *,
    topic: str = "fulfillments/create",
    webhook_id: str = "wh-1",
    signature: str | None = None,
) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": signature if signature is not None else shopify_signature(body),
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Shop-Domain": "example.myshopify.com",
        "Content-Type": "application/json",
    }
    return await http.post("/webhooks/shopify", content=body, headers=headers)


async def test_shopify_webhook_with_valid_hmac_starts_the_workflow(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    number = tracking_number()
    async with running_worker(client, task_queue, tmp_path):
        response = await _post_shopify(api, _fulfillment(number))
    assert response.status_code == 200, response.text
    assert response.json()["shipments"] == [
        {
            "tracking_number": number,
            "workflow_id": f"shipment-{number}",
            "outcome": "accepted",
            "detail": None,
            "cancelled": False,
            "warnings": [],
        }
    ]
    description = await client.get_workflow_handle(f"shipment-{number}").describe()
    assert description.workflow_type == "ShipmentTrackingWorkflow"


@pytest.mark.parametrize("signature", ["", "bm90IHRoZSByaWdodCBvbmU=", "tampered!"])
async def test_shopify_webhook_with_bad_hmac_is_401_and_starts_nothing(
    api: httpx.AsyncClient, client: Client, signature: str
) -> None:
    number = tracking_number()
    response = await _post_shopify(api, _fulfillment(number), signature=signature)
    assert response.status_code == 401
    assert "X-Shopify-Hmac-Sha256" in response.json()["detail"]
    assert not await workflow_started(client, number)


async def test_shopify_webhook_without_hmac_header_is_401(
    api: httpx.AsyncClient, client: Client
) -> None:
    number = tracking_number()
    body = json.dumps(_fulfillment(number)).encode()
    headers = {"X-Shopify-Topic": "fulfillments/create"}
    response = await api.post("/webhooks/shopify", content=body, headers=headers)
    assert response.status_code == 401
    assert not await workflow_started(client, number)


async def test_shopify_body_signed_with_other_secret_is_rejected(
    api: httpx.AsyncClient, client: Client
) -> None:
    number = tracking_number()
    body = json.dumps(_fulfillment(number)).encode()
    response = await _post_shopify(
        api, _fulfillment(number), signature=shopify_signature(body, secret="someone-else")
    )
    assert response.status_code == 401
    assert not await workflow_started(client, number)


async def test_repeated_shopify_delivery_has_no_second_effect(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    number = tracking_number()
    payload = _fulfillment(number, status="in_transit")
    async with running_worker(client, task_queue, tmp_path):
        for _ in range(5):
            response = await _post_shopify(api, payload, webhook_id="wh-same")
            assert response.status_code == 200, response.text
        records = await eventually(
            lambda: outbox(tmp_path, number), lambda r: len(r) >= 1, what="in-transit email"
        )
        view = await eventually(
            lambda: _view(api, number),
            lambda v: len(v["timeline"]) >= 1,
            what="event recorded",
        )
    assert sent(records) == [("in_transit", "email")]
    assert len(view["timeline"]) == 1
    assert len(view["notifications"]) == 1


async def _view(api: httpx.AsyncClient, number: str) -> dict[str, Any]:
    response = await api.get(f"/v1/shipments/{number}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_split_fulfillment_starts_one_workflow_per_tracking_number(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    first, second = tracking_number(), tracking_number()
    async with running_worker(client, task_queue, tmp_path):
        response = await _post_shopify(api, _fulfillment(first, second))
    assert response.status_code == 200, response.text
    assert [(s["tracking_number"], s["outcome"]) for s in response.json()["shipments"]] == [
        (first, "accepted"),
        (second, "accepted"),
    ]
    assert await workflow_started(client, first)
    assert await workflow_started(client, second)


async def test_unknown_shopify_topic_is_acknowledged_and_ignored(api: httpx.AsyncClient) -> None:
    response = await _post_shopify(api, {"id": 1}, topic="products/update")
    assert response.status_code == 200
    assert "products/update" in response.json()["ignored"]


async def test_shopify_payload_without_tracking_number_is_422_with_reason(
    api: httpx.AsyncClient,
) -> None:
    payload = _fulfillment(tracking_number())
    payload["tracking_numbers"] = []
    payload["tracking_number"] = None
    response = await _post_shopify(api, payload)
    assert response.status_code == 422
    assert "tracking number" in response.json()["detail"]


async def test_register_shipment_then_events_flow_to_messages(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    number = tracking_number()
    async with running_worker(client, task_queue, tmp_path):
        response = await api.post("/v1/shipments", json=shipment_body(number))
        assert response.status_code == 202, response.text
        for status in ("label_created", "in_transit"):
            response = await api.post("/v1/events", json=event_body(number, status))
            assert response.status_code == 202, response.text
        records = await eventually(
            lambda: outbox(tmp_path, number), lambda r: len(r) >= 4, what="four messages"
        )
        view = await _view(api, number)
    assert sent(records) == [
        ("label_created", "email"),
        ("label_created", "sms"),
        ("in_transit", "email"),
        ("in_transit", "sms"),
    ]
    assert view["status"] == "in_transit"
    assert view["carrier"] == "ups"
    assert [n["trigger"] for n in view["notifications"]] == [
        "label_created",
        "label_created",
        "in_transit",
        "in_transit",
    ]
    assert view["next_action"]["kind"] == "stale_check_in"
    assert view["next_action"]["due_local"].endswith("(America/New_York)")


async def test_value_segmentation_low_value_order_gets_email_only(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    number = tracking_number()
    async with running_worker(client, task_queue, tmp_path):
        body = shipment_body(number, order_value=149.99)
        assert (await api.post("/v1/shipments", json=body)).status_code == 202
        event = event_body(number, "out_for_delivery")
        assert (await api.post("/v1/events", json=event)).status_code == 202
        records = await eventually(
            lambda: outbox(tmp_path, number), lambda r: len(r) >= 1, what="one email"
        )
        await eventually(
            lambda: _view(api, number), lambda v: len(v["notifications"]) == 1, what="recorded"
        )
    assert sent(records) == [("out_for_delivery", "email")]
    assert records[0].to == "ada@example.com"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/shipments", {"order_id": "1", "customer": {"email": "a@b.co"}}, "tracking_number"),
        ("/v1/shipments", shipment_body("1Z999", order_value=-3), "order_value"),
        ("/v1/shipments", shipment_body("1Z999AA1", customer={"email": "nope"}), "email"),
        (
            "/v1/shipments",
            shipment_body("1Z999AA1", customer={"email": "x<victim@example.com"}),
            "email",
        ),
        (
            "/v1/shipments",
            shipment_body("1Z999AA1", customer={"email": "a,b@example.com"}),
            "email",
        ),
        ("/v1/events", event_body("1Z999AA1", "teleported"), "status"),
        (
            "/v1/events",
            event_body("1Z999AA1", "in_transit", occurred_at="yesterday"),
            "occurred_at",
        ),
    ],
)
async def test_malformed_input_is_422_naming_the_field(
    api: httpx.AsyncClient, path: str, body: dict[str, Any], field: str
) -> None:
    response = await api.post(path, json=body)
    assert response.status_code == 422
    locations = [error["loc"] for error in response.json()["detail"]]
    assert any(field in location for location in locations), locations


async def test_event_for_unknown_tracking_number_is_404(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/events", json=event_body(tracking_number(), "in_transit"))
    assert response.status_code == 404
    assert "no active shipment" in response.json()["detail"]


async def test_missing_or_wrong_bearer_token_is_401(api: httpx.AsyncClient) -> None:
    body = shipment_body(tracking_number())
    assert (
        await api.post("/v1/shipments", json=body, headers={"Authorization": ""})
    ).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await api.post("/v1/shipments", json=body, headers=wrong)).status_code == 401


async def test_healthz_is_200_when_temporal_and_the_ledger_are_reachable(
    api: httpx.AsyncClient,
) -> None:
    response = await api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "temporal": "ok", "ledger": "ok"}


async def test_temporal_unavailable_is_503_so_the_sender_retries(
    task_queue: str, tmp_path: Path
) -> None:
    settings = api_settings("127.0.0.1:1", task_queue, tmp_path)
    async with api_client(settings, policy=None) as http:
        shipment = await http.post("/v1/shipments", json=shipment_body(tracking_number()))
        webhook = await _post_shopify(http, _fulfillment(tracking_number()))
        health = await http.get("/healthz")
    assert shipment.status_code == 503
    assert "Temporal" in shipment.json()["detail"]
    assert webhook.status_code == 503
    assert health.status_code == 503
    assert health.json() == {"status": "unavailable", "temporal": "unavailable", "ledger": "ok"}


async def test_cancelled_fulfillment_ends_the_shipment_workflow(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    number = tracking_number()
    async with running_worker(client, task_queue, tmp_path):
        created = await _post_shopify(api, _fulfillment(number), webhook_id="wh-create")
        assert created.status_code == 200, created.text
        cancelled = _fulfillment(number)
        cancelled["status"] = "cancelled"
        update = await _post_shopify(
            api, cancelled, topic="fulfillments/update", webhook_id="wh-cancel"
        )
        assert update.status_code == 200, update.text
        result = await client.get_workflow_handle(f"shipment-{number}").result()
        late = await _post_shopify(api, _fulfillment(number), webhook_id="wh-late")
    assert result["status"] == "cancelled"
    assert "cancelled" in result["closed_reason"]
    [answer] = late.json()["shipments"]
    assert (answer["outcome"], answer["workflow_id"]) == ("ignored", None)
    assert "already completed; not started again" in answer["detail"]
    assert await outbox(tmp_path, number) == []


async def test_shopify_refund_after_delivery_starts_the_returns_flow(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    number = tracking_number()
    order_id = int("9" + str(uuid.uuid4().int)[:17])
    fulfillment = _fulfillment(number, status="delivered") | {"order_id": order_id}
    refund = json.loads((SHOPIFY_FIXTURES / "shopify_refunds_create.json").read_text())
    refund["order_id"] = order_id
    async with running_worker(client, task_queue, tmp_path):
        assert (await _post_shopify(api, fulfillment)).status_code == 200
        await eventually(lambda: outbox(tmp_path, number), lambda r: len(r) == 1, what="delivered")
        response = await _post_shopify(api, refund, topic="refunds/create", webhook_id="wh-r")
        records = await eventually(
            lambda: outbox(tmp_path, number),
            lambda r: len(r) == 4,
            what="ack + helpdesk tag + return alert",
        )
    assert response.status_code == 200, response.text
    [answer] = response.json()["shipments"]
    assert (answer["tracking_number"], answer["outcome"]) == (number, "return_started")
    assert answer["detail"].startswith(f"return-{number}-{order_id}-")  # the returns flow
    assert sent(records) == [("delivered", "email"), ("return_requested", "email")]
    assert [r.trigger for r in records if r.kind == "helpdesk"] == ["return_requested"]
    assert [r.trigger for r in records if r.kind == "alert"] == ["return_opened"]


async def test_shopify_refund_for_an_untracked_order_is_acknowledged_and_ignored(
    api: httpx.AsyncClient,
) -> None:
    refund = json.loads((SHOPIFY_FIXTURES / "shopify_refunds_create.json").read_text())
    refund["order_id"] = 4242424242424242
    response = await _post_shopify(api, refund, topic="refunds/create")
    assert response.status_code == 200
    assert "4242424242424242" in response.json()["ignored"]


async def test_return_request_endpoint_answers_for_an_active_shipment(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    number = tracking_number()
    body = {"kind": "refund", "reason": "too small"}
    async with running_worker(client, task_queue, tmp_path):
        assert (await api.post("/v1/shipments", json=shipment_body(number))).status_code == 202
        first = await api.post(f"/v1/shipments/{number}/return-requests", json=body)
        again = await api.post(f"/v1/shipments/{number}/return-requests", json=body)
        unknown = await api.post(f"/v1/shipments/{tracking_number()}/return-requests", json=body)
    assert first.status_code == 202
    assert (first.json()["outcome"], first.json()["detail"]) == ("ignored", "not delivered yet")
    assert first.json()["request_id"] == again.json()["request_id"]
    assert (again.json()["outcome"], again.json()["detail"]) == ("ignored", "already requested")
    assert unknown.status_code == 404


async def test_time_scale_compresses_the_lost_package_timer_end_to_end(
    temporal_address: str, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """TRACKFLOW_TIME_SCALE (demos, dry runs): 10 days without a scan pass in under 9 s."""
    settings = api_settings(temporal_address, task_queue, tmp_path).model_copy(
        update={"time_scale": 100_000.0}
    )
    number = tracking_number()
    customer = {"name": "Ada", "email": "ada@example.com", "timezone": zone_at_local_hour(12)}
    body = shipment_body(number, customer=customer)
    async with (
        running_worker(client, task_queue, tmp_path),
        api_client(settings, policy=None) as http,
    ):
        assert (await http.post("/v1/shipments", json=body)).status_code == 202
        event = event_body(number, "in_transit")
        assert (await http.post("/v1/events", json=event)).status_code == 202
        records = await eventually(
            lambda: outbox(tmp_path, number),
            lambda r: any(x.trigger == "lost" and x.kind == "message" for x in r),
            deadline_s=60,
            what="lost-package message",
        )
        view = await _view(http, number)
    assert sent(records) == [("in_transit", "email"), ("stale", "email"), ("lost", "email")]
    assert view["status"] == "lost"


async def test_malformed_tracking_number_in_the_path_is_422(api: httpx.AsyncClient) -> None:
    shown = await api.get("/v1/shipments/%21%21")
    returned = await api.post("/v1/shipments/%21%21/return-requests", json={})
    assert (shown.status_code, returned.status_code) == (422, 422)
    assert "tracking_number" in shown.json()["detail"]


def _fulfillment_at(
    number: str, updated_at: str, *, phone: str, province: tuple[str, str], status: str
) -> dict[str, Any]:
    """A fulfillment of a 500 USD order (SMS-worthy) whose customer consented to SMS."""
    payload = _fulfillment(number, status=status)
    payload["updated_at"] = updated_at
    payload["total_price"] = "500.00"
    payload["sms_consent"] = True
    payload["destination"] = payload["destination"] | {
        "phone": phone,
        "province": province[0],
        "province_code": province[1],
    }
    return payload


async def test_replayed_or_older_shopify_webhook_does_not_overwrite_newer_facts(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """Issue 7 item 13: a replayed webhook (same X-Shopify-Webhook-Id) or an older payload
    (earlier `updated_at`) after a newer update changes nothing; the newer phone and address
    keep being used, and the events those payloads carry are deduplicated by event key."""
    number = tracking_number()
    kentucky, california = ("Kentucky", "KY"), ("California", "CA")
    original, newer, older = (
        _fulfillment_at(number, updated_at, phone=phone, province=province, status=status)
        for updated_at, phone, province, status in [
            ("2026-11-20T08:00:00-05:00", "+15025550100", kentucky, "label_printed"),
            ("2026-11-20T10:00:00-05:00", "+14155550199", california, "in_transit"),
            ("2026-11-20T09:00:00-05:00", "+15025550111", kentucky, "label_printed"),
        ]
    )
    update = "fulfillments/update"
    async with running_worker(client, task_queue, tmp_path):
        for payload, topic, webhook_id in [
            (original, "fulfillments/create", "wh-original"),
            (newer, update, "wh-newer"),
            (newer, update, "wh-newer"),  # Shopify retries, or an attacker replays
            (older, update, "wh-older"),  # delivered late, or replayed from a capture
            (original, "fulfillments/create", "wh-original"),
        ]:
            response = await _post_shopify(api, payload, topic=topic, webhook_id=webhook_id)
            assert response.status_code == 200, response.text
        event = event_body(number, "out_for_delivery", occurred_at="2026-11-20T18:00:00Z")
        assert (await api.post("/v1/events", json=event)).status_code == 202
        view = await eventually(
            lambda: _view(api, number),
            lambda v: [n["trigger"] for n in v["notifications"]].count("out_for_delivery") == 2,
            what="out-for-delivery email and SMS recorded",
        )
        records = await outbox(tmp_path, number)
    sms = [(r.trigger, r.to) for r in records if r.kind == "message" and r.channel == "sms"]
    assert sms == [
        ("label_created", "+15025550100"),
        ("in_transit", "+14155550199"),
        ("out_for_delivery", "+14155550199"),
    ]
    assert view["timezone"] == "America/Los_Angeles"  # from the newer (California) address
    # the replayed payloads' events were recognised by event key: one entry per milestone
    assert [e["status"] for e in view["timeline"]] == [
        "label_created",
        "in_transit",
        "out_for_delivery",
    ]
    ignored = [(n["about"], n["detail"]) for n in view["notes"] if n["kind"] == "update_ignored"]
    assert ignored == [
        ("wh-newer", "replayed webhook"),
        ("wh-older", "older than the applied update of 2026-11-20T15:00:00+00:00"),
        ("wh-original", "replayed webhook"),
    ]


async def test_update_for_another_tracking_number_is_refused_and_the_workflow_goes_on(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """Such an update used to raise inside the workflow: a task failure retried forever. Now
    the update's validator refuses it: it never reaches the history nor the state."""
    number, other = tracking_number(), tracking_number()
    shipment = pin(Shipment.model_validate(shipment_body(other)), ANY_TIME_POLICY)
    stray = ShipmentUpdate(shipment=shipment, update_id="x")
    handle = client.get_workflow_handle(workflow_id_for(number))
    async with running_worker(client, task_queue, tmp_path):
        assert (await api.post("/v1/shipments", json=shipment_body(number))).status_code == 202
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(UPDATE_REGISTER, stray)
        event = event_body(number, "in_transit")
        assert (await api.post("/v1/events", json=event)).status_code == 202
        view = await eventually(
            lambda: _view(api, number),
            lambda v: len(v["notifications"]) == 2,
            what="in-transit email and SMS after the stray update",
        )
        history = await handle.fetch_history()
    cause = refused.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == ANOTHER_ORDER
    assert cause.message == f"this workflow follows tracking number {number}"
    assert view["notes"] == []
    updates = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.meta.update_id
        for e in history.events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    assert updates == []  # the registration rode in the start; the stray one was refused


def _due_in(view: dict[str, Any]) -> timedelta:
    return datetime.fromisoformat(view["next_action"]["due_at"]) - datetime.now(UTC)


async def test_time_scale_belongs_to_the_shipment_that_asks_for_it(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """Issue 8: the demo's 10000x clock was process-wide; a merchant's shipment registered
    while it ran was declared lost after 86 s. Only the shipment asking for it is compressed."""
    fast, real = tracking_number(), tracking_number()
    async with running_worker(client, task_queue, tmp_path):
        for number, extra in ((fast, {"time_scale": 10_000}), (real, {})):
            response = await api.post("/v1/shipments", json=shipment_body(number, **extra))
            assert response.status_code == 202, response.text
        fast_view, real_view = await _view(api, fast), await _view(api, real)
    assert fast_view["time_scale"] == 10_000
    assert timedelta(0) < _due_in(fast_view) < timedelta(minutes=2)
    assert real_view["time_scale"] is None  # shown only when it is not 1
    assert real_view["next_action"]["kind"] == "pickup_gap_alert"
    assert timedelta(hours=47) < _due_in(real_view) <= timedelta(hours=48)


@pytest.mark.parametrize("time_scale", [0, 0.5, 100_001, True, "10000"])
async def test_time_scale_out_of_range_is_422_and_starts_nothing(
    api: httpx.AsyncClient, client: Client, time_scale: object
) -> None:
    number = tracking_number()
    body = shipment_body(number, time_scale=time_scale)
    response = await api.post("/v1/shipments", json=body)
    assert response.status_code == 422, response.text
    assert "time_scale" in response.text
    shopify = await _post_shopify(api, _fulfillment(number) | {"time_scale": time_scale})
    assert shopify.status_code == 422, shopify.text
    assert "time_scale" in shopify.json()["detail"]
    assert not await workflow_started(client, number)


async def test_the_time_scale_setting_is_the_default_and_a_request_may_ask_for_real_time(
    temporal_address: str, client: Client, task_queue: str, tmp_path: Path
) -> None:
    settings = api_settings(temporal_address, task_queue, tmp_path, time_scale=10_000.0)
    scaled, real = tracking_number(), tracking_number()
    async with (
        running_worker(client, task_queue, tmp_path),
        api_client(settings, policy=None) as http,
    ):
        for number, extra in ((scaled, {}), (real, {"time_scale": 1})):
            response = await http.post("/v1/shipments", json=shipment_body(number, **extra))
            assert response.status_code == 202, response.text
        scaled_view, real_view = await _view(http, scaled), await _view(http, real)
    assert scaled_view["time_scale"] == 10_000
    assert _due_in(scaled_view) < timedelta(minutes=2)
    assert real_view["time_scale"] is None
    assert timedelta(hours=47) < _due_in(real_view) <= timedelta(hours=48)


async def test_shopify_fulfillment_may_ask_for_a_time_scale(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """`time_scale` is an enrichment field like `sms_consent`: covered by the HMAC."""
    fast, real = tracking_number(), tracking_number()
    async with running_worker(client, task_queue, tmp_path):
        response = await _post_shopify(api, _fulfillment(fast) | {"time_scale": 10_000})
        assert response.status_code == 200, response.text
        response = await _post_shopify(api, _fulfillment(real), webhook_id="wh-2")
        assert response.status_code == 200, response.text
        fast_view, real_view = await _view(api, fast), await _view(api, real)
    assert fast_view["time_scale"] == 10_000
    assert _due_in(fast_view) < timedelta(minutes=2)
    assert real_view["time_scale"] is None
    assert _due_in(real_view) > timedelta(hours=47)


# --- issue 8: the public shipment document, auth in the OpenAPI, offline docs, GET / ---------


async def test_get_shipment_is_the_documented_public_shape(
    temporal_address: str, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """The GET document used to be the workflow's internal view: held messages with their
    idempotency keys, ranks, scan markers and decision times, notes with their keys."""
    settings = api_settings(temporal_address, task_queue, tmp_path)
    number = tracking_number()
    customer = shipment_body(number)["customer"] | {"timezone": zone_at_local_hour(3)}
    async with (
        running_worker(client, task_queue, tmp_path),
        api_client(settings, TrackingPolicy()) as http,  # real quiet hours
    ):
        created = await http.post("/v1/shipments", json=shipment_body(number, customer=customer))
        assert created.status_code == 202, created.text
        event = await http.post("/v1/events", json=event_body(number, "label_created"))
        assert event.status_code == 202, event.text
        view = await eventually(
            lambda: _view(http, number), lambda v: len(v["waiting"]) == 2, what="held messages"
        )
        openapi = (await http.get("/openapi.json")).json()

    assert set(view) == set(ShipmentDocument.model_fields)
    assert [(w["trigger"], w["channel"]) for w in view["waiting"]] == [
        ("label_created", "email"),
        ("label_created", "sms"),
    ]
    assert set(view["waiting"][0]) == set(WaitingMessage.model_fields)
    assert view["waiting"][0]["why"].startswith("quiet hours: email goes out 08:00-21:00")
    due_at = datetime.fromisoformat(view["waiting"][0]["due_at"])
    due_local = due_at.astimezone(ZoneInfo(customer["timezone"])).strftime("%Y-%m-%d %H:%M")
    assert view["waiting"][0]["due_local"].startswith(due_local)  # the customer's date, not UTC's
    assert view["summary"] == "label_created"
    for internal in ("idempotency_key", "rank", "scan_marker", "decided_at", "seen_event_keys"):
        assert internal not in json.dumps(view)
    get = openapi["paths"]["/v1/shipments/{tracking_number}"]["get"]
    schema = get["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ShipmentDocument"}
    documented = openapi["components"]["schemas"]["WaitingMessage"]["properties"]
    assert set(documented) == set(WaitingMessage.model_fields)


async def test_openapi_declares_the_bearer_scheme_and_the_v1_routes_use_it(
    api: httpx.AsyncClient,
) -> None:
    """Swagger UI shows its Authorize button only for a declared security scheme."""
    openapi = (await api.get("/openapi.json")).json()
    assert openapi["components"]["securitySchemes"]["bearerAuth"] | {"description": ""} == {
        "type": "http",
        "scheme": "bearer",
        "description": "",
    }
    secured = {
        (path, method)
        for path, operations in openapi["paths"].items()
        for method, operation in operations.items()
        if operation.get("security") == [{"bearerAuth": []}]
    }
    v1 = {
        (path, method)
        for path, operations in openapi["paths"].items()
        for method in operations
        if path.startswith("/v1/")
    }
    assert secured == v1
    assert v1 == {
        ("/v1/shipments", "post"),
        ("/v1/events", "post"),
        ("/v1/shipments/{tracking_number}/return-requests", "post"),
        ("/v1/shipments/{tracking_number}", "get"),
        ("/v1/metrics/summary", "get"),
        ("/v1/metrics/report", "get"),
        ("/v1/metrics/report.csv", "get"),
    }


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer ", "Basic dGVzdC10b2tlbg==", "Token test-token"]
)
async def test_no_bearer_token_is_401_not_httpbearers_403(
    api: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    api.headers.pop("Authorization", None)
    response = await api.get(f"/v1/shipments/{tracking_number()}", headers=headers)
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "missing or wrong bearer token"}
    assert response.headers["www-authenticate"] == "Bearer"


async def test_the_bearer_scheme_is_case_insensitive(api: httpx.AsyncClient) -> None:
    headers = {"Authorization": f"bearer {TOKEN}"}
    response = await api.get(f"/v1/shipments/{tracking_number()}", headers=headers)
    assert response.status_code == 404, response.text  # authorised; no such shipment


async def test_no_configured_token_is_503(task_queue: str, tmp_path: Path) -> None:
    settings = api_settings("127.0.0.1:1", task_queue, tmp_path, api_token=None)
    app = create_app(settings, lambda: connect(settings))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as h:
        response = await h.get("/v1/shipments/1Z999", headers={"Authorization": "Bearer x"})
    assert response.status_code == 503
    assert response.json() == {"detail": "TRACKFLOW_API_TOKEN is not configured"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_pages_load_their_scripts_and_styles_from_this_server(
    api: httpx.AsyncClient, page: str
) -> None:
    """FastAPI's default pages load Swagger UI and ReDoc from a CDN: blank when offline."""
    response = await api.get(page)
    assert response.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert assets, response.text
    for url in assets:
        assert url.startswith("/docs-assets/"), url
        asset = await api.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0
    assert "fonts.googleapis" not in response.text


async def test_root_links_to_the_docs_and_the_health_check(api: httpx.AsyncClient) -> None:
    response = await api.get("/")
    assert response.status_code == 200
    assert response.json() == {
        "service": "trackflow",
        "links": {
            "docs": "/docs",
            "redoc": "/redoc",
            "openapi": "/openapi.json",
            "health": "/healthz",
        },
    }
    page = await api.get("/", headers={"Accept": "text/html"})
    assert page.headers["content-type"].startswith("text/html")
    assert '<a href="/docs">' in page.text


async def test_root_links_to_the_temporal_web_ui_when_it_is_known(
    task_queue: str, tmp_path: Path
) -> None:
    settings = Settings.from_env(
        {"TRACKFLOW_TEMPORAL_ADDRESS": "127.0.0.1:1", "TRACKFLOW_DATA_DIR": str(tmp_path)}
        | {"TRACKFLOW_TEMPORAL_UI_URL": "http://127.0.0.1:8233", "TRACKFLOW_TASK_QUEUE": task_queue}
    )
    app = create_app(settings, lambda: connect(settings))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as h:
        links = (await h.get("/")).json()["links"]
    assert links["temporal_web_ui"] == "http://127.0.0.1:8233"
