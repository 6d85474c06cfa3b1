"""Property tests of the policy over time: random carrier stories, received late, duplicated and
out of order, with return requests and wake-ups in between, for customers all over the world.

The driver behaves like the workflow: before every input it lets time pass, either punctually
(waking at every `next_action` due time on the way) or late (one wake-up at the input's time: a
worker that was down); at the end it lets 45 days pass, by which time every shipment is closed.
Every step is recorded (state before and after, the decision), then the checks below read it:

(a) every message goes out inside its channel's send window in the customer's zone;
(b) at most one message per milestone / episode and channel (unique idempotency keys), one
    helpdesk tag per delay episode, alerts once;
(c) nothing is sent once obsolete (a later milestone, the episode over, the parcel moved, a
    newer scan), every held message is either sent or dropped, and dropped only for a reason;
(d) the review request never before delivery + hold, never after trouble;
plus: returns start exactly when allowed, states stay consistent, a wake-up never leaves a
timer due (no busy loop), and every shipment is closed after 45 quiet days.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Literal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import make_address, make_event, make_shipment
from trackflow.effects import AUTO_DELAY_NOTIFIED, LOST_PACKAGE_TAG, AlertKind
from trackflow.models import (
    Address,
    CarrierEvent,
    CarrierStatus,
    Channel,
    ExceptionKind,
    ReturnRequest,
    Shipment,
    ShippingSpeed,
    Trigger,
)
from trackflow.policy import (
    Decision,
    SendNotification,
    ShipmentState,
    channels_for,
    is_finished,
    next_action,
    on_event,
    on_return_request,
    on_start,
    on_tick,
    record_sent,
)
from trackflow.send_windows import is_inside, window_for
from trackflow.tracking_policy import SendWindow, TrackingPolicy

S = CarrierStatus
PROPERTIES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MILESTONES = [S.LABEL_CREATED, S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.DELIVERED]
RANK = {Trigger(status.value): rank for rank, status in enumerate(MILESTONES)}
DELAY_TRIGGERS = {Trigger.EXCEPTION, Trigger.LOST, Trigger.STALE}
DRAIN = timedelta(days=45)  # > lost_after + lost_follow_up + a night: everything has closed

# --------------------------------------------------------------------------------------
# Customers, policies, clocks
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """A customer's location, with the zone and region we expect the policy to use."""

    timezone: str | None
    address: Address | None
    zone: str | None  # None: the policy's default_timezone
    region: str | None


WHERE = [
    Where("America/New_York", None, "America/New_York", None),
    Where("America/Los_Angeles", None, "America/Los_Angeles", None),
    Where("America/St_Johns", None, "America/St_Johns", None),  # UTC-3:30, DST
    Where("Asia/Kolkata", None, "Asia/Kolkata", None),  # UTC+5:30
    Where("Asia/Kathmandu", None, "Asia/Kathmandu", None),  # UTC+5:45
    Where("Australia/Adelaide", None, "Australia/Adelaide", None),  # +9:30/+10:30, south DST
    Where("Pacific/Chatham", None, "Pacific/Chatham", None),  # +12:45/+13:45
    Where("Europe/London", None, "Europe/London", None),
    Where("Pacific/Honolulu", None, "Pacific/Honolulu", None),
    Where(None, make_address("FL"), "America/New_York", "US-FL"),  # SMS until 20:00
    Where(None, make_address("OK"), "America/Chicago", "US-OK"),  # SMS until 20:00
    Where("Asia/Tokyo", make_address("FL"), "Asia/Tokyo", "US-FL"),  # own zone, FL texting rule
    Where(None, None, None, None),  # the store's default zone
]

POLICIES = [
    TrackingPolicy(),
    TrackingPolicy(pickup_gap_customer_message=True, default_timezone="Asia/Kolkata"),
    TrackingPolicy(
        stale_message_enabled=False,
        email_window=SendWindow(start=time(9), end=time(17)),
        sms_window=SendWindow(start=time(10), end=time(19, 30)),
    ),
]

# Starts a few days before the 2026 clock changes of the zones above, and one quiet month.
STARTS = [
    datetime(2026, 3, 5, tzinfo=UTC),  # US spring forward 8 March, EU 29 March
    datetime(2026, 4, 1, tzinfo=UTC),  # Adelaide and Chatham fall back 5 April
    datetime(2026, 9, 24, tzinfo=UTC),  # Chatham 27 Sept, Adelaide 4 Oct forward
    datetime(2026, 10, 22, tzinfo=UTC),  # EU 25 October, US 1 November back
    datetime(2026, 7, 1, tzinfo=UTC),
]


@st.composite
def customers(draw: st.DrawFn) -> tuple[Shipment, Where]:
    where = draw(st.sampled_from(WHERE))
    reach = draw(st.sampled_from(["email", "email+sms", "email+sms", "sms"]))
    shipment = make_shipment(
        email=None if reach == "sms" else "ada@example.com",
        phone="+15025550123",
        sms_consent=reach != "email" or draw(st.booleans()),
        order_value=draw(st.sampled_from(["49", "200"])),
        shipping_speed=draw(st.sampled_from(list(ShippingSpeed))),
        timezone=where.timezone,
        address=where.address,
    )
    return shipment, where


# --------------------------------------------------------------------------------------
# Stories: what the carrier saw, and when (and how often) we hear about it
# --------------------------------------------------------------------------------------

Kind = Literal["event", "return", "tick"]


@dataclass(frozen=True)
class Input:
    at: datetime
    kind: Kind
    event: CarrierEvent | None = None
    request: ReturnRequest | None = None
    punctual: bool = True  # woke at every timer on the way here (False: a late worker)


@dataclass(frozen=True)
class Story:
    start: datetime
    inputs: list[Input]


def gaps() -> st.SearchStrategy[timedelta]:
    return st.one_of(
        st.integers(1, 600).map(lambda m: timedelta(minutes=m)),
        st.integers(1, 80).map(lambda h: timedelta(hours=h)),
        st.integers(2, 12).map(lambda d: timedelta(days=d, hours=d)),
    )


DELAYS = st.one_of(
    st.just(timedelta(0)),
    st.integers(1, 180).map(lambda m: timedelta(minutes=m)),
    st.integers(1, 40).map(lambda h: timedelta(hours=h)),
)


@st.composite
def carrier_events(draw: st.DrawFn, start: datetime) -> list[CarrierEvent]:
    """Carrier order: milestones only move forward, with rescans and exceptions between."""
    events: list[CarrierEvent] = []
    occurred = start + draw(st.integers(0, 120).map(lambda m: timedelta(minutes=m)))
    rank = -1
    for n in range(draw(st.integers(0, 9))):
        what = draw(
            st.sampled_from(["advance"] * 5 + ["rescan"] * 2 + ["exception"] * 2 + ["other"])
        )
        event_id = draw(st.sampled_from([f"ev-{n}", None]))
        if what == "advance" and rank < 3:
            rank = draw(st.integers(rank + 1, min(rank + 2, 3)))
            events.append(make_event(MILESTONES[rank], occurred, event_id=event_id))
        elif what == "rescan":
            status = MILESTONES[max(rank, 1)]
            events.append(make_event(status, occurred, event_id=event_id, location=f"Hub {n}"))
        elif what == "exception":
            kind = draw(st.sampled_from([*ExceptionKind, None]))
            if kind != ExceptionKind.RETURN_TO_SENDER:
                events.append(make_event(S.EXCEPTION, occurred, exception=kind, event_id=event_id))
        else:
            status = draw(st.sampled_from([S.AVAILABLE_FOR_PICKUP] * 4 + [S.RETURNED]))
            events.append(make_event(status, occurred, event_id=event_id))
        occurred += draw(gaps())
    return events


@st.composite
def stories(draw: st.DrawFn) -> Story:
    start = draw(st.sampled_from(STARTS)) + timedelta(minutes=draw(st.integers(0, 10 * 24 * 60)))
    events = draw(carrier_events(start))
    inputs: list[Input] = []
    for event in events:  # received late, sometimes twice
        received = event.occurred_at + draw(DELAYS)
        inputs.append(Input(at=received, kind="event", event=event))
        if draw(st.integers(0, 4)) == 0:
            inputs.append(Input(at=received + draw(DELAYS), kind="event", event=event))
    horizon = (events[-1].occurred_at if events else start) + timedelta(days=5)
    span = int((horizon - start).total_seconds() // 60)
    anchors = [start, *(i.at for i in inputs)]
    for _ in range(draw(st.integers(0, 3))):  # refunds and returns, some repeated, mostly
        request = ReturnRequest(  # within a few days of some carrier event (e.g. delivered)
            request_id=draw(st.sampled_from(["r-1", "r-2"])),
            kind=draw(st.sampled_from(["return", "refund"])),
        )
        at = draw(st.sampled_from(anchors)) + timedelta(minutes=draw(st.integers(0, 100 * 60)))
        inputs.append(Input(at=at, kind="return", request=request))
    for _ in range(draw(st.integers(0, 4))):  # wake-ups for no reason (a query, a restart)
        minute = draw(st.integers(0, span))
        inputs.append(Input(at=start + timedelta(minutes=minute), kind="tick"))
    inputs.sort(key=lambda i: i.at)  # stable: same-instant inputs keep their drawn order
    late = st.sampled_from([True, True, True, False])
    punctual = draw(st.lists(late, min_size=len(inputs), max_size=len(inputs)))
    inputs = [
        Input(i.at, i.kind, i.event, i.request, p) for i, p in zip(inputs, punctual, strict=True)
    ]
    return Story(start=start, inputs=inputs)


# --------------------------------------------------------------------------------------
# The driver and its record
# --------------------------------------------------------------------------------------


@dataclass
class Step:
    kind: Kind
    now: datetime
    before: ShipmentState
    after: ShipmentState
    decision: Decision
    event: CarrierEvent | None = None
    request: ReturnRequest | None = None


@dataclass
class Record:
    shipment: Shipment
    policy: TrackingPolicy
    steps: list[Step] = field(default_factory=list)

    @property
    def final(self) -> ShipmentState:
        return self.steps[-1].after

    def emitted(self) -> list[tuple[int, Step, SendNotification]]:
        return [
            (j, step, send) for j, step in enumerate(self.steps) for send in step.decision.sends
        ]


def simulate(story: Story, shipment: Shipment, policy: TrackingPolicy) -> Record:
    record = Record(shipment=shipment, policy=policy)
    state = on_start(ShipmentState(), story.start)
    now = story.start

    def apply(
        kind: Kind,
        decision: Decision,
        before: ShipmentState,
        event: CarrierEvent | None = None,
        request: ReturnRequest | None = None,
    ) -> None:
        nonlocal state
        state = decision.state
        for send in decision.sends:
            state = record_sent(state, send, now)
        record.steps.append(Step(kind, now, before, state, decision, event, request))

    def tick(at: datetime) -> None:
        nonlocal now
        now = at
        apply("tick", on_tick(state, shipment, policy, now), state)
        due = next_action(state, shipment, policy).due_at
        assert due is None or due > now, f"(e) still due after a tick: {due} <= {now}"

    def advance(to: datetime, punctual: bool) -> None:
        for _ in range(500):
            due = next_action(state, shipment, policy).due_at
            if not punctual or due is None or due > to:
                break
            tick(max(due, now))
        else:
            raise AssertionError("(e) the workflow would never sleep")
        tick(max(to, now))  # the workflow ticks on every wake-up, before its inbox

    for item in story.inputs:
        advance(item.at, item.punctual)
        if item.event is not None:
            decision = on_event(state, item.event, shipment, policy, now)
            apply("event", decision, state, event=item.event)
        elif item.request is not None:
            decision = on_return_request(state, item.request, shipment, policy, now)
            apply("return", decision, state, request=item.request)
    advance(now + DRAIN, punctual=True)
    return record


# --------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------


def check_sent_inside_the_window(record: Record, where: Where) -> None:
    """(a) Every message goes out at an instant inside its channel's window, on the wall clock
    of the customer's zone (the zone and texting region expected from `WHERE`, not computed by
    the policy)."""
    zone = where.zone or record.policy.default_timezone
    for _, step, send in record.emitted():
        window = window_for(
            send.channel, where.region, record.policy, record.policy.stricter_sms_windows
        )
        assert is_inside(step.now, zone, window), (send.idempotency_key, step.now, zone, window)


def check_once_per_milestone_and_episode(record: Record) -> None:
    """(b) Idempotency keys are unique, and per channel: each milestone at most once (plus at
    most one "found again" message per lost episode), each exception / lost / stale episode at
    most once, the review request at most once. Effects are unique too: one helpdesk tag per
    delay episode (not per channel), alerts once."""
    sends = [send for _, _, send in record.emitted()]
    keys = [s.idempotency_key for s in sends]
    assert len(keys) == len(set(keys)), Counter(keys).most_common(2)
    per: Counter[tuple[object, ...]] = Counter()
    for s in sends:
        episode = s.idempotency_key.split(":")[2]
        per[(s.trigger, episode, s.channel)] += 1
        if s.trigger in RANK and not s.revived:
            per[("milestone", s.trigger, s.channel)] += 1
        if s.trigger == Trigger.EXCEPTION:
            per[("exception", s.episode, s.channel)] += 1
        if s.trigger == Trigger.REVIEW_REQUEST:
            per[("review", s.channel)] += 1
    assert max(per.values(), default=1) == 1, per.most_common(2)
    lost_alerts = [a for st_ in record.steps for a in st_.decision.alerts if a.alert == "lost"]
    for channel in Channel:
        revived = [s for s in sends if s.revived and s.channel == channel]
        assert len(revived) <= len(lost_alerts)

    tags = [t for step in record.steps for t in step.decision.tags]
    assert len({t.idempotency_key for t in tags}) == len(tags)
    delay_episodes = {
        s.idempotency_key.rsplit(":", 1)[0] for s in sends if s.trigger in DELAY_TRIGGERS
    }
    assert sorted(t.idempotency_key for t in tags if t.tag == AUTO_DELAY_NOTIFIED) == sorted(
        f"{episode}:helpdesk:{AUTO_DELAY_NOTIFIED}" for episode in delay_episodes
    )
    lost_episodes = {e for e in delay_episodes if ":lost:" in e}
    assert len([t for t in tags if LOST_PACKAGE_TAG in t.all_tags]) == len(lost_episodes)
    alerts = [a for step in record.steps for a in step.decision.alerts]
    assert len({a.idempotency_key for a in alerts}) == len(alerts)
    assert len([a for a in alerts if a.alert == AlertKind.PICKUP_GAP]) <= 1


def _decided_at(record: Record) -> dict[str, int]:
    """The step at which each message was decided: sent at once, first held back, or dropped
    in the very wake-up that decided it."""
    decided: dict[str, int] = {}
    for j, step in enumerate(record.steps):
        for send in step.decision.sends:
            decided.setdefault(send.idempotency_key, j)
        for pending in step.after.pending:
            decided.setdefault(pending.send.idempotency_key, j)
        for note in step.after.notes[len(step.before.notes) :]:
            if note.kind == "dropped":
                decided.setdefault(note.key, j)
    return decided


def _new_scan_steps(record: Record) -> set[int]:
    """Steps that brought a carrier scan newer than every one before (duplicates excluded),
    computed from the events alone."""
    seen: set[str] = set()
    newest: datetime | None = None
    steps: set[int] = set()
    for j, step in enumerate(record.steps):
        event = step.event
        if event is None or event.dedupe_key in seen:
            continue
        seen.add(event.dedupe_key)
        if newest is None or event.occurred_at >= newest:
            newest = event.occurred_at
            steps.add(j)
    return steps


def check_nothing_sent_once_obsolete(record: Record) -> None:
    """(c) For a message decided at step i and sent at step j (i == j: sent at once):

    - milestone (incl. "found again"): the highest milestone processed did not change in
      between (`rank` after i == `rank` before j); in particular no out_for_delivery message
      is sent at or after the step that processed delivered;
    - exception: the same episode stayed open after every step in between;
    - lost: the parcel stayed lost, same episode, after every step in between;
    - stale (and the pickup-gap message): no carrier scan newer than all before it arrived in
      between (computed from the events, not from the policy's bookkeeping);
    - held across a lost declaration: only the lost message itself; held across delivery: no
      exception, stale or lost message;
    - and at the end every decided message was either sent or dropped with a note, never both;
    - conversely, a held message is only dropped when one of the above did happen between its
      decision and its release (or trouble happened, for a review request).
    """
    decided = _decided_at(record)
    new_scans = _new_scan_steps(record)
    delivered_step = next(
        (j for j, step in enumerate(record.steps) if step.after.delivered_seen_at), None
    )
    for j, step, send in record.emitted():
        i = decided[send.idempotency_key]
        between = record.steps[i + 1 : j]
        trigger = send.trigger
        if trigger in RANK:
            assert step.before.rank == record.steps[i].after.rank or i == j, send
            if not send.revived:
                assert step.before.rank <= RANK[trigger] or i == j, send
        if trigger == Trigger.OUT_FOR_DELIVERY and delivered_step is not None:
            assert j < delivered_step, "out_for_delivery sent after delivered was processed"
        # the states the held message lived through, up to its release (which sees `before`)
        held_through = [s.after for s in between] + ([step.before] if j > i else [])
        if trigger == Trigger.EXCEPTION:
            for state in held_through:
                assert state.open_exception == send.exception, send
                assert state.exception_episode == send.episode, send
        if trigger == Trigger.LOST:
            for state in held_through:
                assert state.lost and state.lost_episode == send.episode, send
        if trigger == Trigger.STALE:
            assert not new_scans & set(range(i + 1, j)), (send, i, j)
        decided_in = record.steps[i].after
        if trigger != Trigger.LOST:
            for state in held_through:
                assert state.lost_episode == decided_in.lost_episode, ("held across lost", send)
        if trigger in DELAY_TRIGGERS and decided_in.rank < RANK[Trigger.DELIVERED]:
            for state in held_through:
                assert state.rank < RANK[Trigger.DELIVERED], ("held across delivery", send)

    sent = {send.idempotency_key for _, _, send in record.emitted()}
    dropped = {n.key for n in record.final.notes if n.kind == "dropped"}
    assert not sent & dropped
    assert sent | dropped == set(decided)
    assert record.final.pending == []
    for key in dropped:
        check_dropped_for_a_reason(record, key, decided[key], new_scans)


def check_dropped_for_a_reason(record: Record, key: str, i: int, new_scans: set[int]) -> None:
    """The converse of (c): a held message decided at step i and dropped at step d is dropped
    because of something between them — an event may drop it at once (its own step counts),
    a wake-up drops it on release (the state it released from counts)."""
    d = next(j for j, step in enumerate(record.steps) if key in {n.key for n in step.after.notes})
    if d == i:  # e.g. a late wake-up: a stale check-in, then lost in the same tick
        assert record.steps[i].after.lost_episode > record.steps[i].before.lost_episode, key
        return
    [held] = [p for p in record.steps[i].after.pending if p.send.idempotency_key == key]
    send, decided, dropping = held.send, record.steps[i].after, record.steps[d]
    if dropping.kind == "tick":
        witnesses = [s.after for s in record.steps[i + 1 : d]] + [dropping.before]
        causes = set(range(i + 1, d))
    else:
        witnesses = [s.after for s in record.steps[i + 1 : d + 1]]
        causes = set(range(i + 1, d + 1))
    # a lost declaration drops what is held at once, also in the wake-up that declares it
    declared_lost = any(
        s.after.lost_episode > decided.lost_episode for s in record.steps[i + 1 : d + 1]
    )
    if send.trigger != Trigger.LOST and declared_lost:
        return
    delivered = RANK[Trigger.DELIVERED]
    if send.trigger in DELAY_TRIGGERS and decided.rank < delivered <= witnesses[-1].rank:
        return
    if send.trigger in RANK:
        assert witnesses[-1].rank > decided.rank, f"{key} dropped, nothing moved on"
    elif send.trigger == Trigger.EXCEPTION:
        assert any(
            s.open_exception != send.exception or s.exception_episode != send.episode
            for s in witnesses
        ), f"{key} dropped, the exception was still open"
    elif send.trigger == Trigger.LOST:
        assert any(not s.lost or s.lost_episode != send.episode for s in witnesses), key
    elif send.trigger == Trigger.STALE:
        assert new_scans & causes, f"{key} dropped without a new scan"
    elif send.trigger == Trigger.REVIEW_REQUEST:
        assert witnesses[-1].trouble, key


def check_review_request(record: Record) -> None:
    """(d) A review request is never sent before delivered_seen_at + post_delivery_hold, nor
    when trouble happened before it: an exception episode was open, the parcel was declared
    lost, or a refund/return was requested (a new request id) — read from the steps, not from
    `state.trouble`. Without any trouble, a delivered shipment gets it on every channel."""
    hold = record.policy.timings(record.shipment.shipping_speed).post_delivery_hold
    trouble_from: int | None = None
    seen_requests: set[str] = set()
    reviews = 0
    for j, step in enumerate(record.steps):
        for send in step.decision.sends:
            if send.trigger == Trigger.REVIEW_REQUEST:
                reviews += 1
                delivered = step.before.delivered_seen_at
                assert delivered is not None and step.now >= delivered + hold
                assert trouble_from is None, f"review sent after trouble at step {trouble_from}"
        new_request = step.request is not None and step.request.request_id not in seen_requests
        if step.request is not None:
            seen_requests.add(step.request.request_id)
        troubled = step.after.open_exception is not None or step.after.lost or new_request
        if troubled and trouble_from is None:
            trouble_from = j
    if record.final.delivered_seen_at is not None and trouble_from is None:
        assert reviews == len(channels_for(record.shipment, record.policy))


def check_consistent_states(record: Record) -> None:
    """After every step the state tells one story: an open exception episode shows as the
    exception phase (or lost, or returned: both stop the episode's own timers), the exception
    phase always has an episode, the lost phase is a lost parcel, and delivery ends any
    episode."""
    for step in record.steps:
        state = step.after
        if state.phase == "exception":
            assert state.open_exception is not None
        if state.open_exception is not None:
            assert state.phase in ("exception", "lost", "returned"), (state.phase, step.event)
        if state.phase == "lost":
            assert state.lost
        if state.delivered_seen_at is not None:
            assert state.rank == 3 and state.open_exception is None


def check_returns(record: Record) -> None:
    """A returns workflow starts exactly for a new request id, after delivery, within the
    return window; never twice for the same id."""
    started: list[str] = []
    seen: set[str] = set()
    for step in record.steps:
        if step.request is None:
            assert step.decision.returns == []
            continue
        delivered = step.before.delivered_seen_at
        expected = (
            step.request.request_id not in seen
            and delivered is not None
            and step.now - delivered <= record.policy.return_window
        )
        seen.add(step.request.request_id)
        assert bool(step.decision.returns) == expected, (step.request, step.now, delivered)
        started += [r.workflow_id for r in step.decision.returns]
    assert len(started) == len(set(started))


# --------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------


@PROPERTIES
@given(
    story=stories(),
    customer=customers(),
    policy=st.sampled_from(POLICIES),
)
def test_timing_invariants(
    story: Story, customer: tuple[Shipment, Where], policy: TrackingPolicy
) -> None:
    shipment, where = customer
    record = simulate(story, shipment, policy)
    check_sent_inside_the_window(record, where)  # (a)
    check_once_per_milestone_and_episode(record)  # (b)
    check_nothing_sent_once_obsolete(record)  # (c)
    check_review_request(record)  # (d)
    check_returns(record)
    check_consistent_states(record)
    # every shipment ends: delivered, returned, or given up as lost
    assert is_finished(record.final)
    assert record.final.closed_reason is not None
