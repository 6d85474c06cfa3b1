"""History budget (issue 9, lean histories; issue 13, billable actions): a recorded happy path
stays within 45 history events, 24 KB of history (serialized protobuf, what Temporal stores and
limits) and 16 billable actions as Temporal Cloud counts them (`bench.actions.billable`); one
with a delay, within 20.

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

from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from google.protobuf import json_format
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History, HistoryEvent
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from bench.actions import billable
from starters.shipments import register_shipment, signal_event
from tests.factories import ANY_TIME_POLICY, at, exception_event, make_event, make_shipment
from tests.harness import eventually, outbox, running_worker, sent
from trackflow.carriers.samples import random_tracking_number
from trackflow.models import CarrierStatus, ExceptionKind
from trackflow.policy import ShipmentView

MAX_EVENTS = 45
MAX_BYTES = 24 * 1024
MAX_ACTIONS = 16  # billable, as Temporal Cloud counts them (bench.actions.billable)
MAX_ACTIONS_WITH_EXCEPTION = 20
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


def _sequence(events: Sequence[HistoryEvent]) -> str:
    """The billable events in order, with the search attributes each upsert sets."""
    lines = []
    for event in events:
        name = _name(event)
        if name.startswith(("WORKFLOW_TASK", "TIMER_FIRED", "TIMER_CANCELED")):
            continue
        if event.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = event.upsert_workflow_search_attributes_event_attributes
            name += " " + ",".join(sorted(fields.search_attributes.indexed_fields))
        elif event.HasField("timer_started_event_attributes"):
            name += f" {event.timer_started_event_attributes.start_to_fire_timeout.ToSeconds()}s"
        elif event.HasField("marker_recorded_event_attributes"):
            name += " " + event.marker_recorded_event_attributes.marker_name
        lines.append(f"  {event.event_id:>3} {name}")
    return "\n".join(lines)


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
        tracking_number=random_tracking_number("ups"),
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
    counts: Counter[str] = Counter()
    actions = billable(recorded, counts=counts)
    report += f"\nbillable actions: {actions}\n{_sequence(recorded)}"
    print(report)
    assert len(recorded) <= MAX_EVENTS, report
    assert size <= MAX_BYTES, report
    assert actions <= MAX_ACTIONS, report
    # The start carried the search attributes the first task arrived at: no upsert before the
    # first scan (TemporalChangeVersion, written by workflow.patched, is not billed).
    first_signal = next(e.event_id for e in recorded if e.event_type == SIGNALED)
    assert not [
        e
        for e in recorded
        if e.event_id < first_signal
        and e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
        and "TrackflowStatus"
        in e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
    ], report


def _signal_processed(history: WorkflowHistory) -> bool:
    """The last signal's workflow task completed (fetching history is no query: no task)."""
    kinds = [(e.event_id, e.event_type) for e in history.events]
    last_signal = max((i for i, kind in kinds if kind == SIGNALED), default=0)
    return any(i > last_signal and kind == TASK_COMPLETED for i, kind in kinds)


SIGNALED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
TASK_COMPLETED = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED


async def test_a_path_with_an_exception_stays_within_20_billable_actions(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """The happy path with a weather delay between in transit and out for delivery: the
    customer is told (email and SMS), the helpdesk tag and the Klaviyo delayed list follow in
    the background, the out-for-delivery scan ends the delay, and no review request is asked
    after trouble. Each scan is processed before the next arrives, as hours apart."""
    shipment = make_shipment(tracking_number=random_tracking_number("ups"), order_value="212.50")
    number = shipment.tracking_number
    label = make_event(CarrierStatus.LABEL_CREATED, at(0), tracking_number=number)
    steps = [
        make_event(CarrierStatus.IN_TRANSIT, at(1), tracking_number=number),
        exception_event(ExceptionKind.WEATHER_DELAY, at(2), tracking_number=number),
        make_event(CarrierStatus.OUT_FOR_DELIVERY, at(4), tracking_number=number),
        make_event(CarrierStatus.DELIVERED, at(5), tracking_number=number),
    ]
    async with running_worker(client, task_queue, tmp_path):
        with temporal_env.with_time_skipping_disabled():
            registered = await register_shipment(
                client, shipment, POLICY, task_queue=task_queue, events=[label]
            )
        handle: WorkflowHandle[object, ShipmentView] = registered.handle
        await _messages(tmp_path, number, 2, "label_created sent by email and SMS")
        for step in steps:
            await signal_event(client, step)
            await eventually(
                lambda: handle.fetch_history(), _signal_processed, what=f"{step.status} processed"
            )
        await temporal_env.fast_forward(handle, POLICY.standard.post_delivery_hold)
        await temporal_env.fast_forward(handle, POLICY.return_window)
        result = await handle.result()
        history = await handle.fetch_history()

    assert result.closed_reason == "lifecycle complete"
    # No review request after a delay (policy: a customer who had trouble is not asked).
    triggers = ["label_created", "in_transit", "exception", "out_for_delivery", "delivered"]
    assert sent(await outbox(tmp_path, number)) == [
        (trigger, channel) for trigger in triggers for channel in ("email", "sms")
    ]
    recorded = [e for e in history.events if e.event_type not in TIME_SKIPPING_BOOKKEEPING]
    counts: Counter[str] = Counter()
    actions = billable(recorded, counts=counts)
    report = f"exception path: billable actions {actions}\n{_sequence(recorded)}"
    print(report)
    assert actions <= MAX_ACTIONS_WITH_EXCEPTION, report
