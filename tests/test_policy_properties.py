"""Property tests of the pure policy: random lifecycles, duplicated and shuffled."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import ANY_TIME_POLICY, at, make_event, make_shipment
from trackflow.models import (
    CarrierEvent,
    CarrierStatus,
    ExceptionKind,
    Shipment,
    ShippingSpeed,
    Trigger,
)
from trackflow.policy import (
    Phase,
    SendNotification,
    ShipmentState,
    channels_for,
    is_finished,
    on_event,
    on_tick,
    record_sent,
)
from trackflow.tracking_policy import TrackingPolicy

POLICY = ANY_TIME_POLICY
FAST = settings(max_examples=200, deadline=None)
QUICK = settings(max_examples=100, deadline=None)  # secondary properties: keep the file < 5 s

MILESTONES = [
    CarrierStatus.LABEL_CREATED,
    CarrierStatus.IN_TRANSIT,
    CarrierStatus.OUT_FOR_DELIVERY,
    CarrierStatus.DELIVERED,
]
RANK = {Trigger(status.value): rank for rank, status in enumerate(MILESTONES)}
EXCEPTION_KINDS = [k for k in ExceptionKind if k != ExceptionKind.RETURN_TO_SENDER]
RECEIVED_FROM = at(1000)  # the fake clock of the workflow, independent of carrier times


# --------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------


@st.composite
def shipments(draw: st.DrawFn) -> Shipment:
    email = draw(st.sampled_from(["ada@example.com", None]))
    phone = draw(st.sampled_from(["+15025550123", None])) if email else "+15025550123"
    return make_shipment(
        email=email,
        phone=phone,
        sms_consent=draw(st.booleans()),
        order_value=draw(st.sampled_from(["0", "149.99", "150", "150.01", "999.99"])),
        customer_order_count=draw(st.integers(0, 5)),
        shipping_speed=draw(st.sampled_from(list(ShippingSpeed))),
    )


@st.composite
def exception_events(draw: st.DrawFn, minute: int, event_id: str | None) -> CarrierEvent:
    status = draw(
        st.sampled_from(
            [CarrierStatus.EXCEPTION] * 4
            + [CarrierStatus.AVAILABLE_FOR_PICKUP, CarrierStatus.RETURNED]
        )
    )
    kind = (
        draw(st.sampled_from([*EXCEPTION_KINDS, None]))
        if status == CarrierStatus.EXCEPTION
        else None
    )
    return make_event(status, at(minutes=minute), exception=kind, event_id=event_id)


@dataclass(frozen=True)
class Scenario:
    lifecycle: list[CarrierEvent]  # distinct events, in carrier order
    delivery: list[CarrierEvent]  # what the workflow receives: duplicated and shuffled


@st.composite
def scenarios(draw: st.DrawFn, allow_returned: bool = True) -> Scenario:
    chosen = draw(st.lists(st.sampled_from(MILESTONES), unique=True, max_size=4))
    chosen.sort(key=MILESTONES.index)
    gaps = draw(st.lists(st.integers(1, 600), min_size=len(chosen), max_size=len(chosen)))
    ids = iter(range(100))

    def event_id() -> str | None:
        return draw(st.sampled_from([f"ev-{next(ids)}", None]))

    lifecycle: list[CarrierEvent] = []
    minute = 0
    for status, gap in zip(chosen, gaps, strict=True):
        minute += gap
        lifecycle.append(make_event(status, at(minutes=minute), event_id=event_id()))
    milestones = list(lifecycle)
    # carriers scan a parcel many times: later scans repeat a milestone already reached
    for n in range(draw(st.integers(0, 3)) if milestones else 0):
        first = draw(st.sampled_from(milestones))
        later = first.occurred_at + timedelta(minutes=draw(st.integers(1, 300)))
        lifecycle.append(make_event(first.status, later, event_id=event_id(), location=f"Hub {n}"))
    # exceptions land anywhere, but mostly near a milestone (before it, or just after)
    anchors = [0, *(int((e.occurred_at - at()).total_seconds()) // 60 for e in milestones)]
    for _ in range(draw(st.integers(0, 4))):
        at_minute = max(0, draw(st.sampled_from(anchors)) + draw(st.integers(-60, 240)))
        event = draw(exception_events(at_minute, event_id()))
        if allow_returned or event.status != CarrierStatus.RETURNED:
            lifecycle.append(event)
    lifecycle.sort(key=lambda e: e.occurred_at)

    copies = (
        draw(st.lists(st.sampled_from(lifecycle), max_size=len(lifecycle) + 2)) if lifecycle else []
    )
    delivery = draw(st.permutations([*lifecycle, *copies]))
    return Scenario(lifecycle=lifecycle, delivery=list(delivery))


# --------------------------------------------------------------------------------------
# The fold
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    state: ShipmentState
    decisions: list[list[SendNotification]]  # one entry per event fed, possibly empty
    last_now: datetime
    # the exception episode open just before each event was fed (None: no open episode)
    open_before: list[ExceptionKind | None] = field(default_factory=list)

    @property
    def sends(self) -> list[SendNotification]:
        return [s for d in self.decisions for s in d]


def fold(
    events: list[CarrierEvent], shipment: Shipment, policy: TrackingPolicy = POLICY
) -> Outcome:
    state = ShipmentState()
    decisions: list[list[SendNotification]] = []
    open_before: list[ExceptionKind | None] = []
    now = RECEIVED_FROM
    for i, event in enumerate(events):
        now = RECEIVED_FROM + timedelta(minutes=i)
        open_before.append(state.open_exception)
        decision = on_event(state, event, shipment, policy, now)
        state = decision.state
        for send in decision.sends:
            state = record_sent(state, send, now)
        decisions.append(decision.sends)
    return Outcome(state=state, decisions=decisions, last_now=now, open_before=open_before)


def milestone_sends(sends: list[SendNotification]) -> list[SendNotification]:
    return [s for s in sends if s.trigger in RANK]


# --------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------


def check_no_key_sent_twice(out: Outcome) -> None:
    keys = [s.idempotency_key for s in out.sends]
    assert len(keys) == len(set(keys)), Counter(keys).most_common(3)
    # so record_sent kept every one of them, in order
    assert [n.idempotency_key for n in out.state.notifications] == keys


def check_milestones_once_per_channel(out: Outcome) -> None:
    counts = Counter((s.trigger, s.channel) for s in milestone_sends(out.sends))
    assert all(n == 1 for n in counts.values()), counts


def check_milestones_only_move_forward(out: Outcome, shipment: Shipment) -> None:
    for channel, _ in channels_for(shipment, POLICY):
        ranks = [RANK[s.trigger] for s in milestone_sends(out.sends) if s.channel == channel]
        assert ranks == sorted(set(ranks)), ranks  # strictly increasing


def check_no_exception_after_delivered(out: Outcome) -> None:
    triggers = [s.trigger for s in out.sends]
    if Trigger.DELIVERED in triggers:
        assert Trigger.EXCEPTION not in triggers[triggers.index(Trigger.DELIVERED) :]


def check_no_stale_exception(out: Outcome, delivery: list[CarrierEvent]) -> None:
    """An exception that happened before the last announced milestone is old news."""
    last_milestone_at = None
    for event, sends in zip(delivery, out.decisions, strict=True):
        if not sends:
            continue
        if sends[0].trigger == Trigger.EXCEPTION:
            assert last_milestone_at is None or event.occurred_at >= last_milestone_at
        else:
            last_milestone_at = event.occurred_at


def check_silence_after_return(out: Outcome) -> None:
    """A return to sender closes the shipment: it is the last message, and it is final."""
    returned = [i for i, s in enumerate(out.sends) if s.exception == ExceptionKind.RETURN_TO_SENDER]
    if returned:
        channels = {s.channel for s in out.sends[returned[0] :]}
        assert len(out.sends) - returned[0] == len(channels), out.sends[returned[0] :]
        assert out.state.closed_reason is not None
        assert out.state.phase == Phase.RETURNED


def check_segmented_channels(out: Outcome, shipment: Shipment) -> None:
    expected = channels_for(shipment, POLICY)
    for sends in out.decisions:
        if sends:
            assert [(s.channel, s.to) for s in sends] == expected
            assert len({(s.trigger, s.exception, s.episode) for s in sends}) == 1
    if not expected:
        assert out.sends == []


def check_one_message_per_exception_episode(out: Outcome, shipment: Shipment) -> None:
    """An exception is only announced when that kind is not already the open episode: two
    messages about the same kind need the episode closed between them (by a milestone
    advance, or by a newer scan: recovery). Episode numbers only count up, one message per
    episode and channel."""
    for sends, open_kind in zip(out.decisions, out.open_before, strict=True):
        for send in sends:
            if send.trigger == Trigger.EXCEPTION:
                assert send.exception is not None
                assert send.exception != open_kind, f"{open_kind} notified twice"
    for channel, _ in channels_for(shipment, POLICY):
        episodes = [
            s.episode for s in out.sends if s.channel == channel and s.trigger == Trigger.EXCEPTION
        ]
        assert episodes == sorted(set(episodes))


@FAST
@given(scenario=scenarios(), shipment=shipments())
def test_lifecycle_invariants(scenario: Scenario, shipment: Shipment) -> None:
    out = fold(scenario.delivery, shipment)
    check_no_key_sent_twice(out)  # (1)
    check_milestones_once_per_channel(out)  # (2)
    check_milestones_only_move_forward(out, shipment)  # (3)
    check_no_exception_after_delivered(out)  # (4)
    check_segmented_channels(out, shipment)  # (5)
    check_silence_after_return(out)
    check_no_stale_exception(out, scenario.delivery)
    check_one_message_per_exception_episode(out, shipment)
    # (6) determinism: the same sequence again gives the same state and the same sends
    again = fold(list(scenario.delivery), shipment)
    assert again.state == out.state
    assert again.decisions == out.decisions


@QUICK
@given(scenario=scenarios(), shipment=shipments())
def test_duplicates_are_no_ops(scenario: Scenario, shipment: Shipment) -> None:
    """Dropping the repeated deliveries (first one wins) changes no message."""
    seen: set[str] = set()
    deduped = []
    for event in scenario.delivery:
        if event.dedupe_key not in seen:
            seen.add(event.dedupe_key)
            deduped.append(event)
    with_dupes, without = fold(scenario.delivery, shipment), fold(deduped, shipment)
    # The same messages; when each was decided follows the deliveries' own times.
    assert _messages(with_dupes.sends) == _messages(without.sends)
    assert with_dupes.state.timeline != [] or deduped == []
    # every distinct event is in the timeline once, in occurrence order
    timeline = with_dupes.state.timeline
    assert len(timeline) == len(deduped)
    assert [e.occurred_at for e in timeline] == sorted(e.occurred_at for e in timeline)
    assert all(e.effect for e in timeline)


@QUICK
@given(scenario=scenarios(allow_returned=False), shipment=shipments())
def test_the_furthest_milestone_is_always_announced(scenario: Scenario, shipment: Shipment) -> None:
    """Whatever the order, without a return the highest milestone the carrier reported is
    sent on every channel; a delivered shipment gets its review request (unless there was
    trouble) after the hold, and finishes when the return window is over."""
    reached = [e.status for e in scenario.lifecycle if e.status in MILESTONES]
    out = fold(scenario.delivery, shipment)
    channels = [c for c, _ in channels_for(shipment, POLICY)]
    if not reached:
        assert milestone_sends(out.sends) == []
        return
    top = Trigger(max(reached, key=MILESTONES.index).value)
    assert sorted(s.channel for s in out.sends if s.trigger == top) == sorted(channels)
    hold = POLICY.timings(shipment.shipping_speed).post_delivery_hold
    if top == Trigger.DELIVERED:
        seen = out.state.delivered_seen_at
        assert seen is not None
        early = on_tick(out.state, shipment, POLICY, seen + hold - timedelta(seconds=1))
        assert early.sends == [] and early.state.review is None
        review = on_tick(early.state, shipment, POLICY, seen + hold)
        expected = [] if out.state.trouble else channels
        assert [s.channel for s in review.sends if s.trigger == Trigger.REVIEW_REQUEST] == expected
        assert review.state.review == ("skipped" if out.state.trouble else "sent")
        finish = seen + max(hold, POLICY.return_window)
        state = on_tick(review.state, shipment, POLICY, finish - timedelta(seconds=1)).state
        assert not is_finished(state)
        state = on_tick(state, shipment, POLICY, finish).state
        assert is_finished(state)
    else:
        assert not is_finished(out.state)
        later = on_tick(out.state, shipment, POLICY, out.last_now + hold * 10)
        assert not is_finished(later.state)


@QUICK
@given(scenario=scenarios(allow_returned=False), shipment=shipments())
def test_in_order_delivery_announces_every_milestone(
    scenario: Scenario, shipment: Shipment
) -> None:
    """Received in carrier order, each reported milestone is announced once, in order;
    later scans of a milestone already reached announce nothing."""
    out = fold(scenario.lifecycle, shipment)
    reported: list[str] = []
    for event in scenario.lifecycle:
        if event.status in MILESTONES and event.status.value not in reported:
            reported.append(event.status.value)
    if channels_for(shipment, POLICY):
        first_channel = channels_for(shipment, POLICY)[0][0]
        sent = [s.trigger.value for s in milestone_sends(out.sends) if s.channel == first_channel]
        assert sent == reported


@FAST
@given(
    shipment=shipments(),
    threshold=st.sampled_from([Decimal("0"), Decimal("150"), Decimal("500")]),
)
def test_channels_follow_the_segmentation_rules(shipment: Shipment, threshold: Decimal) -> None:
    policy = TrackingPolicy(sms_value_threshold=threshold)
    customer = shipment.customer
    channels = dict(channels_for(shipment, policy))
    assert ("email" in channels) == bool(customer.email)
    may_text = bool(customer.phone and customer.sms_consent)
    wants_text = shipment.order_value > threshold or not customer.email
    assert ("sms" in channels) == (may_text and wants_text)


def _messages(sends: list[SendNotification]) -> list[dict[str, object]]:
    return [send.model_dump(exclude={"decided_at", "held_until"}) for send in sends]
