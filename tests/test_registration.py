"""Registration and return requests at the HTTP edge, answered by the shipment's workflow
(update-with-start, updates with validators), and the identity rules: a shipment is a tracking
number of an order; a second live order on its number is a 409, a recycled number starts a new
lifecycle for the new order and the old order's late events change nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

import starters.shipments
from tests.api_support import (
    api_client,
    api_settings,
    event_body,
    fulfillment,
    shipment_body,
    shopify_headers,
    tracking_number,
)
from tests.harness import eventually, outbox, running_worker, sent
from trackflow.contracts import UPDATE_REGISTER, ShipmentWorkflowInput
from trackflow.models import ShipmentUpdate, workflow_id_for


@pytest.fixture
async def api(
    temporal_address: str, task_queue: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(api_settings(temporal_address, task_queue, tmp_path)) as http:
        yield http


async def _view(api: httpx.AsyncClient, number: str) -> dict[str, Any]:
    response = await api.get(f"/v1/shipments/{number}")
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


async def _registered_updates(client: Client, number: str) -> list[ShipmentUpdate]:
    """The registrations the workflow's history holds: the one its start carries (first in
    the inbox), then the accepted "register" updates."""
    handle = client.get_workflow_handle(workflow_id_for(number))
    events = [e async for e in handle.fetch_history_events()]
    started = events[0].workflow_execution_started_event_attributes.input.payloads
    (start,) = await client.data_converter.decode(list(started), [ShipmentWorkflowInput])
    first = [item.update for item in start.inbox if item.update is not None]
    accepted = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request
        for e in events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    accepted = [a for a in accepted if a.input.name == UPDATE_REGISTER]
    return first + [
        (await client.data_converter.decode(list(a.input.args.payloads), [ShipmentUpdate]))[0]
        for a in accepted
    ]


async def _history(client: Client, number: str, run_id: str | None = None) -> list[HistoryEvent]:
    handle = client.get_workflow_handle(workflow_id_for(number), run_id=run_id)
    return [e async for e in handle.fetch_history_events()]


def _answer(number: str, outcome: str, detail: str | None = None) -> dict[str, Any]:
    return {
        "workflow_id": f"shipment-{number}",
        "tracking_number": number,
        "outcome": outcome,
        "detail": detail,
        "warnings": [],
    }


# --- outcomes -----------------------------------------------------------------------------


async def test_registration_answers_accepted_then_already_registered_then_updated(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    number = tracking_number()
    body = shipment_body(number)
    new_phone = body["customer"] | {"phone": "+15025550999"}
    async with running_worker(client, task_queue, tmp_path):
        first = await api.post("/v1/shipments", json=body)
        again = await api.post("/v1/shipments", json=body)
        changed = await api.post("/v1/shipments", json=body | {"customer": new_phone})
        event = await api.post("/v1/events", json=event_body(number, "in_transit"))
        assert event.status_code == 202, event.text
        records = await eventually(
            lambda: outbox(tmp_path, number), lambda r: len(sent(r)) == 2, what="email + SMS"
        )
        registrations = await _registered_updates(client, number)

    assert [r.status_code for r in (first, again, changed)] == [202, 202, 202]
    assert first.json() == _answer(number, "accepted")
    assert again.json() == _answer(number, "already_registered", "same facts")
    assert changed.json() == _answer(number, "updated")
    assert [(r.channel, r.to) for r in records] == [
        ("email", "ada@example.com"),
        ("sms", "+15025550999"),  # the updated facts are the ones used
    ]
    assert len(registrations) == 3


def _signed_fulfillment(
    number: str, *, updated_at: str, phone: str, status: str | None = None
) -> tuple[bytes, dict[str, Any]]:
    payload = fulfillment(number, shipment_status=status)
    payload["updated_at"] = updated_at
    payload["total_price"] = "500.00"
    payload["sms_consent"] = True
    payload["destination"] = payload["destination"] | {"phone": phone}
    return json.dumps(payload).encode(), payload


async def _post_fulfillment(
    api: httpx.AsyncClient, body: bytes, webhook_id: str, topic: str = "fulfillments/update"
) -> dict[str, Any]:
    headers = shopify_headers(body, topic, webhook_id=webhook_id)
    response = await api.post("/webhooks/shopify", content=body, headers=headers)
    assert response.status_code == 200, response.text
    [result] = response.json()["shipments"]
    assert isinstance(result, dict)
    return result


async def test_shopify_registrations_answer_per_shipment_and_their_events_ride_along(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    number = tracking_number()
    created, _ = _signed_fulfillment(
        number, updated_at="2026-11-20T08:00:00-05:00", phone="+15025550100", status="in_transit"
    )
    newer, _ = _signed_fulfillment(
        number, updated_at="2026-11-20T10:00:00-05:00", phone="+14155550199", status="in_transit"
    )
    older, _ = _signed_fulfillment(
        number, updated_at="2026-11-20T09:00:00-05:00", phone="+15025550111"
    )
    async with running_worker(client, task_queue, tmp_path):
        results = [
            await _post_fulfillment(api, created, "wh-create", "fulfillments/create"),
            await _post_fulfillment(api, created, "wh-create", "fulfillments/create"),
            await _post_fulfillment(api, newer, "wh-newer"),
            await _post_fulfillment(api, older, "wh-older"),
        ]
        records = await eventually(
            lambda: outbox(tmp_path, number), lambda r: len(sent(r)) == 2, what="in-transit"
        )
        history = await _history(client, number)

    assert [(r["outcome"], r["detail"]) for r in results] == [
        ("accepted", None),
        ("already_registered", "replayed webhook"),
        ("updated", None),
        ("ignored", "older than the applied update of 2026-11-20T15:00:00+00:00"),
    ]
    assert {r["workflow_id"] for r in results} == {f"shipment-{number}"}
    assert not any(r["cancelled"] for r in results)
    assert [(r.trigger, r.channel, r.to) for r in records if r.kind == "message"] == [
        ("in_transit", "email", "jon@example.com"),
        ("in_transit", "sms", "+15025550100"),
    ]
    # Each webhook's in-transit event rode in its registration (the first in the start, the
    # others in their updates; the repeats are recognised by their keys): no signal at all; the
    # rejected update of the older webhook is no exception, it was answered "ignored" and its
    # event deduplicated.
    signals = [e for e in history if e.HasField("workflow_execution_signaled_event_attributes")]
    assert signals == []
    accepted = [
        e for e in history if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    assert len(accepted) == 3


async def test_a_first_registration_needs_no_worker_and_an_unanswered_update_is_503(
    api: httpx.AsyncClient,
    client: Client,
    task_queue: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer_within = starters.shipments.ANSWER_WITHIN
    monkeypatch.setattr(starters.shipments, "ANSWER_WITHIN", timedelta(seconds=1))
    number = tracking_number()
    started = await api.post("/v1/shipments", json=shipment_body(number))
    shown = await api.get(f"/v1/shipments/{number}")  # from the first row: no worker asked
    unanswered = await api.post("/v1/shipments", json=shipment_body(number))
    returns = await api.post(f"/v1/shipments/{number}/return-requests", json={})
    monkeypatch.setattr(starters.shipments, "ANSWER_WITHIN", answer_within)
    async with running_worker(client, task_queue, tmp_path):
        again = await api.post("/v1/shipments", json=shipment_body(number))
        registrations = await _registered_updates(client, number)

    # The first registration is durable in the start: accepted with no worker running.
    assert started.status_code == 202, started.text
    assert started.json() == _answer(number, "accepted")
    assert shown.status_code == 200, shown.text
    assert (shown.json()["status"], shown.json()["next_action"]["kind"]) == (
        "pending",
        "pickup_gap_alert",
    )
    assert unanswered.status_code == 503, unanswered.text
    assert unanswered.headers["retry-after"] == "10"
    assert "no trackflow worker answered" in unanswered.json()["detail"]
    assert number in unanswered.json()["detail"]
    assert returns.status_code == 503, returns.text
    assert again.status_code == 202, again.text
    assert again.json() == _answer(number, "already_registered", "same facts")
    # The start carried the first registration; the updates followed it (the unanswered one
    # too, if the server still held it when a worker came: asking again is safe either way).
    assert [u.shipment.tracking_number for u in registrations[:1]] == [number]
    assert len(registrations) in (2, 3)


# --- one live order per number ------------------------------------------------------------


async def test_a_second_live_order_on_the_number_is_409_and_never_reaches_the_history(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    number = tracking_number()
    async with running_worker(client, task_queue, tmp_path):
        first = await api.post("/v1/shipments", json=shipment_body(number, order_id="A-1"))
        second = await api.post("/v1/shipments", json=shipment_body(number, order_id="B-2"))
        shopify_body = json.dumps(fulfillment(number) | {"order_id": 77}).encode()
        shopify = await api.post(
            "/webhooks/shopify",
            content=shopify_body,
            headers=shopify_headers(shopify_body, webhook_id="wh-b"),
        )
        event = await api.post("/v1/events", json=event_body(number, "in_transit"))
        assert event.status_code == 202, event.text
        view = await eventually(
            lambda: _view(api, number), lambda v: len(v["notifications"]) == 2, what="messages"
        )
        registrations = await _registered_updates(client, number)
        records = await outbox(tmp_path, number)

    assert first.json()["outcome"] == "accepted"
    assert second.status_code == 409, second.text
    assert second.json()["detail"] == (
        f"tracking number {number} is followed for order A-1, which is still in transit; a "
        "second live order on the same number is refused"
    )
    assert shopify.status_code == 200, shopify.text
    [refused] = shopify.json()["shipments"]
    assert (refused["outcome"], refused["workflow_id"]) == ("refused", None)
    assert "order A-1" in refused["detail"]
    # Rejected by the validator: no update event for B in the history, A's facts untouched.
    assert [u.shipment.order_id for u in registrations] == ["A-1"]
    assert view["order_id"] == "A-1"
    assert {r.idempotency_key.split(":")[0] for r in records} == {f"{number}/A-1"}


# --- return requests ----------------------------------------------------------------------


async def test_return_requests_answer_what_the_shipment_did(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    number = tracking_number()
    path = f"/v1/shipments/{number}/return-requests"
    async with running_worker(client, task_queue, tmp_path):
        registered = await api.post("/v1/shipments", json=shipment_body(number))
        assert registered.status_code == 202, registered.text
        early = await api.post(path, json={"request_id": "r-early", "kind": "refund"})
        delivered = await api.post("/v1/events", json=event_body(number, "delivered"))
        assert delivered.status_code == 202, delivered.text
        await eventually(
            lambda: _view(api, number), lambda v: v["status"] == "delivered", what="delivered"
        )
        started = await api.post(path, json={"request_id": "r-1", "reason": "too small"})
        repeated = await api.post(path, json={"request_id": "r-1", "reason": "too small"})
        other_order = await api.post(path, json={"request_id": "r-2", "order_id": "B-2"})
        same_order = await api.post(path, json={"request_id": "r-3", "order_id": "1001"})
        child = client.get_workflow_handle(f"return-{number}-1001-r-1")
        child_result = await child.result()
        unknown = await api.post(f"/v1/shipments/{tracking_number()}/return-requests", json={})

    assert early.status_code == 202, early.text
    assert early.json() == {
        "tracking_number": number,
        "request_id": "r-early",
        "outcome": "ignored",
        "detail": "not delivered yet",
    }
    assert started.status_code == 202, started.text
    assert started.json() == {
        "tracking_number": number,
        "request_id": "r-1",
        "outcome": "return_started",
        "detail": f"return-{number}-1001-r-1",
    }
    assert (repeated.json()["outcome"], repeated.json()["detail"]) == (
        "ignored",
        "already requested",
    )
    assert other_order.status_code == 409, other_order.text
    assert "followed for order 1001" in other_order.json()["detail"]
    assert same_order.json()["outcome"] == "return_started"
    assert child_result == [
        f"{number}/1001:return_requested:r-1:email",
        f"{number}/1001:return_requested:r-1:sms",
    ]
    assert unknown.status_code == 404


# --- recycled tracking numbers ------------------------------------------------------------


async def test_a_recycled_number_starts_a_new_lifecycle_for_the_new_order_only(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """Order A's lifecycle runs 100,000 times faster (its 72 h return window passes in
    seconds) rather than under time skipping: a fast-forwarded run's close time is its
    virtual clock's, days ahead, and B's real-time events would all be "before this order"."""
    number = tracking_number()
    email_only = shipment_body(number)["customer"] | {"phone": None}
    order_a = shipment_body(number, order_id="A-1", customer=email_only, time_scale=100_000)
    order_b = shipment_body(number, order_id="B-2", customer=email_only)
    a_delivered = event_body(
        number, "delivered", occurred_at=_iso(datetime.now(UTC)), event_id="a-delivered"
    )
    async with running_worker(client, task_queue, tmp_path):
        assert (await api.post("/v1/shipments", json=order_a)).json()["outcome"] == "accepted"
        assert (await api.post("/v1/events", json=a_delivered)).status_code == 202
        await eventually(
            lambda: outbox(tmp_path, number), lambda r: len(sent(r)) == 1, what="A delivered"
        )
        a_run = client.get_workflow_handle(workflow_id_for(number))
        a_result = await a_run.result()
        a_closed = await a_run.describe()
        assert a_closed.close_time is not None
        a_closed_at = a_closed.close_time

        a_again = await api.post("/v1/shipments", json=order_a)
        after_a_again = await a_run.describe()

        b = await api.post("/v1/shipments", json=order_b)
        b_run = await client.get_workflow_handle(workflow_id_for(number)).describe()
        b_label = event_body(
            number, "label_created", occurred_at=_iso(datetime.now(UTC)), event_id="b-label"
        )
        assert (await api.post("/v1/events", json=b_label)).status_code == 202
        # A's carrier reports a scan from before A's run closed, late: B ignores it.
        a_late = event_body(
            number,
            "out_for_delivery",
            occurred_at=_iso(a_closed_at - timedelta(minutes=5)),
            event_id="a-late",
        )
        assert (await api.post("/v1/events", json=a_late)).status_code == 202
        view = await eventually(
            lambda: _view(api, number),
            lambda v: len(v["timeline"]) == 2,
            what="both events on B's timeline",
        )
        records = await outbox(tmp_path, number)

    assert a_result["closed_reason"] == "lifecycle complete"
    assert a_closed.status == WorkflowExecutionStatus.COMPLETED
    # The same order again: not restarted.
    assert a_again.status_code == 202, a_again.text
    assert a_again.json()["tracking_number"] == number
    assert "already completed" in a_again.json()["ignored"]
    assert (after_a_again.run_id, after_a_again.status) == (a_closed.run_id, a_closed.status)
    # Another order on the number: a new lifecycle, its own messages.
    assert b.status_code == 202, b.text
    assert b.json() == _answer(number, "accepted")
    assert b_run.run_id != a_closed.run_id
    assert b_run.status == WorkflowExecutionStatus.RUNNING
    messages = [(r.trigger, r.idempotency_key) for r in records if r.kind == "message"]
    assert messages == [
        ("delivered", f"{number}/A-1:delivered:1:email"),
        ("review_request", f"{number}/A-1:review_request:1:email"),
        ("label_created", f"{number}/B-2:label_created:1:email"),
    ]
    assert view["order_id"] == "B-2"
    assert view["status"] == "label_created"
    assert [(e["status"], e["effect"]) for e in view["timeline"]] == [  # by occurred_at
        (
            "out_for_delivery",
            "ignored: before this order (the tracking number was used for an earlier one)",
        ),
        ("label_created", "milestone"),
    ]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def test_openapi_documents_the_answers(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    register = paths["/v1/shipments"]["post"]["responses"]
    returns = paths["/v1/shipments/{tracking_number}/return-requests"]["post"]["responses"]
    shopify = paths["/webhooks/shopify"]["post"]["responses"]

    def schema(answer: dict[str, Any]) -> Any:
        return answer["content"]["application/json"]["schema"]

    assert schema(register["202"])["anyOf"] == [
        {"$ref": "#/components/schemas/Registration"},
        {"$ref": "#/components/schemas/RegistrationAfterTracking"},
    ]
    assert schema(returns["202"]) == {"$ref": "#/components/schemas/ReturnRequestAnswer"}
    for answers in (register, returns):
        assert schema(answers["409"]) == {"$ref": "#/components/schemas/ErrorAnswer"}
        assert answers["409"]["description"].startswith("Another order is still being tracked")
        assert "no trackflow worker answered" in answers["503"]["description"]
    assert {s["$ref"].rsplit("/", 1)[1] for s in schema(shopify["200"])["anyOf"]} == {
        "ShopifyFulfillmentAnswer",
        "ShopifyReturnAnswer",
        "ShopifyIgnored",
    }


# --- numbers that do not fit their carrier (issue 18) ---------------------------------------


async def test_a_number_that_does_not_fit_its_carrier_is_accepted_with_warnings_shown_once(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """HELLOWORLD declared UPS, and a UPS number with a wrong check digit: 202 with typed
    warnings, the same warnings in GET, and one ops alert per shipment however often the
    registration comes."""
    valid = tracking_number()
    typo = valid[:-1] + str((int(valid[-1]) + 1) % 10)
    hello = "HELLOWORLD" + uuid.uuid4().hex[:6].upper()
    expected = {hello: ["not_carrier_format"], typo: ["check_digit"], valid: []}
    async with running_worker(client, task_queue, tmp_path):
        for number, codes in expected.items():
            body = shipment_body(number)
            first, again = [await api.post("/v1/shipments", json=body) for _ in "12"]
            assert [first.status_code, again.status_code] == [202, 202], (first.text, again.text)
            for answer in (first.json(), again.json()):
                assert [w["code"] for w in answer["warnings"]] == codes, number
                assert all(number in w["message"] for w in answer["warnings"])
            warned = first.json()["warnings"]
            view = await eventually(
                partial(_view, api, number),
                partial(_shows_warnings, warned),
                what=f"{number}'s warnings in GET",
            )
            assert bool(codes) == any(n["kind"] == "alert" for n in view["notes"]), view
            if codes:
                rows = await eventually(
                    partial(outbox, tmp_path, number),
                    lambda rows: any(r.kind == "alert" for r in rows),
                    what=f"{number}'s alert",
                )
                assert [r.trigger for r in rows if r.kind == "alert"] == ["invalid_tracking_number"]
                assert "UPS" in first.json()["warnings"][0]["message"]
        # Nothing else comes: the second registration raised no second alert.
        again_rows = await outbox(tmp_path, hello)
        assert [r.trigger for r in again_rows if r.kind == "alert"] == ["invalid_tracking_number"]


def _shows_warnings(warnings: list[dict[str, str]], view: dict[str, Any]) -> bool:
    return bool(view["warnings"] == warnings)


async def test_reject_invalid_numbers_makes_them_a_422_and_starts_nothing(
    temporal_address: str, client: Client, task_queue: str, tmp_path: Path
) -> None:
    settings = api_settings(temporal_address, task_queue, tmp_path, reject_invalid_numbers=True)
    hello = "HELLOWORLD" + uuid.uuid4().hex[:6].upper()
    valid = tracking_number()
    async with api_client(settings) as http:
        refused = await http.post("/v1/shipments", json=shipment_body(hello))
        accepted = await http.post("/v1/shipments", json=shipment_body(valid))
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert detail.startswith("tracking_number: ") and "not_carrier_format" in detail
    assert "TRACKFLOW_REJECT_INVALID_NUMBERS" in detail
    assert accepted.status_code == 202, accepted.text
    with pytest.raises(RPCError):
        await client.get_workflow_handle(workflow_id_for(hello)).describe()


@pytest.mark.parametrize(
    "url", ["https://...", "https://www.ups.com/track?tracknum=...", "https://tracking"]
)
async def test_a_placeholder_tracking_url_is_a_422_naming_the_field(
    api: httpx.AsyncClient, url: str
) -> None:
    response = await api.post(
        "/v1/shipments", json=shipment_body(tracking_number(), tracking_url=url)
    )
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"][-1] == "tracking_url"
    assert "placeholder" in error["msg"] or "domain" in error["msg"]
