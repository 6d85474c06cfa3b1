"""Example-based tests of the pure tracking policy (trackflow/policy.py), with a fake clock."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tests.factories import (
    ANY_TIME_POLICY,
    TRACKING_NUMBER,
    at,
    exception_event,
    make_event,
    make_shipment,
)
from trackflow.effects import RaiseAlert, TagHelpdesk
from trackflow.models import (
    CarrierEvent,
    CarrierStatus,
    Channel,
    ExceptionKind,
    Shipment,
    ShipmentUpdate,
    ShippingSpeed,
    Trigger,
)
from trackflow.policy import (
    MAX_REMEMBERED_UPDATE_IDS,
    Decision,
    Phase,
    SendNotification,
    ShipmentState,
    Tone,
    channels_for,
    is_finished,
    next_action,
    on_cancel,
    on_event,
    on_shipment_update,
    on_start,
    on_tick,
    record_sent,
    tone_for,
    view,
)
from trackflow.shipment_state import remembered
from trackflow.tracking_policy import TrackingPolicy

POLICY = ANY_TIME_POLICY
S = CarrierStatus
WF = f"{TRACKING_NUMBER}/1001"
KEY_FORMAT = re.compile(
    rf"^{WF}:(label_created|in_transit|out_for_delivery|delivered|exception):[^:]+:(email|sms)$"
)

LABEL = make_event(S.LABEL_CREATED, at(0), event_id="e-label")
TRANSIT = make_event(S.IN_TRANSIT, at(2), event_id="e-transit")
OUT = make_event(S.OUT_FOR_DELIVERY, at(20), event_id="e-out")
DELIVERED = make_event(S.DELIVERED, at(24), event_id="e-delivered")
MILESTONES = [LABEL, TRANSIT, OUT, DELIVERED]


class Run:
    """Feeds events and the passing of time through the policy like the workflow does,
    recording every send, alert and helpdesk tag."""

    def __init__(
        self,
        shipment: Shipment | None = None,
        policy: TrackingPolicy = POLICY,
        start: datetime | None = None,
    ) -> None:
        self.shipment = shipment or make_shipment()
        self.policy = policy
        self.now = start or at(0)
        self.state = on_start(ShipmentState(), self.now)
        self.sends: list[SendNotification] = []
        self.alerts: list[RaiseAlert] = []
        self.tags: list[TagHelpdesk] = []

    def feed(self, *events: CarrierEvent) -> list[SendNotification]:
        """Apply the events in order; return the sends of this call only."""
        new: list[SendNotification] = []
        for event in events:
            self.now += timedelta(minutes=1)
            new += self._apply(on_event(self.state, event, self.shipment, self.policy, self.now))
        return new

    def tick(self, now: datetime) -> list[SendNotification]:
        """Move the fake clock to `now` (never backwards) and fire what is due; return the
        sends of this call only."""
        assert now >= self.now, "the fake clock only moves forward"
        self.now = now
        return self._apply(on_tick(self.state, self.shipment, self.policy, now))

    def _apply(self, decision: Decision) -> list[SendNotification]:
        self.state = decision.state
        for send in decision.sends:
            self.state = record_sent(self.state, send, self.now)
        self.sends.extend(decision.sends)
        self.alerts.extend(decision.alerts)
        self.tags.extend(decision.tags)
        return decision.sends

    def triggers(self, sends: Iterable[SendNotification] | None = None) -> list[Trigger]:
        return [s.trigger for s in (self.sends if sends is None else sends)]

    @property
    def last_effect(self) -> str:
        return self.state.timeline[-1].effect if self.state.timeline else ""

    def effect_of(self, event: CarrierEvent) -> str:
        matches = [
            e
            for e in self.state.timeline
            if e.status == event.status and e.occurred_at == event.occurred_at
        ]
        assert len(matches) == 1, matches
        return matches[0].effect


# --------------------------------------------------------------------------------------
# The five triggers, each once
# --------------------------------------------------------------------------------------


def test_full_lifecycle_sends_each_milestone_once_in_order() -> None:
    run = Run()
    run.feed(*MILESTONES)
    assert run.triggers() == [
        Trigger.LABEL_CREATED,
        Trigger.IN_TRANSIT,
        Trigger.OUT_FOR_DELIVERY,
        Trigger.DELIVERED,
    ]
    assert [s.idempotency_key for s in run.sends] == [
        f"{WF}:label_created:1:email",
        f"{WF}:in_transit:1:email",
        f"{WF}:out_for_delivery:1:email",
        f"{WF}:delivered:1:email",
    ]
    assert run.state.phase == Phase.DELIVERED
    assert [n.trigger for n in run.state.notifications] == run.triggers()


@pytest.mark.parametrize(
    ("event", "phase", "trigger"),
    [
        (LABEL, Phase.LABEL_CREATED, Trigger.LABEL_CREATED),
        (TRANSIT, Phase.IN_TRANSIT, Trigger.IN_TRANSIT),
        (OUT, Phase.OUT_FOR_DELIVERY, Trigger.OUT_FOR_DELIVERY),
        (DELIVERED, Phase.DELIVERED, Trigger.DELIVERED),
    ],
)
def test_each_milestone_alone_sets_phase_and_sends_its_trigger(
    event: CarrierEvent, phase: Phase, trigger: Trigger
) -> None:
    run = Run()
    sends = run.feed(event)
    assert run.triggers(sends) == [trigger]
    assert run.state.phase == phase
    assert run.state.last_milestone_at == event.occurred_at
    assert run.last_effect == "milestone"


def test_only_the_first_carrier_scan_triggers_in_transit() -> None:
    run = Run()
    run.feed(LABEL, TRANSIT)
    later_scans = [
        make_event(S.IN_TRANSIT, at(5 + i), event_id=f"scan-{i}", location=f"Hub {i}")
        for i in range(3)
    ]
    assert run.feed(*later_scans) == []
    assert run.triggers().count(Trigger.IN_TRANSIT) == 1
    # ... but every scan is in the timeline, for ops.
    assert len(run.state.timeline) == 5
    assert all(e.effect == "ignored: milestone already reached" for e in run.state.timeline[2:])


def test_delivered_arriving_first_sends_only_delivered() -> None:
    run = Run()
    assert run.triggers(run.feed(DELIVERED)) == [Trigger.DELIVERED]
    # the earlier scans trickle in afterwards: recorded, never announced
    assert run.feed(LABEL, TRANSIT, OUT) == []
    assert run.triggers() == [Trigger.DELIVERED]
    assert run.state.phase == Phase.DELIVERED
    assert len(run.state.timeline) == 4
    for event in (LABEL, TRANSIT, OUT):
        assert run.effect_of(event).startswith("ignored")


def test_skipped_milestones_are_not_backfilled() -> None:
    run = Run()
    run.feed(LABEL, OUT, TRANSIT, DELIVERED)
    assert run.triggers() == [Trigger.LABEL_CREATED, Trigger.OUT_FOR_DELIVERY, Trigger.DELIVERED]
    assert run.effect_of(TRANSIT) == "ignored: milestone already reached"


# --------------------------------------------------------------------------------------
# Duplicates and out-of-order events
# --------------------------------------------------------------------------------------


def test_duplicate_event_id_sends_nothing_and_is_not_recorded_twice() -> None:
    run = Run()
    run.feed(LABEL, TRANSIT)
    before = run.state
    # same id, even with different details (a carrier re-send with a corrected location)
    resent = make_event(S.IN_TRANSIT, at(3), event_id="e-transit", location="Louisville, KY")
    assert run.feed(TRANSIT, resent) == []
    assert run.state.timeline == before.timeline
    assert run.state.seen_event_keys == before.seen_event_keys


def test_duplicate_exception_by_event_id_sends_nothing() -> None:
    run = Run()
    run.feed(LABEL)
    weather = exception_event(ExceptionKind.WEATHER_DELAY, at(3), event_id="x-1")
    assert run.triggers(run.feed(weather)) == [Trigger.EXCEPTION]
    run.feed(TRANSIT)  # closes the episode, so only dedupe can stop a repeat
    assert run.feed(weather) == []


def test_duplicate_by_content_without_event_id_sends_nothing() -> None:
    run = Run()
    first = make_event(S.LABEL_CREATED, at(0), location="Memphis, TN")
    copy = make_event(S.LABEL_CREATED, at(0), location="Memphis, TN")
    assert first.event_id is None
    assert run.triggers(run.feed(first)) == [Trigger.LABEL_CREATED]
    assert run.feed(copy) == []
    assert len(run.state.timeline) == 1

    late = exception_event(ExceptionKind.CARRIER_DELAY, at(1))
    run.feed(late)
    run.feed(make_event(S.IN_TRANSIT, at(2)))  # closes the episode
    assert run.feed(exception_event(ExceptionKind.CARRIER_DELAY, at(1))) == []


def test_content_duplicate_is_recognised_across_utc_offsets() -> None:
    run = Run()
    utc = make_event(S.IN_TRANSIT, at(2), location="Memphis, TN")
    local = make_event(
        S.IN_TRANSIT, at(2).astimezone(timezone(timedelta(hours=-6))), location="Memphis, TN"
    )
    assert run.triggers(run.feed(utc)) == [Trigger.IN_TRANSIT]
    assert run.feed(local) == []
    assert len(run.state.timeline) == 1


def test_events_without_id_that_differ_in_content_are_not_duplicates() -> None:
    run = Run()
    run.feed(LABEL)
    a = exception_event(ExceptionKind.WEATHER_DELAY, at(3))
    b = exception_event(ExceptionKind.ADDRESS_ISSUE, at(3))
    assert run.triggers(run.feed(a, b)) == [Trigger.EXCEPTION, Trigger.EXCEPTION]
    assert [s.exception for s in run.sends[1:]] == [
        ExceptionKind.WEATHER_DELAY,
        ExceptionKind.ADDRESS_ISSUE,
    ]


def test_lower_milestone_after_higher_is_recorded_but_ignored() -> None:
    run = Run()
    run.feed(LABEL, OUT)
    state_before = run.state
    assert run.feed(TRANSIT) == []
    assert run.state.phase == Phase.OUT_FOR_DELIVERY
    assert run.state.rank == state_before.rank
    assert run.state.last_milestone_at == OUT.occurred_at
    assert run.effect_of(TRANSIT) == "ignored: milestone already reached"
    assert len(run.state.timeline) == 3


def test_exception_older_than_last_milestone_is_recorded_but_ignored() -> None:
    run = Run()
    run.feed(LABEL, OUT)
    stale = exception_event(ExceptionKind.WEATHER_DELAY, OUT.occurred_at - timedelta(hours=1))
    assert run.feed(stale) == []
    assert run.state.open_exception is None
    assert run.state.phase == Phase.OUT_FOR_DELIVERY
    assert run.effect_of(stale) == "ignored: older than the last milestone"
    assert run.state.exception_episode == 0


def test_exception_at_the_same_instant_as_the_last_milestone_is_not_older() -> None:
    run = Run()
    run.feed(LABEL, TRANSIT)
    same_time = exception_event(ExceptionKind.CARRIER_DELAY, TRANSIT.occurred_at)
    assert run.triggers(run.feed(same_time)) == [Trigger.EXCEPTION]


def test_exception_before_any_milestone_notifies() -> None:
    run = Run()
    sends = run.feed(exception_event(ExceptionKind.ADDRESS_ISSUE, at(0)))
    assert run.triggers(sends) == [Trigger.EXCEPTION]
    assert run.state.phase == Phase.EXCEPTION


@pytest.mark.parametrize(
    "late",
    [
        exception_event(ExceptionKind.DAMAGED, at(30), event_id="late-x"),
        exception_event(ExceptionKind.FAILED_ATTEMPT, at(10), event_id="early-x"),
        make_event(S.AVAILABLE_FOR_PICKUP, at(30), event_id="late-pickup"),
        make_event(S.RETURNED, at(30), event_id="late-return"),
        make_event(S.OUT_FOR_DELIVERY, at(23), event_id="late-out"),
        make_event(S.DELIVERED, at(25), event_id="second-delivered"),
    ],
    ids=["exception", "older-exception", "pickup", "returned", "lower-milestone", "redelivered"],
)
def test_nothing_is_sent_after_delivered(late: CarrierEvent) -> None:
    run = Run(start=at(24))  # received once they happened (not more than a day early)
    run.feed(*MILESTONES)
    assert run.feed(late) == []
    assert run.state.phase == Phase.DELIVERED
    assert run.state.open_exception is None
    assert run.state.closed_reason is None
    assert run.effect_of(late).startswith("ignored")
    assert len(run.state.timeline) == 5


def test_timeline_is_ordered_by_occurrence_and_keeps_receipt_time() -> None:
    run = Run(start=at(100))
    run.feed(OUT, LABEL, TRANSIT)
    assert [e.status for e in run.state.timeline] == [
        S.LABEL_CREATED,
        S.IN_TRANSIT,
        S.OUT_FOR_DELIVERY,
    ]
    by_status = {e.status: e for e in run.state.timeline}
    assert by_status[S.OUT_FOR_DELIVERY].received_at == at(100, minutes=1)
    assert by_status[S.LABEL_CREATED].received_at == at(100, minutes=2)


def test_on_event_does_not_mutate_its_input_state() -> None:
    run = Run()
    run.feed(LABEL)
    frozen = run.state
    snapshot = frozen.model_dump()
    decision = on_event(frozen, TRANSIT, run.shipment, POLICY, at(5))
    assert decision.sends
    assert frozen.model_dump() == snapshot
    assert decision.state is not frozen


# --------------------------------------------------------------------------------------
# Segmentation: channels and tone
# --------------------------------------------------------------------------------------

PHONE = "+15025550123"
EMAIL = "ada@example.com"


@pytest.mark.parametrize(
    ("value", "email", "phone", "consent", "expected"),
    [
        ("151.00", EMAIL, PHONE, True, [Channel.EMAIL, Channel.SMS]),
        ("150.01", EMAIL, PHONE, True, [Channel.EMAIL, Channel.SMS]),
        ("150.00", EMAIL, PHONE, True, [Channel.EMAIL]),
        ("149.99", EMAIL, PHONE, True, [Channel.EMAIL]),
        ("0", EMAIL, PHONE, True, [Channel.EMAIL]),
        ("500", EMAIL, PHONE, False, [Channel.EMAIL]),
        ("500", EMAIL, None, True, [Channel.EMAIL]),
        ("500", EMAIL, None, False, [Channel.EMAIL]),
        # extra rule: no email but a consenting phone -> SMS whatever the value
        ("10", None, PHONE, True, [Channel.SMS]),
        ("150.00", None, PHONE, True, [Channel.SMS]),
        ("500", None, PHONE, True, [Channel.SMS]),
        # no email and no consent: nobody may be contacted
        ("500", None, PHONE, False, []),
    ],
)
def test_channels_for_segmentation(
    value: str, email: str | None, phone: str | None, consent: bool, expected: list[Channel]
) -> None:
    shipment = make_shipment(order_value=value, email=email, phone=phone, sms_consent=consent)
    channels = channels_for(shipment, POLICY)
    assert [c for c, _ in channels] == expected
    addresses = {Channel.EMAIL: email, Channel.SMS: phone}
    assert all(to == addresses[c] for c, to in channels)


def test_high_value_order_gets_email_and_sms_for_every_trigger() -> None:
    run = Run(make_shipment(order_value="250.00"))
    run.feed(*MILESTONES)
    assert len(run.sends) == 8
    for trigger in (Trigger.LABEL_CREATED, Trigger.IN_TRANSIT, Trigger.OUT_FOR_DELIVERY):
        pair = [s for s in run.sends if s.trigger == trigger]
        assert {(s.channel, s.to) for s in pair} == {(Channel.EMAIL, EMAIL), (Channel.SMS, PHONE)}


def test_order_at_exactly_the_threshold_gets_email_only() -> None:
    run = Run(make_shipment(order_value="150"))
    run.feed(*MILESTONES)
    assert {s.channel for s in run.sends} == {Channel.EMAIL}
    assert len(run.sends) == 4


def test_unreachable_customer_gets_no_sends_but_tracking_continues() -> None:
    run = Run(make_shipment(email=None, sms_consent=False, order_value="999"))
    assert run.feed(*MILESTONES) == []
    assert run.state.phase == Phase.DELIVERED
    assert run.state.notifications == []


def test_threshold_comes_from_the_policy() -> None:
    cheap = TrackingPolicy(sms_value_threshold=Decimal("20"))
    shipment = make_shipment(order_value="25")
    assert [c for c, _ in channels_for(shipment, POLICY)] == [Channel.EMAIL]
    assert [c for c, _ in channels_for(shipment, cheap)] == [Channel.EMAIL, Channel.SMS]


@pytest.mark.parametrize(
    ("orders", "tone"),
    [
        (0, Tone.NEW_CUSTOMER),
        (1, Tone.NEW_CUSTOMER),
        (2, Tone.NEW_CUSTOMER),
        (3, Tone.RETURNING_CUSTOMER),
        (12, Tone.RETURNING_CUSTOMER),
    ],
)
def test_tone_for_returning_customers(orders: int, tone: Tone) -> None:
    shipment = make_shipment(customer_order_count=orders, order_value="300")
    assert tone_for(shipment, POLICY) == tone
    run = Run(shipment)
    run.feed(LABEL, exception_event(ExceptionKind.CARRIER_DELAY, at(1)))
    assert len(run.sends) == 4
    assert {s.tone for s in run.sends} == {tone}


def test_returning_threshold_comes_from_the_policy() -> None:
    shipment = make_shipment(customer_order_count=2)
    assert tone_for(shipment, POLICY) == Tone.NEW_CUSTOMER
    lenient = TrackingPolicy(returning_customer_min_orders=2)
    assert tone_for(shipment, lenient) == Tone.RETURNING_CUSTOMER


# --------------------------------------------------------------------------------------
# After delivery: review request at the hold, completion at the return window (fake clock)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("speed", "hold"),
    [(ShippingSpeed.STANDARD, timedelta(hours=24)), (ShippingSpeed.EXPRESS, timedelta(hours=12))],
)
def test_review_request_after_the_hold_and_completion_after_the_return_window(
    speed: ShippingSpeed, hold: timedelta
) -> None:
    shipment = make_shipment(shipping_speed=speed)
    assert POLICY.timings(speed).post_delivery_hold == hold
    assert POLICY.return_window == timedelta(hours=72)
    run = Run(shipment, start=at(50))
    run.feed(LABEL, TRANSIT)
    # in transit, the earliest timer is the stale check-in; nothing ends without the clock
    assert next_action(run.state, shipment, POLICY).kind == "stale_check_in"
    assert not is_finished(run.state)

    run.feed(DELIVERED)
    seen = run.now  # the fake clock when delivery was processed
    assert run.state.delivered_seen_at == seen
    action = next_action(run.state, shipment, POLICY)
    assert (action.kind, action.due_at) == ("review_request", seen + hold)

    assert run.tick(seen + hold - timedelta(seconds=1)) == []
    assert run.state.review is None
    review = run.tick(seen + hold)
    assert run.triggers(review) == [Trigger.REVIEW_REQUEST]
    assert review[0].idempotency_key == f"{WF}:review_request:1:email"
    assert run.state.review == "sent"
    assert not is_finished(run.state)

    end = seen + timedelta(hours=72)  # max(hold, return window)
    action = next_action(run.state, shipment, POLICY)
    assert (action.kind, action.due_at) == ("complete", end)
    run.tick(end - timedelta(seconds=1))
    assert run.state.closed_reason is None
    assert not is_finished(run.state)
    assert run.tick(end) == []
    assert run.state.closed_reason == "lifecycle complete"
    assert is_finished(run.state)
    assert run.triggers().count(Trigger.REVIEW_REQUEST) == 1


def test_late_events_during_the_hold_do_not_extend_it() -> None:
    shipment = make_shipment(shipping_speed=ShippingSpeed.EXPRESS)
    run = Run(shipment)
    run.feed(LABEL, DELIVERED)
    due = next_action(run.state, shipment, POLICY).due_at
    run.feed(OUT, exception_event(ExceptionKind.DAMAGED, at(30)))
    assert next_action(run.state, shipment, POLICY).due_at == due


def test_scaled_policy_shortens_the_hold() -> None:
    fast = POLICY.scaled(60)
    shipment = make_shipment(shipping_speed=ShippingSpeed.EXPRESS)
    run = Run(shipment, policy=fast)
    run.feed(DELIVERED)
    assert next_action(run.state, shipment, fast).due_at == run.now + timedelta(minutes=12)


def test_not_finished_while_awaiting_carrier_events() -> None:
    shipment = make_shipment()
    state = ShipmentState()
    assert next_action(state, shipment, POLICY).kind == "await_carrier_event"
    assert next_action(state, shipment, POLICY).due_at is None
    assert not is_finished(state)


# --------------------------------------------------------------------------------------
# Exception episodes
# --------------------------------------------------------------------------------------


def test_exception_opens_an_episode_and_notifies_once() -> None:
    run = Run(make_shipment(order_value="200"))
    run.feed(LABEL, TRANSIT)
    weather = exception_event(
        ExceptionKind.WEATHER_DELAY,
        at(5),
        event_id="x-1",
        description="Severe weather",
        location="Denver, CO",
        estimated_delivery=date(2026, 11, 25),
    )
    sends = run.feed(weather)
    assert [(s.trigger, s.channel) for s in sends] == [
        (Trigger.EXCEPTION, Channel.EMAIL),
        (Trigger.EXCEPTION, Channel.SMS),
    ]
    assert {s.exception for s in sends} == {ExceptionKind.WEATHER_DELAY}
    assert {s.episode for s in sends} == {1}
    assert [s.idempotency_key for s in sends] == [
        f"{WF}:exception:1-weather_delay:email",
        f"{WF}:exception:1-weather_delay:sms",
    ]
    assert {(s.event_description, s.event_location) for s in sends} == {
        ("Severe weather", "Denver, CO")
    }
    assert {s.estimated_delivery for s in sends} == {date(2026, 11, 25)}
    assert run.state.phase == Phase.EXCEPTION
    assert run.state.open_exception == ExceptionKind.WEATHER_DELAY
    assert view(run.state, run.shipment, POLICY).exception == ExceptionKind.WEATHER_DELAY


def test_same_exception_kind_while_open_sends_nothing() -> None:
    run = Run()
    run.feed(LABEL, exception_event(ExceptionKind.CARRIER_DELAY, at(3), event_id="x-1"))
    again = exception_event(ExceptionKind.CARRIER_DELAY, at(6), event_id="x-2")
    assert run.feed(again) == []
    assert run.state.exception_episode == 1
    assert run.effect_of(again) == "ignored: same exception still open"
    assert len(run.state.timeline) == 3


def test_different_exception_kind_opens_a_new_episode() -> None:
    run = Run()
    run.feed(LABEL)
    first = run.feed(exception_event(ExceptionKind.WEATHER_DELAY, at(3), event_id="x-1"))
    second = run.feed(exception_event(ExceptionKind.ADDRESS_ISSUE, at(4), event_id="x-2"))
    assert run.triggers(second) == [Trigger.EXCEPTION]
    assert second[0].exception == ExceptionKind.ADDRESS_ISSUE
    assert second[0].episode == 2
    assert second[0].idempotency_key != first[0].idempotency_key
    assert run.state.open_exception == ExceptionKind.ADDRESS_ISSUE


def test_milestone_advance_closes_the_episode() -> None:
    run = Run()
    run.feed(LABEL)
    first = run.feed(exception_event(ExceptionKind.WEATHER_DELAY, at(1), event_id="x-1"))
    run.feed(TRANSIT)
    assert run.state.open_exception is None
    assert run.state.phase == Phase.IN_TRANSIT
    assert view(run.state, run.shipment, POLICY).exception is None
    # the same kind again is now news: a new episode with its own key (and a message, once
    # the exception message cap's interval is over)
    run.tick(run.now + POLICY.exception_message_min_interval)
    again = run.feed(exception_event(ExceptionKind.WEATHER_DELAY, at(3), event_id="x-2"))
    assert run.triggers(again) == [Trigger.EXCEPTION]
    assert again[0].episode == 2
    assert again[0].idempotency_key != first[0].idempotency_key


def test_delivery_closes_an_open_episode() -> None:
    run = Run()
    run.feed(LABEL, TRANSIT, exception_event(ExceptionKind.FAILED_ATTEMPT, at(21), event_id="x"))
    assert run.state.open_exception == ExceptionKind.FAILED_ATTEMPT
    assert run.triggers(run.feed(DELIVERED)) == [Trigger.DELIVERED]
    assert run.state.phase == Phase.DELIVERED
    assert run.state.open_exception is None
    assert view(run.state, run.shipment, POLICY).exception is None


def test_a_newer_scan_that_does_not_advance_recovers_silently() -> None:
    """Back in transit after an exception: the episode closes and the ETA is updated, but the
    customer is not alarmed again; the same kind later is a new episode."""
    run = Run()
    run.feed(LABEL, TRANSIT, exception_event(ExceptionKind.CARRIER_DELAY, at(3), event_id="x-1"))
    scan = make_event(
        S.IN_TRANSIT, at(4), event_id="another-scan", estimated_delivery=date(2026, 11, 27)
    )
    assert run.feed(scan) == []
    assert run.effect_of(scan) == "recovered"
    assert run.state.open_exception is None
    assert run.state.phase == Phase.IN_TRANSIT
    assert run.state.estimated_delivery == date(2026, 11, 27)
    assert view(run.state, run.shipment, POLICY).exception is None
    run.tick(run.now + POLICY.exception_message_min_interval)  # the cap's interval is over
    again = run.feed(exception_event(ExceptionKind.CARRIER_DELAY, at(5), event_id="x-2"))
    assert run.triggers(again) == [Trigger.EXCEPTION]
    assert again[0].episode == 2
    assert again[0].idempotency_key == f"{WF}:exception:2-carrier_delay:email"


def test_an_older_scan_that_does_not_advance_keeps_the_episode_open() -> None:
    run = Run()
    run.feed(LABEL, TRANSIT, exception_event(ExceptionKind.CARRIER_DELAY, at(3), event_id="x-1"))
    older = make_event(S.IN_TRANSIT, at(2, minutes=30), event_id="older-scan")
    assert run.feed(older) == []
    assert run.effect_of(older) == "ignored: milestone already reached"
    assert run.state.open_exception == ExceptionKind.CARRIER_DELAY
    assert run.state.phase == Phase.EXCEPTION
    assert run.feed(exception_event(ExceptionKind.CARRIER_DELAY, at(5), event_id="x-2")) == []


def test_available_for_pickup_is_a_held_at_facility_exception() -> None:
    run = Run()
    run.feed(LABEL, TRANSIT)
    sends = run.feed(make_event(S.AVAILABLE_FOR_PICKUP, at(10), event_id="p-1"))
    assert run.triggers(sends) == [Trigger.EXCEPTION]
    assert sends[0].exception == ExceptionKind.HELD_AT_FACILITY
    assert run.state.open_exception == ExceptionKind.HELD_AT_FACILITY
    assert run.state.timeline[-1].exception == ExceptionKind.HELD_AT_FACILITY
    # the carrier's own held_at_facility exception is the same episode
    held = exception_event(ExceptionKind.HELD_AT_FACILITY, at(11), event_id="x-held")
    assert run.feed(held) == []
    assert not is_finished(run.state)


def test_returned_is_a_return_to_sender_exception_and_closes_the_shipment() -> None:
    run = Run(start=at(24))  # received once they happened (not more than a day early)
    run.feed(LABEL, TRANSIT)
    sends = run.feed(make_event(S.RETURNED, at(40), event_id="r-1"))
    assert run.triggers(sends) == [Trigger.EXCEPTION]
    assert sends[0].exception == ExceptionKind.RETURN_TO_SENDER
    assert run.state.phase == Phase.RETURNED
    assert run.state.closed_reason
    assert next_action(run.state, run.shipment, POLICY).kind == "complete"
    assert is_finished(run.state)
    # anything later is recorded and ignored
    late = [
        make_event(S.DELIVERED, at(41), event_id="d"),
        exception_event(ExceptionKind.LOST, at(42), event_id="x"),
    ]
    assert run.feed(*late) == []
    assert run.state.phase == Phase.RETURNED
    assert all(e.effect.startswith("ignored: shipment") for e in run.state.timeline[-2:])


def test_exception_status_without_a_kind_is_unknown() -> None:
    run = Run()
    sends = run.feed(make_event(S.EXCEPTION, at(1), event_id="x"))
    assert sends[0].exception == ExceptionKind.UNKNOWN


def test_estimated_delivery_is_carried_forward() -> None:
    run = Run()
    run.feed(make_event(S.LABEL_CREATED, at(0), estimated_delivery=date(2026, 11, 24)))
    sends = run.feed(TRANSIT)
    assert run.state.estimated_delivery == date(2026, 11, 24)
    assert sends[0].estimated_delivery == date(2026, 11, 24)
    run.feed(make_event(S.OUT_FOR_DELIVERY, at(3), estimated_delivery=date(2026, 11, 22)))
    assert run.state.estimated_delivery == date(2026, 11, 22)


# --------------------------------------------------------------------------------------
# Idempotency keys
# --------------------------------------------------------------------------------------


def test_idempotency_keys_are_business_keys_and_unique_over_a_lifecycle() -> None:
    shipment = make_shipment(order_value="400", tracking_number="1z 999-aa1 0123 456784")
    uncapped = POLICY.model_copy(
        update={"exception_message_min_interval": timedelta(0), "max_exception_messages": 10}
    )  # five exception messages in minutes: this test is about their keys, not the cap
    run = Run(shipment, policy=uncapped)
    run.feed(
        LABEL,
        exception_event(ExceptionKind.ADDRESS_ISSUE, at(1), event_id="x-1"),
        TRANSIT,
        exception_event(ExceptionKind.ADDRESS_ISSUE, at(3), event_id="x-2"),
        exception_event(ExceptionKind.WEATHER_DELAY, at(4), event_id="x-3"),
        make_event(S.AVAILABLE_FOR_PICKUP, at(5), event_id="x-4"),
        OUT,
        DELIVERED,
    )
    keys = [s.idempotency_key for s in run.sends]
    assert len(keys) == 16
    assert len(set(keys)) == len(keys)
    assert all(KEY_FORMAT.match(k) for k in keys), keys
    for s in run.sends:
        assert s.idempotency_key.endswith(f":{s.channel}")
        assert s.idempotency_key.startswith(f"{WF}:{s.trigger}:")
    assert [n.idempotency_key for n in run.state.notifications] == keys


def test_replaying_the_same_events_yields_the_same_keys() -> None:
    events = [LABEL, exception_event(ExceptionKind.DAMAGED, at(1), event_id="x"), TRANSIT]
    first, second = Run(), Run()
    first.feed(*events)
    second.feed(*events)
    assert [s.idempotency_key for s in first.sends] == [s.idempotency_key for s in second.sends]
    assert first.state == second.state


# --------------------------------------------------------------------------------------
# record_sent, on_cancel, on_shipment_update, view
# --------------------------------------------------------------------------------------


def _one_send() -> tuple[ShipmentState, SendNotification]:
    decision = on_event(
        ShipmentState(),
        exception_event(ExceptionKind.LOST, at(1)),
        make_shipment(),
        POLICY,
        at(1),
    )
    assert len(decision.sends) == 1
    return decision.state, decision.sends[0]


def test_record_sent_stores_the_notification() -> None:
    state, send = _one_send()
    state = record_sent(state, send, at(2))
    [sent] = state.notifications
    assert sent.idempotency_key == send.idempotency_key
    assert (sent.trigger, sent.channel, sent.exception) == (
        Trigger.EXCEPTION,
        Channel.EMAIL,
        ExceptionKind.LOST,
    )
    assert sent.sent_at == at(2)


def test_record_sent_is_idempotent() -> None:
    state, send = _one_send()
    once = record_sent(state, send, at(2))
    twice = record_sent(once, send, at(3))
    assert len(twice.notifications) == 1
    assert twice.notifications[0].sent_at == at(2)  # the first record wins
    assert twice == once


def test_cancel_closes_and_later_events_send_nothing() -> None:
    run = Run()
    run.feed(LABEL)
    run.state = on_cancel(run.state, "order refunded")
    assert run.state.phase == Phase.CANCELLED
    assert run.state.closed_reason is not None
    assert "order refunded" in run.state.closed_reason
    assert next_action(run.state, run.shipment, POLICY).kind == "complete"
    assert is_finished(run.state)
    assert run.feed(TRANSIT, exception_event(ExceptionKind.LOST, at(9)), DELIVERED) == []
    assert run.state.phase == Phase.CANCELLED
    assert len(run.state.timeline) == 4
    assert all(e.effect.startswith("ignored: shipment cancelled") for e in run.state.timeline[1:])


def test_cancel_is_idempotent_and_keeps_the_first_reason() -> None:
    state = on_cancel(ShipmentState(), "first")
    again = on_cancel(state, "second")
    assert again == state
    assert again.closed_reason is not None and "first" in again.closed_reason


def test_cancel_after_return_keeps_the_return() -> None:
    run = Run()
    run.feed(make_event(S.RETURNED, at(1)))
    assert on_cancel(run.state, "late cancel") == run.state


def _update(
    shipment: Shipment, update_id: str | None = None, updated_at: datetime | None = None
) -> ShipmentUpdate:
    return ShipmentUpdate(shipment=shipment, update_id=update_id, updated_at=updated_at)


def _ignored(state: ShipmentState) -> list[tuple[str, str]]:
    return [(n.key, n.detail) for n in state.notes if n.kind == "update_ignored"]


def test_shipment_update_for_another_tracking_number_is_noted_not_raised() -> None:
    current = make_shipment()
    other = make_shipment(tracking_number="9400111899223100001234")
    state, shipment = on_shipment_update(ShipmentState(), current, _update(other, "wh-9"), at(1))
    assert shipment == current
    assert _ignored(state) == [("wh-9", "for another tracking number: 9400111899223100001234")]
    assert state.applied_update_ids == []


def test_shipment_update_replaces_facts_and_changes_segmentation() -> None:
    current = make_shipment(order_value="100", sms_consent=False)
    # same number, carrier formatting
    update = make_shipment(
        order_value="180", sms_consent=True, tracking_number="1z999aa1-0123-456784"
    )
    state, merged = on_shipment_update(ShipmentState(), current, _update(update), at(1))
    assert merged == update
    assert state.notes == []
    run = Run(current)
    assert {s.channel for s in run.feed(LABEL)} == {Channel.EMAIL}
    run.shipment = merged
    assert {s.channel for s in run.feed(TRANSIT)} == {Channel.EMAIL, Channel.SMS}


def test_first_update_is_applied_and_remembered() -> None:
    """The signal-with-start that creates the workflow carries the first update."""
    shipment = make_shipment()
    state, applied = on_shipment_update(
        ShipmentState(), shipment, _update(shipment, "wh-1", at(-5)), at(0)
    )
    assert applied == shipment
    assert state.applied_update_ids == [remembered("wh-1")]
    assert state.applied_update_at == at(-5)
    assert state.notes == []


def test_replayed_webhook_id_is_ignored_even_when_it_is_not_older() -> None:
    old = make_shipment(phone="+15025550100")
    new = make_shipment(phone="+15025550199")
    state, shipment = on_shipment_update(ShipmentState(), old, _update(new, "wh-a"), at(1))
    # the same webhook id again, with other content and no updated_at: a replay all the same
    state, shipment = on_shipment_update(state, shipment, _update(old, "wh-a"), at(2))
    assert shipment.customer.phone == "+15025550199"
    assert _ignored(state) == [("wh-a", "replayed webhook")]
    assert state.applied_update_ids == [remembered("wh-a")]


def test_update_older_than_the_applied_one_is_ignored() -> None:
    first = make_shipment(phone="+15025550100")
    newer = make_shipment(phone="+15025550199", sms_consent=False, email="new@example.com")
    state, shipment = on_shipment_update(
        ShipmentState(), first, _update(first, "wh-1", at(0)), at(0)
    )
    state, shipment = on_shipment_update(state, shipment, _update(newer, "wh-3", at(2)), at(3))
    state, shipment = on_shipment_update(state, shipment, _update(first, "wh-2", at(1)), at(4))
    assert shipment == newer
    assert (shipment.customer.email, shipment.customer.sms_consent) == ("new@example.com", False)
    assert _ignored(state) == [
        ("wh-2", "older than the applied update of 2026-11-20T14:00:00+00:00")
    ]
    assert state.applied_update_ids == [remembered("wh-1"), remembered("wh-3")]
    assert state.applied_update_at == at(2)


def test_update_as_old_as_the_applied_one_or_newer_is_applied() -> None:
    a, b, c = (make_shipment(phone=f"+1502555010{i}") for i in range(3))
    state, shipment = on_shipment_update(ShipmentState(), a, _update(a, "wh-a", at(1)), at(1))
    state, shipment = on_shipment_update(state, shipment, _update(b, "wh-b", at(1)), at(2))
    assert shipment == b
    # same instant written in another offset: not older
    later = at(3).astimezone(timezone(timedelta(hours=-5)))
    state, shipment = on_shipment_update(state, shipment, _update(c, "wh-c", later), at(3))
    assert shipment == c
    assert state.applied_update_at == at(3)
    assert _ignored(state) == []


def test_update_without_id_or_time_skips_that_check() -> None:
    a, b = make_shipment(phone="+15025550100"), make_shipment(phone="+15025550101")
    state, shipment = on_shipment_update(ShipmentState(), a, _update(a, "wh-a", at(5)), at(5))
    # from the JSON API: no webhook id, no updated_at -> applied, the order mark is kept
    state, shipment = on_shipment_update(state, shipment, _update(b), at(6))
    state, shipment = on_shipment_update(state, shipment, _update(b), at(7))
    assert shipment == b
    assert state.applied_update_ids == [remembered("wh-a")]
    assert state.applied_update_at == at(5)
    # an id never seen but older than the mark is still refused
    state, shipment = on_shipment_update(state, shipment, _update(a, "wh-z", at(4)), at(8))
    assert shipment == b
    assert [key for key, _ in _ignored(state)] == ["wh-z"]


def test_remembered_update_ids_are_bounded_newest_kept() -> None:
    shipment = make_shipment()
    state = ShipmentState()
    for i in range(MAX_REMEMBERED_UPDATE_IDS + 20):
        state, shipment = on_shipment_update(state, shipment, _update(shipment, f"wh-{i}"), at(0))
    assert len(state.applied_update_ids) == MAX_REMEMBERED_UPDATE_IDS
    assert state.applied_update_ids[-1] == remembered(f"wh-{MAX_REMEMBERED_UPDATE_IDS + 19}")
    assert remembered("wh-0") not in state.applied_update_ids


def test_repeated_replays_note_once() -> None:
    """Shopify retries a webhook it thinks failed up to 8 times; one note says it all."""
    shipment = make_shipment()
    state, shipment = on_shipment_update(ShipmentState(), shipment, _update(shipment, "w"), at(0))
    for hour in range(1, 6):
        state, shipment = on_shipment_update(state, shipment, _update(shipment, "w"), at(hour))
    assert _ignored(state) == [("w", "replayed webhook")]


def test_update_memory_survives_continue_as_new() -> None:
    """The state crosses continue-as-new as JSON; an old state without the fields loads."""
    shipment = make_shipment()
    state, _ = on_shipment_update(ShipmentState(), shipment, _update(shipment, "w", at(1)), at(1))
    carried = ShipmentState.model_validate_json(state.model_dump_json())
    assert (carried.applied_update_ids, carried.applied_update_at) == ([remembered("w")], at(1))
    legacy = ShipmentState.model_validate(
        {k: v for k, v in state.model_dump(mode="json").items() if not k.startswith("applied_")}
    )
    assert (legacy.applied_update_ids, legacy.applied_update_at) == ([], None)


def test_view_reflects_the_state() -> None:
    shipment = make_shipment(order_value="160")
    run = Run(shipment)
    run.feed(LABEL, exception_event(ExceptionKind.CUSTOMS_HOLD, at(1)))
    shown = view(run.state, shipment, POLICY)
    assert shown.workflow_id == f"shipment-{TRACKING_NUMBER}"
    assert shown.tracking_number == TRACKING_NUMBER
    assert shown.order_id == "1001"
    assert shown.carrier == "ups"
    assert shown.status == Phase.EXCEPTION
    assert shown.exception == ExceptionKind.CUSTOMS_HOLD
    assert shown.timeline == run.state.timeline
    assert [(n.trigger, n.channel) for n in shown.notifications] == [
        (Trigger.LABEL_CREATED, Channel.EMAIL),
        (Trigger.LABEL_CREATED, Channel.SMS),
        (Trigger.EXCEPTION, Channel.EMAIL),
        (Trigger.EXCEPTION, Channel.SMS),
    ]
    # no first carrier scan yet: the earliest armed timer is the pickup-gap alert
    # the exception scan shows the carrier has the parcel: no pickup-gap alert, lost is next
    assert shown.next_action.kind == "declare_lost"
    assert run.state.last_scan_at is not None
    assert shown.next_action.due_at == run.state.last_scan_at + POLICY.standard.lost_after
    assert shown.next_action.due_local is not None
    assert shown.next_action.due_local.endswith("EST (America/New_York)")
    assert shown.timezone == shown.next_action.timezone == "America/New_York"
    assert shown.waiting == []
    assert [(n.kind, n.detail) for n in shown.notes] == [("helpdesk", "auto_delay_notified")]
    assert shown.closed_reason is None


def test_event_for_another_tracking_number_is_not_applied() -> None:
    shipment = make_shipment()
    stray = make_event(CarrierStatus.DELIVERED, at(1), tracking_number="9400111111111111111111")
    decision = on_event(ShipmentState(), stray, shipment, POLICY, at(2))
    assert decision.sends == []
    assert decision.state == ShipmentState()


def test_ignored_pickup_still_shows_its_exception_kind_in_the_timeline() -> None:
    shipment = make_shipment()
    state = ShipmentState()
    for hour, status in enumerate([CarrierStatus.AVAILABLE_FOR_PICKUP] * 2):
        event = make_event(status, at(hour), event_id=f"p{hour}")
        state = on_event(state, event, shipment, POLICY, at(hour)).state
    assert [e.exception for e in state.timeline] == [ExceptionKind.HELD_AT_FACILITY] * 2
    assert state.timeline[1].effect == "ignored: same exception still open"


def test_a_shipments_own_time_scale_replaces_the_settings() -> None:
    """`at_time_scale` is absolute: a shipment asking for 1 under TRACKFLOW_TIME_SCALE=7 gets
    real time back, and its view then shows no time scale."""
    assert POLICY.at_time_scale(1) is POLICY
    demo = POLICY.at_time_scale(10_000)
    assert demo.standard.lost_after == timedelta(seconds=86.4)
    assert demo.time_scale == 10_000
    real = POLICY.scaled(7).at_time_scale(1)
    assert real.time_scale == 1
    assert abs(real.standard.lost_after - POLICY.standard.lost_after) < timedelta(seconds=1)
    assert view(ShipmentState(), make_shipment(), real).time_scale is None
    assert view(ShipmentState(), make_shipment(), demo).time_scale == 10_000
