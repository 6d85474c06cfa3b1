"""A frequency cap on exception messages (issue 7, hardening).

Ten events alternating weather_delay / carrier_delay used to send twenty messages in seconds.
Now: one exception message per shipment per `exception_message_min_interval` (12 h) and at
most `max_exception_messages` (3) per shipment, counted per decision (one episode, all its
channels), held ones counted when decided. Severe kinds (damaged, lost, return to sender)
always go out and still count; an escalation (a kind more severe than the last message's)
skips the interval but not the per-shipment cap. Suppressed ones are noted; the state moves on.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import ANY_TIME_POLICY, at, exception_event, make_event, make_shipment
from tests.test_policy_event_time import Run
from tests.test_policy_timers import NY, Sim, ny
from tests.test_policy_timing_properties import (
    DELAYS,
    POLICIES,
    STARTS,
    Input,
    Record,
    Story,
    Where,
    _decided_at,
    check_nothing_sent_once_obsolete,
    check_once_per_milestone_and_episode,
    customers,
    simulate,
    stories,
)
from trackflow.effects import AUTO_DELAY_NOTIFIED, LOST_PACKAGE_TAG
from trackflow.models import (
    CarrierEvent,
    CarrierStatus,
    Channel,
    ExceptionKind,
    Shipment,
    Trigger,
)
from trackflow.policy import EXCEPTION_SEVERITY, Phase, Severity, view
from trackflow.tracking_policy import TrackingPolicy

S = CarrierStatus
X = ExceptionKind
HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)
WF = "1Z999AA10123456784/1001"
PER_12H = "exception cap: at most 1 exception message per 12h"
PER_SHIPMENT = "exception cap: at most 3 exception messages per shipment"


def two_channels() -> Run:
    """Email and SMS, label and first scan done, the clock at T0 + 2 h."""
    run = Run(make_shipment(order_value="200"), start=at(0))
    run.feed(make_event(S.LABEL_CREATED, at(0), event_id="label"))
    run.feed(make_event(S.IN_TRANSIT, at(1), event_id="scan"), gap=HOUR)
    return run


def alternating(
    count: int, first: datetime, every: timedelta, tag: str = "x"
) -> list[CarrierEvent]:
    kinds = [X.WEATHER_DELAY, X.CARRIER_DELAY]
    return [
        exception_event(kinds[i % 2], first + every * i, event_id=f"{tag}-{i}")
        for i in range(count)
    ]


def exception_episodes(run: Run) -> list[str]:
    """The exception/lost episodes that reached the customer, in order (one per decision)."""
    episodes: list[str] = []
    for send in run.sends:
        if send.trigger in (Trigger.EXCEPTION, Trigger.LOST):
            episode = send.idempotency_key.rsplit(":", 1)[0]
            if episode not in episodes:
                episodes.append(episode)
    return episodes


def suppressed(run: Run) -> list[tuple[str, str]]:
    return [(n.key, n.detail) for n in run.state.notes if n.kind == "suppressed"]


# --------------------------------------------------------------------------------------
# The reported case
# --------------------------------------------------------------------------------------


def test_ten_alternating_delays_in_seconds_send_one_message() -> None:
    run = two_channels()
    run.feed(*alternating(10, at(2), SECOND), gap=SECOND)
    exceptions = [s for s in run.sends if s.trigger == Trigger.EXCEPTION]
    assert [(s.channel, s.exception, s.episode) for s in exceptions] == [
        (Channel.EMAIL, X.WEATHER_DELAY, 1),
        (Channel.SMS, X.WEATHER_DELAY, 1),
    ]
    kinds = ["weather_delay", "carrier_delay"]
    assert suppressed(run) == [
        (f"{WF}:exception:{n}-{kinds[(n - 1) % 2]}", f"{kinds[(n - 1) % 2]}: {PER_12H}")
        for n in range(2, 11)
    ]
    # the state still follows the carrier: the latest kind is the open episode
    assert run.state.phase == Phase.EXCEPTION
    assert run.state.open_exception == X.CARRIER_DELAY
    assert run.state.exception_episode == 10
    assert view(run.state, run.shipment, run.policy).exception == X.CARRIER_DELAY
    effects = [e.effect for e in run.state.timeline if e.status == S.EXCEPTION]
    assert effects == ["exception"] + [f"exception, message suppressed ({PER_12H})"] * 9
    # helpdesk tags follow the messages actually sent
    assert [t.idempotency_key for t in run.tags] == [
        f"{WF}:exception:1-weather_delay:helpdesk:{AUTO_DELAY_NOTIFIED}"
    ]


def test_alternating_delays_for_days_send_one_per_12h_and_three_in_all() -> None:
    run = two_channels()
    run.feed(*alternating(96, at(2), HOUR), gap=HOUR)  # four days, one event an hour
    assert exception_episodes(run) == [
        f"{WF}:exception:1-weather_delay",
        f"{WF}:exception:13-weather_delay",
        f"{WF}:exception:25-weather_delay",
    ]
    decided = [n.sent_at for n in run.state.notifications if n.trigger == Trigger.EXCEPTION]
    assert decided[::2] == [at(2, 1), at(14, 1), at(26, 1)]  # 12 h apart (email and SMS each)
    notes = suppressed(run)  # 93 in all: 22 inside 12 h, then 71 over the cap of 3
    # With the 3 helpdesk notes, 96 notes: the window keeps the last 60.
    assert (len(notes), run.state.notes_omitted) == (60, 36)
    assert notes[-1][1].endswith(PER_SHIPMENT)
    assert Counter(detail.split(": ", 1)[1] for _, detail in notes) == {PER_SHIPMENT: 60}
    assert len(run.tags) == 3


# --------------------------------------------------------------------------------------
# Severity: what always goes out
# --------------------------------------------------------------------------------------


def test_severity_ranking() -> None:
    assert set(EXCEPTION_SEVERITY) == set(X)
    severe = {k for k, v in EXCEPTION_SEVERITY.items() if v == Severity.SEVERE}
    assert severe == {X.DAMAGED, X.LOST, X.RETURN_TO_SENDER}
    action = {k for k, v in EXCEPTION_SEVERITY.items() if v == Severity.ACTION}
    assert action == {X.ADDRESS_ISSUE, X.FAILED_ATTEMPT, X.HELD_AT_FACILITY}
    assert Severity.DELAY < Severity.ACTION < Severity.SEVERE


@pytest.mark.parametrize(
    "severe",
    [
        exception_event(X.DAMAGED, at(90), event_id="bad"),
        exception_event(X.LOST, at(90), event_id="bad"),
        make_event(S.RETURNED, at(90), event_id="bad"),
    ],
    ids=["damaged", "lost", "returned"],
)
def test_a_severe_kind_after_the_cap_still_goes_out_and_counts(severe: CarrierEvent) -> None:
    run = two_channels()
    run.feed(*alternating(88, at(2), HOUR), gap=HOUR)
    assert len(exception_episodes(run)) == 3  # the cap is reached
    sends = run.feed(severe, gap=HOUR)
    assert [(s.trigger, s.channel) for s in sends] == [
        (Trigger.EXCEPTION, Channel.EMAIL),
        (Trigger.EXCEPTION, Channel.SMS),
    ]
    assert len(run.tags) == 4
    assert len(run.state.exception_messages) == 4


def test_a_severe_kind_goes_out_within_the_interval() -> None:
    run = two_channels()
    run.feed(exception_event(X.WEATHER_DELAY, at(2), event_id="w"), gap=SECOND)
    run.feed(exception_event(X.DAMAGED, at(2, 1), event_id="d"), gap=SECOND)
    # ... and it counts: a mere delay right after is suppressed
    run.feed(exception_event(X.CARRIER_DELAY, at(2, 2), event_id="c"), gap=SECOND)
    run.feed(exception_event(X.LOST, at(2, 3), event_id="l"), gap=SECOND)
    assert [e.rsplit(":", 1)[1] for e in exception_episodes(run)] == [
        "1-weather_delay",
        "2-damaged",
        "4-lost",
    ]
    assert suppressed(run) == [(f"{WF}:exception:3-carrier_delay", f"carrier_delay: {PER_12H}")]


def test_an_escalation_skips_the_interval_but_not_the_shipment_cap() -> None:
    run = two_channels()
    run.feed(exception_event(X.WEATHER_DELAY, at(2), event_id="w1"), gap=SECOND)
    # the customer must act now: an address issue goes out at once
    run.feed(exception_event(X.ADDRESS_ISSUE, at(2, 5), event_id="a1"), gap=SECOND)
    # as severe as the last message: the interval applies
    run.feed(exception_event(X.FAILED_ATTEMPT, at(2, 10), event_id="f1"), gap=SECOND)
    assert [e.rsplit(":", 1)[1] for e in exception_episodes(run)] == [
        "1-weather_delay",
        "2-address_issue",
    ]
    assert suppressed(run) == [(f"{WF}:exception:3-failed_attempt", f"failed_attempt: {PER_12H}")]
    run.feed(exception_event(X.CUSTOMS_HOLD, at(15), event_id="c1"), gap=13 * HOUR)
    assert len(exception_episodes(run)) == 3
    run.feed(exception_event(X.HELD_AT_FACILITY, at(15, 5), event_id="h1"), gap=SECOND)
    assert len(exception_episodes(run)) == 3
    assert suppressed(run)[-1] == (
        f"{WF}:exception:5-held_at_facility",
        f"held_at_facility: {PER_SHIPMENT}",
    )


# --------------------------------------------------------------------------------------
# Lost and stale
# --------------------------------------------------------------------------------------


def test_lost_and_stale_messages_go_out_after_the_cap() -> None:
    run = two_channels()
    run.feed(*alternating(30, at(2), HOUR), gap=HOUR)
    assert len(exception_episodes(run)) == 3
    run.feed(make_event(S.IN_TRANSIT, at(32), event_id="back"), gap=HOUR)  # recovered
    scanned = run.state.last_scan_at
    assert scanned is not None
    stale = run.tick(scanned + run.policy.standard.stale_after)
    assert [s.trigger for s in stale] == [Trigger.STALE, Trigger.STALE]  # not an exception
    lost = run.tick(scanned + run.policy.standard.lost_after)
    assert [s.trigger for s in lost] == [Trigger.LOST, Trigger.LOST]
    assert LOST_PACKAGE_TAG in {tag for t in run.tags for tag in t.all_tags}
    # the lost message counted: the next mere delay is over the cap
    assert len(run.state.exception_messages) == 4
    run.feed(exception_event(X.WEATHER_DELAY, run.now + HOUR, event_id="late"), gap=2 * HOUR)
    assert suppressed(run)[-1][1] == f"weather_delay: {PER_SHIPMENT}"


def test_a_lost_message_counts_for_the_interval() -> None:
    run = two_channels()
    scanned = run.state.last_scan_at
    assert scanned is not None
    run.tick(scanned + run.policy.standard.lost_after)
    assert len(exception_episodes(run)) == 1
    # the parcel moves again ("found again"), then a delay within 12 h of the lost message
    run.feed(make_event(S.IN_TRANSIT, run.now, event_id="found"), gap=HOUR)
    assert [s.trigger for s in run.sends[-2:]] == [Trigger.IN_TRANSIT] * 2
    run.feed(exception_event(X.WEATHER_DELAY, run.now, event_id="w"), gap=HOUR)
    assert suppressed(run) == [(f"{WF}:exception:1-weather_delay", f"weather_delay: {PER_12H}")]


# --------------------------------------------------------------------------------------
# Quiet hours: a held message counts when decided
# --------------------------------------------------------------------------------------


def test_a_held_message_counts_from_when_it_was_decided() -> None:
    sim = Sim(make_shipment(timezone=NY))
    sim.event(S.LABEL_CREATED, ny(20, 10))
    sim.event(S.IN_TRANSIT, ny(20, 11))
    assert sim.exception(X.WEATHER_DELAY, ny(20, 22)) == []  # held for the morning
    assert [s.exception for s in sim.at(ny(21, 8))] == [X.WEATHER_DELAY]
    # 11 h after the decision (though 1 h after it went out): suppressed
    assert sim.exception(X.CARRIER_DELAY, ny(21, 9)) == []
    assert [n.detail for n in sim.notes("suppressed")] == [f"carrier_delay: {PER_12H}"]
    # 12 h after the decision: a new kind goes out
    assert [s.exception for s in sim.exception(X.CUSTOMS_HOLD, ny(21, 10))] == [X.CUSTOMS_HOLD]


def test_a_held_message_superseded_before_it_went_out_gives_up_its_place() -> None:
    """At night: a weather delay is held, then a carrier delay replaces it (the held one is
    dropped as over); the customer hears about the carrier delay in the morning, once."""
    sim = Sim(make_shipment(timezone=NY))
    sim.event(S.LABEL_CREATED, ny(20, 10))
    sim.event(S.IN_TRANSIT, ny(20, 11))
    sim.exception(X.WEATHER_DELAY, ny(20, 22))
    sim.exception(X.CARRIER_DELAY, ny(20, 23))
    assert [n.key for n in sim.notes("dropped")] == [f"{WF}:exception:1-weather_delay:email"]
    assert sim.notes("suppressed") == []
    assert [s.exception for s in sim.at(ny(21, 8))] == [X.CARRIER_DELAY]
    assert [m.kind for m in sim.state.exception_messages] == [X.CARRIER_DELAY]
    # the interval runs from the carrier delay's decision (23:00)
    assert sim.exception(X.WEATHER_DELAY, ny(21, 10, 59)) == []
    assert [n.detail for n in sim.notes("suppressed")] == [f"weather_delay: {PER_12H}"]


# --------------------------------------------------------------------------------------
# The policy's fields
# --------------------------------------------------------------------------------------


def test_cap_defaults_and_scaling() -> None:
    policy = TrackingPolicy()
    assert policy.exception_message_min_interval == timedelta(hours=12)
    assert policy.max_exception_messages == 3
    fast = policy.scaled(10)
    assert fast.exception_message_min_interval == timedelta(hours=1, minutes=12)
    assert fast.max_exception_messages == 3
    assert fast.max_event_clock_skew == timedelta(days=1)  # real clocks are not scaled


def test_the_cap_comes_from_the_policy() -> None:
    loose = ANY_TIME_POLICY.model_copy(
        update={"exception_message_min_interval": timedelta(0), "max_exception_messages": 5}
    )
    run = two_channels()
    run.policy = loose
    run.feed(*alternating(10, at(2), SECOND), gap=SECOND)
    assert len(exception_episodes(run)) == 5
    assert suppressed(run)[0][1] == "carrier_delay: " + PER_SHIPMENT.replace("3", "5")
    silent = run.policy.model_copy(update={"max_exception_messages": 0})
    quiet = two_channels()
    quiet.policy = silent
    quiet.feed(exception_event(X.WEATHER_DELAY, at(2), event_id="w"))
    quiet.feed(exception_event(X.DAMAGED, at(3), event_id="d"))
    assert [e.rsplit(":", 1)[1] for e in exception_episodes(quiet)] == ["2-damaged"]


def test_an_unreachable_customer_uses_no_allowance() -> None:
    run = Run(make_shipment(email=None, sms_consent=False), start=at(0))
    run.feed(*alternating(5, at(0), SECOND), gap=SECOND)
    assert run.sends == []
    assert run.state.exception_messages == []
    assert suppressed(run) == []


# --------------------------------------------------------------------------------------
# Property: over random stories, what reached the customer respects the cap
# --------------------------------------------------------------------------------------


def _episode(key: str) -> str:
    return key.rsplit(":", 1)[0]


@st.composite
def bursty_stories(draw: st.DrawFn) -> Story:
    """A parcel in transit, then bursts of exceptions (any kind, rescans between), minutes
    or about half a day apart, received late or at night like real webhooks."""
    start = draw(st.sampled_from(STARTS)) + timedelta(minutes=draw(st.integers(0, 7 * 24 * 60)))
    occurred = start
    events = [make_event(S.LABEL_CREATED, start, event_id="label")]
    occurred += timedelta(minutes=draw(st.integers(1, 120)))
    events.append(make_event(S.IN_TRANSIT, occurred, event_id="scan"))
    for n in range(draw(st.integers(1, 14))):
        occurred += draw(
            st.one_of(
                st.integers(1, 180).map(lambda m: timedelta(minutes=m)),
                st.integers(10 * 60, 14 * 60).map(lambda m: timedelta(minutes=m)),
            )
        )
        what = draw(st.sampled_from(["exception"] * 6 + ["rescan", "pickup", "returned"]))
        if what == "exception":
            kind = draw(st.sampled_from([k for k in X if k != X.RETURN_TO_SENDER]))
            events.append(exception_event(kind, occurred, event_id=f"x-{n}"))
        elif what == "rescan":
            events.append(make_event(S.IN_TRANSIT, occurred, event_id=f"s-{n}"))
        elif what == "pickup":
            events.append(make_event(S.AVAILABLE_FOR_PICKUP, occurred, event_id=f"p-{n}"))
        else:
            events.append(make_event(S.RETURNED, occurred, event_id=f"r-{n}"))
    inputs = [
        Input(at=e.occurred_at + draw(DELAYS), kind="event", event=e, punctual=draw(st.booleans()))
        for e in events
    ]
    return Story(start=start, inputs=sorted(inputs, key=lambda i: i.at))


CAP_POLICIES = [
    *POLICIES,
    ANY_TIME_POLICY.model_copy(
        update={"exception_message_min_interval": timedelta(hours=2), "max_exception_messages": 5}
    ),
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    story=st.one_of(bursty_stories(), stories()),
    customer=customers(),
    policy=st.sampled_from(CAP_POLICIES),
)
def test_sent_exception_messages_respect_the_cap(
    story: Story, customer: tuple[Shipment, Where], policy: TrackingPolicy
) -> None:
    """Whatever arrives, and whenever: at most `max_exception_messages` non-severe exception or
    lost episodes reach the customer, a mere delay never within the interval after any other
    (by decision time), a severe kind is never suppressed; and the lifecycle invariants of
    test_policy_timing_properties still hold (one message per episode and channel, none sent
    once obsolete, held ones sent or dropped)."""
    shipment, _ = customer
    record: Record = simulate(story, shipment, policy)
    check_once_per_milestone_and_episode(record)
    check_nothing_sent_once_obsolete(record)
    decided_step = _decided_at(record)
    sent: dict[str, tuple[datetime, ExceptionKind]] = {}  # episode -> (decided, kind)
    for _, _, send in record.emitted():
        if send.trigger not in (Trigger.EXCEPTION, Trigger.LOST):
            continue
        kind = send.exception if send.trigger == Trigger.EXCEPTION else X.LOST
        assert kind is not None
        step = record.steps[decided_step[send.idempotency_key]]
        sent.setdefault(_episode(send.idempotency_key), (step.now, kind))
    episodes = sorted(sent.values(), key=lambda v: v[0])
    mild = [e for e in episodes if EXCEPTION_SEVERITY[e[1]] < Severity.SEVERE]
    assert len(mild) <= policy.max_exception_messages, episodes
    interval = policy.exception_message_min_interval
    for i, (decided, kind) in enumerate(episodes):
        if EXCEPTION_SEVERITY[kind] == Severity.DELAY:  # never an escalation
            assert all(decided - earlier >= interval for earlier, _ in episodes[:i]), episodes
    for note in record.final.notes:
        if note.kind == "suppressed":
            kind = X(note.key.rsplit(":", 1)[1].split("-", 1)[1])
            assert EXCEPTION_SEVERITY[kind] < Severity.SEVERE
            assert note.key not in sent
