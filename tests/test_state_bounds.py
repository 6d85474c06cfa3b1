"""Bounded state (issue 9, lean histories): whatever arrives, a shipment's state (what every
continue-as-new carries) and its view (the query answer, GET) stay under a fixed size.

The bounds are derived from the caps: every capped list full of maximal items, each item at
most its text fields' maximum lengths (the `CarrierEvent` model's `max_length`s) in characters
times the bytes one character can take once serialized (1 for ASCII; 6 for a control character,
which JSON writes as a \\u escape), plus a fixed allowance per item for field names, timestamps
and enums. The pure test pushes 10,000 maximum-size events through `policy.on_event` in both
alphabets; the workflow test pushes 10,000 ASCII ones through one shipment on the dev server.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from starters.shipments import register_shipment, shipment_view, signal_event
from tests.dev_server import all_runs
from tests.factories import ANY_TIME_POLICY, make_shipment
from tests.harness import eventually, running_worker
from trackflow.carriers.samples import random_tracking_number
from trackflow.models import CarrierEvent, CarrierStatus, ExceptionKind, Shipment
from trackflow.policy import (
    MAX_REMEMBERED_EVENT_KEYS,
    MAX_REMEMBERED_UPDATE_IDS,
    on_event,
    on_start,
    view,
)
from trackflow.shipment_state import (
    MAX_EXCEPTION_MESSAGES,
    MAX_NOTES,
    MAX_NOTIFICATIONS,
    MAX_RETURN_REQUESTS,
    MAX_TIMELINE,
    MAX_UNRECOGNISED_CODES,
    ShipmentState,
    ShipmentView,
)

EVENTS = 10_000
# Signals sent at once, each batch processed before the next: while a workflow task runs, the
# server buffers new signals and fails the task (FORCE_CLOSE_COMMAND) past 100 of them.
BATCH = 50
BATCH_DEADLINE_S = 90.0
# The one workflow task failure a run may show: signals that arrive while the task that
# continues as new is being completed make the server refuse it (Temporal's UnhandledCommand);
# the next task takes them in and continues as new then. Nothing else may fail.
RACED_CONTINUE_AS_NEW = "UNHANDLED_COMMAND: UnhandledCommand"
MILESTONES = [
    CarrierStatus.LABEL_CREATED,
    CarrierStatus.IN_TRANSIT,
    CarrierStatus.OUT_FOR_DELIVERY,
    CarrierStatus.DELIVERED,
]
DELAYS = [ExceptionKind.WEATHER_DELAY, ExceptionKind.CARRIER_DELAY, ExceptionKind.FAILED_ATTEMPT]


def _max_length(field: str) -> int:
    for constraint in CarrierEvent.model_fields[field].metadata:
        if (length := getattr(constraint, "max_length", None)) is not None:
            return int(length)
    raise AssertionError(f"CarrierEvent.{field} has no max_length")


DESCRIPTION, LOCATION, EVENT_ID, SOURCE, RAW_STATUS, RAW_DETAIL = map(
    _max_length, ["description", "location", "event_id", "source", "raw_status", "raw_detail"]
)
REMEMBERED_ID = 16  # what the state keeps of an event key, update id or request id: a digest
RAW_CODE = SOURCE + 1 + RAW_STATUS + 1 + RAW_DETAIL  # an unrecognised code, source:status/detail
EFFECT = 200  # the policy's words for what it did with an event
POLICY_TEXT = 500  # a note's key and detail, an idempotency key: composed from ids and keys
ITEM = 400  # per item: field names, timestamps, enums, punctuation
FIXED = 8_000  # the scalars, the next action, the shipment's ids


def view_bound(per_char: int) -> int:
    """Bytes a serialized ShipmentView can take, `per_char` bytes per character of text."""
    entry = ITEM + per_char * (DESCRIPTION + LOCATION + SOURCE + RAW_CODE + EFFECT)
    timeline = (MAX_TIMELINE + len(MILESTONES)) * entry  # the window, and each milestone's first
    notes = MAX_NOTES * (ITEM + per_char * POLICY_TEXT)
    codes = MAX_UNRECOGNISED_CODES * (3 + per_char * RAW_CODE)
    return FIXED + timeline + notes + MAX_NOTIFICATIONS * ITEM + codes


def state_bound(per_char: int) -> int:
    """Bytes a serialized ShipmentState can take: the view's lists, what it remembers (event
    keys, update and return request ids) and what the caps count (messages sent, exceptions)."""
    remembered = (MAX_REMEMBERED_EVENT_KEYS + MAX_REMEMBERED_UPDATE_IDS + MAX_RETURN_REQUESTS) * (
        3 + REMEMBERED_ID
    )  # hex digests: never escaped
    counted = (MAX_NOTIFICATIONS + MAX_EXCEPTION_MESSAGES) * (ITEM + per_char * POLICY_TEXT)
    return view_bound(per_char) + remembered + counted


def _text(tag: str, length: int, char: str) -> str:
    return (tag + char * length)[:length]


def _status(i: int) -> CarrierStatus:
    """A label, then scans; the later milestones far apart, an exception now and then."""
    if i == 0:
        return CarrierStatus.LABEL_CREATED
    if i == EVENTS * 8 // 10:
        return CarrierStatus.OUT_FOR_DELIVERY
    if i == EVENTS - 10:
        return CarrierStatus.DELIVERED
    if i % 97 == 50:
        return CarrierStatus.EXCEPTION
    return CarrierStatus.IN_TRANSIT


def maximal_events(
    tracking_number: str, first_at: datetime, *, char: str = "x"
) -> Iterator[CarrierEvent]:
    """EVENTS carrier events, a minute apart (none dedupes), every text field at its maximum
    length; every 13th an unrecognised code."""
    for i in range(EVENTS):
        status, tag = _status(i), f"{i:05d}"
        yield CarrierEvent(
            tracking_number=tracking_number,
            status=status,
            exception=DELAYS[i % 3] if status == CarrierStatus.EXCEPTION else None,
            occurred_at=first_at + timedelta(minutes=i),
            description=_text(tag, DESCRIPTION, char),
            location=_text(tag, LOCATION, char),
            event_id=_text(tag, EVENT_ID, char),
            source=_text("src", SOURCE, "s"),
            raw_status=_text(tag, RAW_STATUS, char),
            raw_detail=_text(tag, RAW_DETAIL, char),
            recognised=i % 13 != 7,
        )


def _size(model: ShipmentState | ShipmentView) -> int:
    return len(model.model_dump_json().encode())


def _assert_firsts_kept(timeline_view: ShipmentView, firsts: dict[CarrierStatus, datetime]) -> None:
    kept = {(entry.status, entry.occurred_at) for entry in timeline_view.timeline}
    for status, occurred_at in firsts.items():
        assert (status, occurred_at) in kept, f"the first {status.value} event was dropped"


def _firsts(events: list[CarrierEvent]) -> dict[CarrierStatus, datetime]:
    firsts: dict[CarrierStatus, datetime] = {}
    for event in sorted(events, key=lambda e: e.occurred_at):
        if event.status in MILESTONES:
            firsts.setdefault(event.status, event.occurred_at)
    assert list(firsts) == MILESTONES
    return firsts


@pytest.mark.parametrize(
    ("char", "per_char"), [("x", 1), ("\x01", 6)], ids=["ascii", "json-escaped"]
)
def test_ten_thousand_maximal_events_keep_the_state_under_a_fixed_size(
    char: str, per_char: int
) -> None:
    shipment = make_shipment(order_value="212.50")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    events = list(maximal_events(shipment.tracking_number, start, char=char))
    state = on_start(ShipmentState(), start)
    largest_state = largest_view = 0
    for i, event in enumerate(events):
        now = event.occurred_at + timedelta(seconds=30)
        state = on_event(state, event, shipment, ANY_TIME_POLICY, now).state
        if i % 100 == 99:
            largest_state = max(largest_state, _size(state))
            largest_view = max(largest_view, _size(view(state, shipment, ANY_TIME_POLICY)))
    final = view(state, shipment, ANY_TIME_POLICY)

    print(
        f"{char!r}: state {largest_state} bytes at most (bound {state_bound(per_char)}), "
        f"view {largest_view} (bound {view_bound(per_char)})"
    )
    assert largest_state <= state_bound(per_char)
    assert largest_view <= view_bound(per_char)
    assert len(final.timeline) + final.timeline_omitted == EVENTS
    assert len(final.timeline) <= MAX_TIMELINE + len(MILESTONES)
    assert final.notes_omitted > 0 and len(final.notes) == MAX_NOTES
    assert len(final.unrecognised_codes) == MAX_UNRECOGNISED_CODES
    assert len(state.seen_event_keys) == MAX_REMEMBERED_EVENT_KEYS
    _assert_firsts_kept(final, _firsts(events))
    assert final.status == "delivered"


def _bound_for(per_char: int) -> str:
    return f"view bound {view_bound(per_char)} bytes, state bound {state_bound(per_char)}"


def test_derived_ascii_view_bound_is_under_256_kb() -> None:
    assert view_bound(1) < 256 * 1024, _bound_for(1)


def test_even_all_escaped_text_keeps_the_state_well_under_temporals_2_mb_payload_limit() -> None:
    """Control characters cost 6 bytes each in JSON: the worst case the caps allow still
    leaves room (continue-as-new carries the state; the payload limit is 2 MB)."""
    assert state_bound(6) < 1.6 * 1024 * 1024, _bound_for(6)


def _processed(count: int) -> Callable[[ShipmentView], bool]:
    """The view accounts for `count` events: on the timeline, or counted as omitted."""
    return lambda view: len(view.timeline) + view.timeline_omitted == count


def _continue_as_new_inputs(history: WorkflowHistory) -> list[int]:
    return [
        e.workflow_execution_continued_as_new_event_attributes.input.ByteSize()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    ]


def _failed_tasks(history: WorkflowHistory) -> list[str]:
    """Each failed workflow task: its cause, and the failure's message if it has one."""
    return [
        WorkflowTaskFailedCause.Name(failed.cause).removeprefix("WORKFLOW_TASK_FAILED_CAUSE_")
        + (f": {failed.failure.message}" if failed.failure.message else "")
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        for failed in [e.workflow_task_failed_event_attributes]
    ]


async def test_ten_thousand_maximal_events_through_one_shipment(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    shipment: Shipment = make_shipment(
        tracking_number=random_tracking_number("ups"), order_value="212.50"
    )
    number = shipment.tracking_number
    policy = ANY_TIME_POLICY.model_copy(update={"continue_as_new_after_events": 2_000})
    # In the past (a minute apart, the last about a day ago): every one plausible.
    first_at = datetime.now(UTC) - timedelta(minutes=EVENTS + 24 * 60)
    events = list(maximal_events(number, first_at))
    sizes: list[int] = []

    async def view_now() -> ShipmentView:
        answer = await shipment_view(client, number)
        sizes.append(_size(answer))
        return answer

    async with running_worker(client, task_queue, tmp_path):
        with temporal_env.with_time_skipping_disabled():
            registered = await register_shipment(client, shipment, policy, task_queue=task_queue)
        first_run = registered.handle.result_run_id
        assert first_run is not None
        for end in range(BATCH, EVENTS + 1, BATCH):
            await asyncio.gather(*(signal_event(client, e) for e in events[end - BATCH : end]))
            await eventually(
                view_now,
                _processed(end),
                # A batch that lands on a continue-as-new raced by its signals waits for the
                # server to retry the failed task (with backoff): the bound, not the speed, is
                # what this test is about (bench/ measures speed).
                deadline_s=BATCH_DEADLINE_S,
                what=f"the first {end} events processed",
            )
        runs = await all_runs(client, shipment.workflow_id, first_run)
        answered = await view_now()  # a query still answers, after every continue-as-new

    continued = [size for run in runs for size in _continue_as_new_inputs(run)]
    failed = Counter(failure for run in runs for failure in _failed_tasks(run))
    print(
        f"{len(runs)} runs, {sum(len(run.events) for run in runs)} history events; "
        f"views up to {max(sizes)} bytes ({len(sizes)} query answers); "
        f"continue-as-new inputs {continued}; {_bound_for(1)}; failed tasks {dict(failed)}"
    )
    assert len(runs) > 1, "the workflow never continued as new"
    assert set(failed) <= {RACED_CONTINUE_AS_NEW}, failed
    assert max(sizes) <= view_bound(1)
    assert max(continued) <= state_bound(1) + 16_384  # the state, the shipment, the policy ref
    assert answered.status == "delivered"
    _assert_firsts_kept(answered, _firsts(events))
