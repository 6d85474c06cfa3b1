"""History budget (issue 9, lean histories): a recorded happy path stays within 45 history
events and 24 KB of history (serialized protobuf, what Temporal stores and limits).

The path: registration with the label_created event riding in the start, then in_transit,
out_for_delivery and delivered as separate signals (each processed before the next is sent, as
carrier scans hours apart would be), the review request after the post-delivery hold and the end
of tracking after the return window; email and SMS on every trigger. The budget holds for the
whole closed run, not only up to the review request.

The test environment's time skipping writes events of its own (WORKFLOW_EXECUTION_OPTIONS_UPDATED
when a fast-forward begins, WORKFLOW_EXECUTION_TIME_SKIPPING_TRANSITIONED as it runs): a
production history has none, so they are reported but not counted.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from google.protobuf import json_format
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History, HistoryEvent
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from starters.shipments import register_shipment, signal_event
from tests.factories import ANY_TIME_POLICY, at, make_event, make_shipment
from tests.harness import eventually, outbox, running_worker, sent
from trackflow.models import CarrierStatus
from trackflow.policy import ShipmentView

MAX_EVENTS = 45
MAX_BYTES = 24 * 1024
POLICY = ANY_TIME_POLICY  # quiet hours never hold: the path does not depend on the clock
LATER_MILESTONES = [
    CarrierStatus.IN_TRANSIT,
    CarrierStatus.OUT_FOR_DELIVERY,
    CarrierStatus.DELIVERED,
]
TRIGGERS = ["label_created", "in_transit", "out_for_delivery", "delivered", "review_request"]
EVERY_TRIGGER = [(trigger, channel) for trigger in TRIGGERS for channel in ("email", "sms")]
TIME_SKIPPING_BOOKKEEPING = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIME_SKIPPING_TRANSITIONED,
}


def _name(event: HistoryEvent) -> str:
    return EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")


def _composition(events: Sequence[HistoryEvent]) -> str:
    """Where the events and bytes go: count and bytes per event type, largest first."""
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for event in events:
        counts[_name(event)] += 1
        sizes[_name(event)] += event.ByteSize()
    return "\n".join(
        f"  {name:<45} {counts[name]:>3} events {sizes[name]:>6} bytes"
        for name, _ in sizes.most_common()
    )


def _markers(events: Sequence[HistoryEvent]) -> int:
    return sum(e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED for e in events)


async def _messages(data_dir: Path, tracking_number: str, count: int, what: str) -> None:
    """Wait on the outbox, not with queries: a query that arrives while a workflow task runs a
    local activity makes the worker answer it in an extra, empty workflow task (3 events)."""
    await eventually(
        lambda: outbox(data_dir, tracking_number),
        lambda records: len(records) >= count,
        what=what,
    )


async def test_happy_path_history_stays_within_45_events_and_24_kb(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    shipment = make_shipment(
        tracking_number="1Z" + uuid.uuid4().hex[:16].upper(),
        order_value="212.50",  # above the SMS threshold; the customer consented to texts
    )
    assert shipment.order_value > POLICY.sms_value_threshold and shipment.customer.sms_consent
    number = shipment.tracking_number
    label = make_event(CarrierStatus.LABEL_CREATED, at(0), tracking_number=number)
    async with running_worker(client, task_queue, tmp_path):
        with temporal_env.with_time_skipping_disabled():
            registered = await register_shipment(
                client, shipment, POLICY, task_queue=task_queue, events=[label]
            )
        assert registered.outcome == "accepted"
        handle: WorkflowHandle[object, ShipmentView] = registered.handle
        await _messages(tmp_path, number, 2, "label_created sent by email and SMS")
        for hour, status in enumerate(LATER_MILESTONES, start=1):
            await signal_event(client, make_event(status, at(hour), tracking_number=number))
            await _messages(tmp_path, number, 2 * (hour + 1), f"{status.value} sent")

        hold = POLICY.standard.post_delivery_hold
        await temporal_env.fast_forward(handle, hold + timedelta(minutes=1))
        await _messages(tmp_path, number, 10, "review request sent")
        at_review = await eventually(
            lambda: handle.fetch_history(),
            lambda history: _markers(history.events) >= 5,
            what="the review request's send recorded in the history",
        )

        await temporal_env.fast_forward(handle, POLICY.return_window)
        result = await handle.result()
        history = await handle.fetch_history()

    assert result.closed_reason == "lifecycle complete"
    assert sent(await outbox(tmp_path, number)) == EVERY_TRIGGER

    recorded = [e for e in history.events if e.event_type not in TIME_SKIPPING_BOOKKEEPING]
    review = [e for e in at_review.events if e.event_type not in TIME_SKIPPING_BOOKKEEPING]
    proto = History(events=recorded)
    size = proto.ByteSize()
    report = (
        f"happy path: {len(recorded)} history events ({len(review)} up to the review request; "
        f"{len(history.events) - len(recorded)} more written by the test's time skipping), "
        f"{size} bytes of protobuf, {len(json_format.MessageToJson(proto))} bytes of JSON "
        f"as `temporal workflow show --output json` prints it, "
        f"{len(json_format.MessageToJson(proto, indent=None))} compact\n"
        f"{_composition(recorded)}"
    )
    print(report)
    assert len(recorded) <= MAX_EVENTS, report
    assert size <= MAX_BYTES, report
