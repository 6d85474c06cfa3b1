"""One wild `occurred_at` must not freeze a shipment's clock (issue 7, hardening).

An event dated 9999-12-31 (or before 2000) is noted for ops and otherwise ignored: it never
becomes the newest scan, the last milestone or an exception's opening time, sends nothing,
and does not stop the stale and lost timers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import ANY_TIME_POLICY, T0, at, exception_event, make_event, make_shipment
from tests.test_policy import Run as PolicyRun
from tests.test_policy_timing_properties import POLICIES, Story, customers, stories
from trackflow.durations import human_duration
from trackflow.event_time import EARLIEST_EVENT, MAX_FUTURE, implausible_time
from trackflow.models import CarrierEvent, CarrierStatus, ExceptionKind, Shipment, Trigger
from trackflow.policy import (
    Decision,
    Phase,
    SendNotification,
    ShipmentState,
    next_action,
    on_event,
    on_return_request,
    on_start,
    on_tick,
    record_sent,
)
from trackflow.shipment_state import remembered
from trackflow.tracking_policy import TrackingPolicy

S = CarrierStatus
X = ExceptionKind
WILD = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
IMPLAUSIBLE = "implausible_timestamp"


class Run(PolicyRun):
    """Like the workflow: every event is preceded by a wake-up at its arrival time."""

    def feed(
        self, *events: CarrierEvent, gap: timedelta = timedelta(minutes=1)
    ) -> list[SendNotification]:
        new: list[SendNotification] = []
        for event in events:
            self.now += gap
            decision = on_tick(self.state, self.shipment, self.policy, self.now)
            new += self._apply(decision)
            new += self._apply(on_event(self.state, event, self.shipment, self.policy, self.now))
        return new


# --------------------------------------------------------------------------------------
# The shared rule (also called by the HTTP edge)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("occurred_at", "reason"),
    [
        (WILD, "occurred_at is more than 1 day in the future"),
        (T0 + MAX_FUTURE + timedelta(seconds=1), "occurred_at is more than 1 day in the future"),
        (T0 + MAX_FUTURE, None),
        (T0 + timedelta(hours=5), None),
        (T0 - timedelta(days=400), None),
        (EARLIEST_EVENT, None),
        (EARLIEST_EVENT - timedelta(microseconds=1), "occurred_at is before 2000-01-01"),
        (EPOCH, "occurred_at is before 2000-01-01"),
        (datetime(1, 1, 1, tzinfo=UTC), "occurred_at is before 2000-01-01"),
    ],
)
def test_implausible_time(occurred_at: datetime, reason: str | None) -> None:
    assert implausible_time(occurred_at, T0) == reason


def test_implausible_time_takes_the_allowed_skew_and_any_offset() -> None:
    two_hours = timedelta(hours=2)
    assert implausible_time(T0 + timedelta(hours=3), T0, two_hours) == (
        "occurred_at is more than 2h in the future"
    )
    assert implausible_time(T0 + two_hours, T0, two_hours) is None
    # the same instant written in another offset; and the far edge of the calendar
    local = (T0 + timedelta(hours=3)).astimezone(timezone(timedelta(hours=-8)))
    assert implausible_time(local, T0, two_hours) is not None
    edge = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))
    assert implausible_time(edge, T0) == "occurred_at is more than 1 day in the future"


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(days=1), "1 day"),
        (timedelta(days=3), "3 days"),
        (timedelta(hours=12), "12h"),
        (timedelta(hours=36), "36h"),
        (timedelta(minutes=90), "90 min"),
        (timedelta(seconds=4), "4s"),
    ],
)
def test_human_duration(duration: timedelta, text: str) -> None:
    assert human_duration(duration) == text


@pytest.mark.parametrize(
    ("policy_span", "scale", "text"),
    [
        (timedelta(days=10), 10000, "10 days (86s at 10000\u00d7 demo speed)"),
        (timedelta(hours=72), 86400, "3 days (3s at 86400\u00d7 demo speed)"),
        (timedelta(hours=12), 86400, "12h (0.5s at 86400\u00d7 demo speed)"),
        (timedelta(days=10), 7, "10 days (34.3h at 7\u00d7 demo speed)"),
        (timedelta(hours=48), 2.5, "2 days (19.2h at 2.5\u00d7 demo speed)"),
    ],
)
def test_human_duration_of_a_time_scaled_policy_says_both_spans(
    policy_span: timedelta, scale: float, text: str
) -> None:
    """The policy holds `policy_span / scale` (TrackingPolicy.scaled): said in policy terms."""
    assert human_duration(policy_span / scale, scale) == text


@pytest.mark.parametrize(
    ("duration", "text"),
    [(timedelta(seconds=5000), "83 min"), (timedelta(hours=30, minutes=6), "30.1h")],
)
def test_human_duration_rounds_what_is_not_a_whole_unit(duration: timedelta, text: str) -> None:
    assert human_duration(duration) == text


# --------------------------------------------------------------------------------------
# The policy ignores a wild event for state, and notes it
# --------------------------------------------------------------------------------------

POLICY = ANY_TIME_POLICY


def _comparable(state: ShipmentState) -> ShipmentState:
    """The state without what a wild event may leave: its note."""
    return state.model_copy(
        update={"notes": [n for n in state.notes if n.kind != IMPLAUSIBLE]},
    )


def _lifecycle_after(wild: CarrierEvent | None) -> Run:
    """Label, first scan, [the wild event], an exception, a newer scan, out for delivery,
    delivered: what a real shipment does after one bad timestamp."""
    run = Run(make_shipment(order_value="200"), start=at(0))
    run.feed(make_event(S.LABEL_CREATED, at(0), event_id="label"))
    run.feed(make_event(S.IN_TRANSIT, at(1), event_id="scan-1"))
    if wild is not None:
        assert run.feed(wild, gap=timedelta(0)) == []  # no time passes: same clock as baseline
    run.feed(exception_event(X.WEATHER_DELAY, at(2), event_id="x-1"))
    run.feed(make_event(S.IN_TRANSIT, at(3), event_id="scan-2"))
    run.feed(make_event(S.OUT_FOR_DELIVERY, at(4), event_id="out"))
    run.feed(make_event(S.DELIVERED, at(5), event_id="delivered"))
    return run


@pytest.mark.parametrize(
    "wild",
    [
        make_event(S.IN_TRANSIT, WILD, event_id="wild"),
        make_event(S.DELIVERED, WILD, event_id="wild"),
        exception_event(X.CARRIER_DELAY, WILD, event_id="wild"),
        make_event(S.OUT_FOR_DELIVERY, WILD),  # no id: deduplicated by content
        make_event(S.IN_TRANSIT, EPOCH, event_id="wild"),
        exception_event(X.LOST, datetime(1999, 12, 31, tzinfo=UTC), event_id="wild"),
        make_event(S.IN_TRANSIT, WILD, event_id="wild", polled=True),
    ],
    ids=["9999-scan", "9999-delivered", "9999-exception", "9999-no-id", "epoch", "1999", "polled"],
)
def test_real_scans_after_a_wild_event_behave_as_if_it_never_came(wild: CarrierEvent) -> None:
    baseline, run = _lifecycle_after(None), _lifecycle_after(wild)
    assert set(run.triggers()) == {
        Trigger.LABEL_CREATED,
        Trigger.IN_TRANSIT,
        Trigger.EXCEPTION,
        Trigger.OUT_FOR_DELIVERY,
        Trigger.DELIVERED,
    }
    assert run.sends == baseline.sends
    assert run.tags == baseline.tags
    assert _comparable(run.state) == baseline.state
    assert run.state.latest_occurred_at == at(5)
    assert run.state.last_milestone_at == at(5)
    [note] = [n for n in run.state.notes if n.kind == IMPLAUSIBLE]
    assert note.key == wild.dedupe_key
    assert wild.status.value in note.detail
    assert "occurred_at is" in note.detail


def test_a_wild_event_changes_nothing_but_a_note() -> None:
    run = Run(start=at(0))
    run.feed(make_event(S.LABEL_CREATED, at(0)), make_event(S.IN_TRANSIT, at(1)))
    before = run.state
    decision = on_event(
        before, make_event(S.DELIVERED, WILD, event_id="w"), run.shipment, POLICY, at(2)
    )
    assert decision == Decision(state=decision.state)  # no sends, alerts, tags, polls
    assert _comparable(decision.state) == before
    [note] = decision.state.notes
    assert (note.kind, note.key, note.at) == (IMPLAUSIBLE, "api:w", at(2))
    assert note.detail == (
        "delivered at 9999-12-31T23:59:59+00:00 ignored: "
        "occurred_at is more than 1 day in the future"
    )


def test_a_wild_delivered_does_not_end_tracking() -> None:
    run = Run(start=at(0))
    run.feed(make_event(S.LABEL_CREATED, at(0)), make_event(S.IN_TRANSIT, at(1)))
    assert run.feed(make_event(S.DELIVERED, WILD, event_id="w")) == []
    assert run.state.phase == Phase.IN_TRANSIT
    assert run.state.delivered_seen_at is None
    assert run.state.rank == 1
    assert next_action(run.state, run.shipment, POLICY).kind == "stale_check_in"


def test_a_wild_exception_is_not_announced_and_a_real_one_is() -> None:
    run = Run(start=at(0))
    run.feed(make_event(S.LABEL_CREATED, at(0)), make_event(S.IN_TRANSIT, at(1)))
    assert run.feed(exception_event(X.DAMAGED, WILD, event_id="w")) == []
    assert run.state.open_exception is None
    assert run.state.exception_opened_at is None
    sends = run.feed(exception_event(X.WEATHER_DELAY, at(2), event_id="x"))
    assert run.triggers(sends) == [Trigger.EXCEPTION]
    assert run.state.exception_opened_at == at(2)
    # ... and a newer scan still closes it
    run.feed(make_event(S.IN_TRANSIT, at(3), event_id="scan"))
    assert run.state.open_exception is None


def test_stale_and_lost_timers_still_fire_after_a_wild_event() -> None:
    run = Run(start=at(0))
    run.feed(make_event(S.LABEL_CREATED, at(0)), make_event(S.IN_TRANSIT, at(1)))
    scanned = run.state.last_scan_at
    assert scanned is not None
    run.feed(make_event(S.IN_TRANSIT, WILD, event_id="w"))
    assert run.state.last_scan_at == scanned
    stale_at = scanned + POLICY.standard.stale_after
    assert run.triggers(run.tick(stale_at)) == [Trigger.STALE]
    lost_at = scanned + POLICY.standard.lost_after
    assert run.triggers(run.tick(lost_at)) == [Trigger.LOST]
    assert run.state.phase == Phase.LOST


def test_the_allowed_skew_comes_from_the_policy() -> None:
    strict = POLICY.model_copy(update={"max_event_clock_skew": timedelta(hours=2)})
    assert TrackingPolicy().max_event_clock_skew == timedelta(days=1)
    run = Run(policy=strict, start=at(0))
    assert run.feed(make_event(S.IN_TRANSIT, at(3), event_id="ahead")) == []
    assert run.state.rank == -1
    [note] = run.state.notes
    assert note.detail.endswith("occurred_at is more than 2h in the future")
    # within the skew: a carrier clock a little ahead of ours is fine
    assert run.triggers(run.feed(make_event(S.IN_TRANSIT, at(1), event_id="ok"))) == [
        Trigger.IN_TRANSIT
    ]


def test_an_event_slightly_ahead_of_our_clock_still_counts() -> None:
    run = Run(start=at(0))
    sends = run.feed(make_event(S.IN_TRANSIT, at(23), event_id="ahead"))
    assert run.triggers(sends) == [Trigger.IN_TRANSIT]
    assert run.state.notes == []


def test_a_wild_event_is_noted_once_and_its_corrected_resend_is_applied() -> None:
    run = Run(start=at(0))
    run.feed(make_event(S.LABEL_CREATED, at(0)))
    wild = make_event(S.IN_TRANSIT, WILD, event_id="scan-7")
    run.feed(wild, wild, wild)
    assert [n.kind for n in run.state.notes] == [IMPLAUSIBLE]
    # the carrier fixes the timestamp and re-sends the same event id: it is news
    fixed = make_event(S.IN_TRANSIT, at(1), event_id="scan-7")
    assert run.triggers(run.feed(fixed)) == [Trigger.IN_TRANSIT]
    assert run.feed(fixed) == []


def test_a_wild_event_for_a_shipment_without_state_is_just_noted() -> None:
    decision = on_event(
        ShipmentState(), make_event(S.LABEL_CREATED, EPOCH), make_shipment(), POLICY, at(0)
    )
    assert decision.sends == []
    assert decision.state.timeline == []
    assert decision.state.phase == Phase.PENDING
    assert [n.kind for n in decision.state.notes] == [IMPLAUSIBLE]


# --------------------------------------------------------------------------------------
# Property: wild events mixed into random stories change no decision
# --------------------------------------------------------------------------------------

WILD_TIMES = st.sampled_from(
    [WILD, EPOCH, datetime(1999, 12, 31, 23, 59, tzinfo=UTC), datetime(3000, 1, 1, tzinfo=UTC)]
)


@st.composite
def wild_events(draw: st.DrawFn) -> CarrierEvent:
    status = draw(st.sampled_from(list(S)))
    kind = draw(st.sampled_from([*X, None])) if status == S.EXCEPTION else None
    # ids shared with the real events on purpose: a wild event must not swallow a real one
    event_id = draw(st.sampled_from([None, "ev-0", "ev-1", "ev-2", "wild-1"]))
    return make_event(status, draw(WILD_TIMES), exception=kind, event_id=event_id)


@dataclass(frozen=True)
class Step:
    now: datetime
    decision: Decision
    wild: bool


def drive(
    story: Story,
    shipment: Shipment,
    policy: TrackingPolicy,
    wild: dict[int, list[CarrierEvent]],
) -> tuple[list[Step], ShipmentState]:
    """Like the workflow (see test_policy_timing_properties.simulate); the wild events of
    `wild[i]` arrive right after input i, at the same instant, without a wake-up between."""
    state = on_start(ShipmentState(), story.start)
    now = story.start
    steps: list[Step] = []

    def apply(decision: Decision, is_wild: bool = False) -> None:
        nonlocal state
        state = decision.state
        for send in decision.sends:
            state = record_sent(state, send, now)
        steps.append(Step(now, decision, is_wild))

    def advance(to: datetime, punctual: bool) -> None:
        nonlocal now
        for _ in range(500):
            due = next_action(state, shipment, policy).due_at
            if not punctual or due is None or due > to:
                break
            now = max(due, now)
            apply(on_tick(state, shipment, policy, now))
        now = max(to, now)
        apply(on_tick(state, shipment, policy, now))

    for i, item in enumerate(story.inputs):
        advance(item.at, item.punctual)
        if item.event is not None:
            apply(on_event(state, item.event, shipment, policy, now))
        elif item.request is not None:
            apply(on_return_request(state, item.request, shipment, policy, now))
        for event in wild.get(i, []):
            apply(on_event(state, event, shipment, policy, now), is_wild=True)
    advance(now + timedelta(days=45), punctual=True)
    return steps, state


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(story=stories(), where=customers(), policy=st.sampled_from(POLICIES), data=st.data())
def test_wild_timestamps_mixed_in_change_no_decision(
    story: Story, where: tuple[Shipment, object], policy: TrackingPolicy, data: st.DataObject
) -> None:
    shipment, _ = where
    positions = range(len(story.inputs))
    wild: dict[int, list[CarrierEvent]] = {}
    if story.inputs:
        for _ in range(data.draw(st.integers(1, 4))):
            wild.setdefault(data.draw(st.sampled_from(positions)), []).append(
                data.draw(wild_events())
            )
    base_steps, base_state = drive(story, shipment, policy, {})
    steps, state = drive(story, shipment, policy, wild)

    for step in steps:
        if step.wild:
            assert step.decision == Decision(state=step.decision.state)
    real = [(s.now, s.decision.model_copy(update={"state": None})) for s in steps if not s.wild]
    expected = [(s.now, s.decision.model_copy(update={"state": None})) for s in base_steps]
    assert real == expected
    assert _comparable(state) == base_state
    # each wild event is noted, unless it repeats an event id already applied (a duplicate)
    noted = {n.key for n in state.notes if n.kind == IMPLAUSIBLE}
    keys = {e.dedupe_key for events in wild.values() for e in events}
    assert noted <= keys
    assert all(k in noted or remembered(k) in state.seen_event_keys for k in keys)
