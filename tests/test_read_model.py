"""The read model (issue 12, part 1): the workflow writes each shipment's row to the ledger
database at every material change, batched with the send activity where one runs, and
`GET /v1/shipments/{n}` reads it there without asking Temporal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from storage import open_ledger
from tests.api_support import api_client, api_settings, event_body, shipment_body, tracking_number
from tests.factories import ANY_TIME_POLICY, at, make_event, make_shipment
from tests.harness import eventually, running_worker
from trackflow import policy as tracking
from trackflow.effects import SendNotification
from trackflow.models import CarrierStatus, Channel, ExceptionKind, Trigger
from trackflow.projection import (
    SCAN_WRITE_INTERVAL,
    Change,
    as_of,
    change,
    project,
    write_due,
)
from trackflow.shipment_state import Phase, ShipmentProjection, ShipmentState

NOW = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
IN_TRANSIT: tuple[CarrierStatus, float, dict[str, Any]] = (CarrierStatus.IN_TRANSIT, 20, {})
DELIVERED: tuple[CarrierStatus, float, dict[str, Any]] = (CarrierStatus.DELIVERED, 50, {})


def _state_after(*events: tuple[CarrierStatus, float, dict[str, Any]]) -> ShipmentState:
    shipment = make_shipment(tracking_number="1ZREADMODEL0000001", order_value="300")
    state = tracking.on_start(ShipmentState(), at(0))
    for status, hours, extra in events:
        decision = tracking.on_event(
            state,
            make_event(status, at(hours), tracking_number=shipment.tracking_number, **extra),
            shipment,
            ANY_TIME_POLICY,
            at(hours),
        )
        state = decision.state
    return state


def _row(state: ShipmentState, version: int = 1) -> ShipmentProjection:
    shipment = make_shipment(tracking_number="1ZREADMODEL0000001", order_value="300")
    return project(state, shipment, ANY_TIME_POLICY, NOW, version)


def test_the_row_carries_what_pages_and_analytics_need_and_only_the_first_name() -> None:
    state = _state_after(
        (CarrierStatus.LABEL_CREATED, 0, {}),
        (CarrierStatus.IN_TRANSIT, 20, {}),
        (CarrierStatus.EXCEPTION, 30, {"exception": ExceptionKind.CARRIER_DELAY}),
    )
    row = _row(state)
    assert (row.first_name, row.registered_at, row.first_scan_at) == ("Ada", at(0), at(20))
    assert (row.document.status, row.open_problem, row.exception_episodes) == (
        Phase.EXCEPTION,
        True,
        1,
    )
    assert row.delivered_at is None and not row.lost
    assert "ada@example.com" not in row.model_dump_json()
    assert row.shipment_key == "1ZREADMODEL0000001/1001"

    delivered = _row(
        _state_after((CarrierStatus.IN_TRANSIT, 20, {}), (CarrierStatus.DELIVERED, 50, {}))
    )
    assert (delivered.delivered_at, delivered.open_problem) == (at(50), False)


def test_only_a_material_change_asks_for_a_write() -> None:
    state = _state_after(IN_TRANSIT)
    written = _row(state, version=3)
    assert change(None, written) is Change.MATERIAL
    later = project(state, make_shipment(tracking_number="1ZREADMODEL0000001", order_value="300"),
                    ANY_TIME_POLICY, NOW + timedelta(hours=5), 4)  # fmt: skip
    assert change(written, later) is Change.NONE  # a new time and version only
    assert write_due(written, later) is None
    moved = _row(_state_after(IN_TRANSIT, DELIVERED))
    assert change(written, moved) is Change.MATERIAL
    assert write_due(written, moved) == NOW


def test_a_scan_that_moves_no_milestone_is_written_at_most_once_a_minute() -> None:
    written = _row(_state_after(IN_TRANSIT))
    scanned = _row(_state_after(IN_TRANSIT, (CarrierStatus.IN_TRANSIT, 30, {"event_id": "e2"})))
    assert change(written, scanned) is Change.SCAN
    assert write_due(written, scanned) == NOW + SCAN_WRITE_INTERVAL
    much_later = scanned.model_copy(update={"updated_at": NOW + timedelta(hours=2)})
    assert write_due(written, much_later) == NOW + timedelta(hours=2)


def test_a_row_that_foresaw_the_end_of_tracking_reads_as_the_closing_row_once_it_is_due() -> None:
    """The workflow skips the closing write when `as_of` gives readers that very row."""
    reviewed = _state_after(IN_TRANSIT, DELIVERED).model_copy(update={"review": "sent"})
    row = _row(reviewed, version=4)
    ends_at = row.document.next_action.due_at
    assert row.document.next_action.kind == "complete" and ends_at == at(50) + timedelta(days=3)
    assert as_of(row, ends_at - timedelta(seconds=1)) == row

    closed = reviewed.model_copy(update={"closed_reason": "lifecycle complete"})
    closing_row = _row(closed, version=5)
    read = as_of(row, ends_at + timedelta(days=1))
    assert read.material() == closing_row.material()
    assert read.document.summary == "delivered — tracking ended (lifecycle complete)"
    assert (read.updated_at, read.version) == (ends_at, 4)
    assert change(read, closing_row) is Change.NONE
    # Anything else that changed still asks for the write.
    noted = closing_row.model_copy(update={"lost": True})
    assert change(read, noted) is Change.MATERIAL


def test_with_sent_adds_each_message_once_as_the_workflow_records_it() -> None:
    row = _row(_state_after((CarrierStatus.IN_TRANSIT, 20, {})))
    send = SendNotification(
        idempotency_key="1ZREADMODEL0000001/1001:in_transit:1:email",
        trigger=Trigger.IN_TRANSIT,
        channel=Channel.EMAIL,
        to="ada@example.com",
    )
    once = row.with_sent([(send, NOW, "outbox")])
    twice = once.with_sent([(send, NOW, "outbox")])
    assert [(n.trigger, n.channel, n.outcome) for n in twice.document.notifications] == [
        (Trigger.IN_TRANSIT, Channel.EMAIL, "outbox")
    ]
    assert row.document.notifications == []  # unchanged: a copy


async def test_get_reads_the_read_model_and_needs_no_worker(
    temporal_address: str, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """With the worker gone, asking the workflow would wait 20 s and answer 503; the read
    model answers at once. A happy path writes its row with the sends it batches with, and
    with one local activity for each change that sends nothing."""
    settings = api_settings(temporal_address, task_queue, tmp_path)
    number = tracking_number()
    async with api_client(settings) as http:
        async with running_worker(client, task_queue, tmp_path):
            created = await http.post("/v1/shipments", json=shipment_body(number))
            assert created.status_code == 202, created.text
            for hours, status in enumerate(("in_transit", "out_for_delivery", "delivered")):
                occurred = (at(10 * hours)).isoformat()
                body = event_body(number, status, occurred_at=occurred)
                assert (await http.post("/v1/events", json=body)).status_code == 202
            await eventually(
                lambda: _get(http, number),
                lambda doc: doc["status"] == "delivered" and len(doc["notifications"]) == 6,
                what="the delivered shipment in the read model",
            )
            handle = client.get_workflow_handle(f"shipment-{number}")
        # No worker from here on.
        loop_start = datetime.now(UTC)
        document = await _get(http, number)
        answered_in = datetime.now(UTC) - loop_start

    assert document["status"] == "delivered"
    assert answered_in < timedelta(seconds=5)
    history = await handle.fetch_history()
    local = [
        e.marker_recorded_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]
    # Three sends (the row rides with them) and one write at registration, which sent nothing.
    assert len(local) == 4
    ledger = open_ledger(str(tmp_path / "ledger.sqlite3"), read_only=True)
    try:
        row = await ledger.projection(number)
    finally:
        await ledger.close()
    assert row is not None and row.document.model_dump(mode="json") == document
    assert row.version == 4


async def _get(http: httpx.AsyncClient, number: str) -> dict[str, Any]:
    response = await http.get(f"/v1/shipments/{number}")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document
