"""The policy's timers, quiet hours and returns, driven with a fake clock (trackflow/policy.py).

`Sim` moves time forward like the workflow does: it wakes at every `next_action` due time on
the way (`on_tick`), then handles the input. Times are fixed instants in November 2026, when
New York is on EST (UTC-5) and Chicago on CST (UTC-6), so local wall-clock times are known.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import pytest

from starters.render import format_shipment
from tests.factories import (
    ANY_TIME_POLICY,
    TRACKING_NUMBER,
    local,
    make_address,
    make_event,
    make_shipment,
)
from trackflow.effects import (
    AUTO_DELAY_NOTIFIED,
    LOST_PACKAGE_TAG,
    RETURN_REQUESTED_TAG,
    AlertKind,
    RaiseAlert,
    StartReturn,
    TagHelpdesk,
)
from trackflow.models import (
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
    Phase,
    SendNotification,
    ShipmentState,
    is_finished,
    next_action,
    on_cancel,
    on_event,
    on_return_request,
    on_start,
    on_tick,
    record_sent,
    view,
)
from trackflow.returns import plan_return
from trackflow.shipment_state import Note, WaitingMessage
from trackflow.timers import TimerKind, due_timers
from trackflow.tracking_policy import SpeedTimings, TrackingPolicy

S = CarrierStatus
X = ExceptionKind
NY = "America/New_York"
CHICAGO = "America/Chicago"
LA = "America/Los_Angeles"
WF = f"{TRACKING_NUMBER}/1001"
POLICY = TrackingPolicy()  # the real send windows: 08:00-21:00, SMS 08:00-20:00 in FL/OK
SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def ny(day: int, hour: int, minute: int = 0) -> datetime:
    """New York wall-clock time on `day` November 2026 (day 31 is 1 December): all EST."""
    return local(NY, 2026, 11, 1, hour, minute) + timedelta(days=day - 1)


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 1, hour, minute, tzinfo=UTC) + timedelta(days=day - 1)


START = ny(20, 10)  # Friday 20 November 2026, 10:00 in New York


class Sim:
    """One shipment workflow, with a fake clock that only moves forward."""

    def __init__(
        self,
        shipment: Shipment | None = None,
        policy: TrackingPolicy = POLICY,
        start: datetime = START,
    ) -> None:
        self.shipment = shipment or make_shipment(timezone=NY)
        self.policy = policy
        self.now = start
        self.state = on_start(ShipmentState(), start)
        self.sent: list[tuple[datetime, SendNotification]] = []
        self.alerts: list[RaiseAlert] = []
        self.tags: list[TagHelpdesk] = []
        self.returns: list[StartReturn] = []
        self.wakes: list[datetime] = []
        self._ids = itertools.count(1)

    # -- time --------------------------------------------------------------------------

    def at(self, when: datetime) -> list[SendNotification]:
        """Advance to `when`, waking at every timer due on the way, like the workflow does;
        return what was sent meanwhile."""
        assert when >= self.now, "the fake clock only moves forward"
        new: list[SendNotification] = []
        for _ in range(1000):
            due = next_action(self.state, self.shipment, self.policy).due_at
            if due is None or due > when:
                break
            assert due >= self.now, f"timer due in the past: {due} < {self.now}"
            new += self.tick(due)
        else:  # pragma: no cover - a busy loop is a bug
            raise AssertionError("next_action keeps being due")
        new += self.tick(when)
        return new

    def tick(self, when: datetime | None = None) -> list[SendNotification]:
        """One wake-up at `when` (default: now), without the earlier ones: e.g. a late worker."""
        when = when or self.now
        assert when >= self.now, "the fake clock only moves forward"
        self.now = when
        self.wakes.append(when)
        return self._apply(on_tick(self.state, self.shipment, self.policy, when))

    # -- inputs ------------------------------------------------------------------------

    def event(
        self,
        status: CarrierStatus,
        when: datetime | None = None,
        *,
        occurred: datetime | None = None,
        exception: ExceptionKind | None = None,
        **kw: Any,
    ) -> list[SendNotification]:
        """The carrier reports `status` (occurring at `when` unless `occurred`), received at
        `when`; return the sends decided by this event alone."""
        self.at(when or self.now)
        kw.setdefault("event_id", f"e-{next(self._ids)}")
        event = make_event(status, occurred or self.now, exception=exception, **kw)
        return self.feed(event)

    def exception(self, kind: ExceptionKind, when: datetime | None = None, **kw: Any) -> Any:
        return self.event(S.EXCEPTION, when, exception=kind, **kw)

    def feed(self, event: CarrierEvent) -> list[SendNotification]:
        return self._apply(on_event(self.state, event, self.shipment, self.policy, self.now))

    def request_return(
        self,
        request_id: str,
        when: datetime | None = None,
        kind: Literal["refund", "return"] = "return",
    ) -> Decision:
        self.at(when or self.now)
        request = ReturnRequest(request_id=request_id, kind=kind)
        decision = on_return_request(self.state, request, self.shipment, self.policy, self.now)
        self._apply(decision)
        return decision

    def _apply(self, decision: Decision) -> list[SendNotification]:
        self.state = decision.state
        for send in decision.sends:
            self.state = record_sent(self.state, send, self.now)
            self.sent.append((self.now, send))
        self.alerts += decision.alerts
        self.tags += decision.tags
        self.returns += decision.returns
        return decision.sends

    # -- what happened -----------------------------------------------------------------

    def sends(self, trigger: Trigger | None = None) -> list[SendNotification]:
        return [s for _, s in self.sent if trigger is None or s.trigger == trigger]

    def sent_at(self, trigger: Trigger) -> list[tuple[datetime, Channel]]:
        return [(t, s.channel) for t, s in self.sent if s.trigger == trigger]

    def notes(self, kind: str) -> list[Note]:
        return [n for n in self.state.notes if n.kind == kind]

    def phase(self) -> Phase:  # a call, so that type checkers do not narrow it between steps
        return self.state.phase

    @property
    def finished(self) -> bool:
        return is_finished(self.state)

    @property
    def pending_keys(self) -> list[str]:
        return [p.send.idempotency_key for p in self.state.pending]

    @property
    def timer_kinds(self) -> list[str]:
        return [t.kind.value for t in due_timers(self.state, self.shipment, self.policy)]


def key(trigger: str, episode: str, channel: str = "email") -> str:
    return f"{WF}:{trigger}:{episode}:{channel}"


def tag_keys(sim: Sim) -> list[tuple[str, str]]:
    return [(tag, t.idempotency_key) for t in sim.tags for tag in t.all_tags]


def two_channels(**kw: Any) -> Shipment:
    """Above the SMS threshold, with consent: email and SMS."""
    return make_shipment(order_value="200", **{"timezone": NY, **kw})


def in_transit(sim: Sim, when: datetime | None = None) -> None:
    """Label at the start, first scan an hour later (or at `when`)."""
    sim.event(S.LABEL_CREATED, sim.now)
    sim.event(S.IN_TRANSIT, when or sim.now + HOUR)


def delivered(sim: Sim, when: datetime) -> datetime:
    in_transit(sim)
    sim.event(S.DELIVERED, when)
    assert sim.state.delivered_seen_at == when
    return when


# ======================================================================================
# After delivery: review request at the hold, completion after the return window
# ======================================================================================


@pytest.mark.parametrize(
    ("speed", "delivered_at", "review_at"),
    [
        (ShippingSpeed.STANDARD, ny(21, 10), ny(22, 10)),  # 24 h later
        (ShippingSpeed.EXPRESS, ny(21, 8, 30), ny(21, 20, 30)),  # 12 h later, inside the window
    ],
)
def test_review_request_goes_out_when_the_hold_is_over(
    speed: ShippingSpeed, delivered_at: datetime, review_at: datetime
) -> None:
    sim = Sim(make_shipment(timezone=NY, shipping_speed=speed))
    delivered(sim, delivered_at)
    assert next_action(sim.state, sim.shipment, POLICY).due_at == review_at
    assert sim.at(review_at - SECOND) == []
    assert sim.state.review is None
    assert [s.idempotency_key for s in sim.at(review_at)] == [key("review_request", "1")]
    assert sim.sent_at(Trigger.REVIEW_REQUEST) == [(review_at, Channel.EMAIL)]
    assert sim.state.review == "sent"


@pytest.mark.parametrize("speed", list(ShippingSpeed))
def test_lifecycle_completes_when_the_return_window_is_over(speed: ShippingSpeed) -> None:
    sim = Sim(make_shipment(timezone=NY, shipping_speed=speed))
    seen = delivered(sim, ny(21, 10))
    end = seen + timedelta(hours=72)
    sim.at(end - SECOND)
    assert sim.state.review == "sent"
    assert sim.state.closed_reason is None and not sim.finished
    assert next_action(sim.state, sim.shipment, POLICY).kind == "complete"
    sim.at(end)
    assert sim.state.closed_reason == "lifecycle complete"
    assert sim.finished
    assert next_action(sim.state, sim.shipment, POLICY).kind == "complete"
    assert next_action(sim.state, sim.shipment, POLICY).due_at is None
    # a late scan after completion is recorded and ignored
    assert sim.event(S.DELIVERED, end + HOUR) == []
    assert sim.state.timeline[-1].effect == "ignored: shipment lifecycle complete"


def test_review_falling_in_quiet_hours_waits_for_the_morning() -> None:
    sim = Sim(make_shipment(timezone=NY, shipping_speed=ShippingSpeed.EXPRESS))
    delivered(sim, ny(21, 10))
    assert sim.at(ny(21, 22)) == []  # the hold ends at 22:00: too late to write
    assert sim.pending_keys == [key("review_request", "1")]
    action = next_action(sim.state, sim.shipment, POLICY)
    assert TimerKind.DELIVER_HELD.value == "send_when_window_opens"
    assert action.kind == TimerKind.DELIVER_HELD
    assert action.due_at == ny(22, 8) == utc(22, 13)
    assert sim.at(ny(22, 8)) != []
    assert sim.sent_at(Trigger.REVIEW_REQUEST) == [(ny(22, 8), Channel.EMAIL)]


@pytest.mark.parametrize(
    ("trouble", "why"),
    [
        ("exception", "weather_delay"),
        ("refund", "refund requested"),
        ("return before delivery", "return requested"),
        ("lost", "lost"),
    ],
)
def test_review_is_skipped_after_trouble(trouble: str, why: str) -> None:
    sim = Sim()
    in_transit(sim)
    if trouble == "exception":
        sim.exception(X.WEATHER_DELAY, ny(20, 13))
        sim.event(S.OUT_FOR_DELIVERY, ny(21, 9))  # over, but it happened
    elif trouble == "return before delivery":
        assert sim.request_return("r-early", ny(20, 15)).returns == []
    elif trouble == "lost":
        sim.at(ny(30, 11))  # no scan for 10 days
        assert sim.phase() == Phase.LOST
        sim.event(S.OUT_FOR_DELIVERY, ny(31, 9))
    delivered_at = sim.now + HOUR
    sim.event(S.DELIVERED, delivered_at)
    if trouble == "refund":
        assert sim.request_return("r-1", delivered_at + HOUR, kind="refund").returns
    sim.at(delivered_at + timedelta(hours=72))
    assert sim.sends(Trigger.REVIEW_REQUEST) == []
    assert sim.state.review == "skipped"
    [note] = sim.notes("review")
    assert note.detail == f"skipped: {why}"
    assert note.at == delivered_at + timedelta(hours=24)
    assert sim.state.closed_reason == "lifecycle complete"


@pytest.mark.parametrize(
    ("trouble", "why"),
    [("exception", "weather_delay"), ("return before delivery", "return requested")],
)
def test_lean_lifecycles_skip_the_review_at_delivery_after_trouble_with_no_timer(
    trouble: str, why: str
) -> None:
    """Since the workflow's LEAN_PATCH: the trouble is known at delivery, so the review is
    skipped then and no hold timer is armed for it (one timer, row and upsert fewer)."""
    sim = Sim()
    sim.state = sim.state.model_copy(update={"review_skip_at_delivery": True})
    in_transit(sim)
    if trouble == "exception":
        sim.exception(X.WEATHER_DELAY, ny(20, 13))
        sim.event(S.OUT_FOR_DELIVERY, ny(21, 9))
    else:
        assert sim.request_return("r-early", ny(20, 15)).returns == []
    delivered_at = sim.now + HOUR
    sim.event(S.DELIVERED, delivered_at)

    assert sim.state.review == "skipped"
    [note] = sim.notes("review")
    assert (note.detail, note.at) == (f"skipped: {why}", delivered_at)
    action = next_action(sim.state, sim.shipment, POLICY)
    assert (action.kind, action.due_at) == ("complete", delivered_at + POLICY.return_window)
    sim.at(delivered_at + timedelta(hours=72))
    assert sim.sends(Trigger.REVIEW_REQUEST) == []
    assert sim.state.closed_reason == "lifecycle complete"


def test_review_held_overnight_is_dropped_when_a_return_is_requested() -> None:
    sim = Sim(make_shipment(timezone=NY, shipping_speed=ShippingSpeed.EXPRESS))
    delivered(sim, ny(21, 10))
    sim.at(ny(21, 22))
    assert sim.pending_keys == [key("review_request", "1")]
    assert sim.request_return("r-1", ny(21, 23)).returns
    assert sim.at(ny(22, 8)) == []
    assert sim.sends(Trigger.REVIEW_REQUEST) == []
    [dropped] = sim.notes("dropped")
    assert (dropped.key, dropped.detail) == (
        key("review_request", "1"),
        "review skipped: return requested",
    )
    assert ny(21, 23) <= dropped.at <= ny(22, 8)  # at the request, or at the latest at release


def test_a_shipment_closed_with_a_held_message_finishes_once_it_is_sent() -> None:
    sim = Sim()
    in_transit(sim)
    assert sim.event(S.RETURNED, ny(20, 22)) == []
    assert sim.state.closed_reason == "returned to sender"
    assert sim.pending_keys == [key("exception", "1-return_to_sender")]
    assert not sim.finished  # the message still has to go out
    sim.at(ny(21, 8))
    assert [s.exception for s in sim.sends(Trigger.EXCEPTION)] == [X.RETURN_TO_SENDER]
    assert sim.finished


def test_cancel_drops_held_messages_and_finishes() -> None:
    sim = Sim()
    sim.event(S.LABEL_CREATED, ny(20, 22))
    assert sim.pending_keys == [key("label_created", "1")]
    sim.state = on_cancel(sim.state, "order refunded")
    assert sim.state.pending == []
    assert sim.finished
    assert sim.at(ny(25, 12)) == []
    assert sim.alerts == []


# ======================================================================================
# Lost: no newer carrier scan for lost_after
# ======================================================================================


@pytest.mark.parametrize(
    ("speed", "lost_after"),
    [(ShippingSpeed.STANDARD, timedelta(days=10)), (ShippingSpeed.EXPRESS, timedelta(days=5))],
)
def test_declared_lost_after_lost_after_without_a_newer_scan(
    speed: ShippingSpeed, lost_after: timedelta
) -> None:
    sim = Sim(two_channels(shipping_speed=speed))
    in_transit(sim, ny(20, 11))
    lost_at = ny(20, 11) + lost_after
    sim.at(lost_at - SECOND)
    assert sim.phase() == Phase.IN_TRANSIT
    assert sim.alerts == [] and sim.sends(Trigger.LOST) == []
    tags_before = len(sim.tags)

    sent = sim.at(lost_at)
    assert [(s.trigger, s.channel) for s in sent] == [
        (Trigger.LOST, Channel.EMAIL),
        (Trigger.LOST, Channel.SMS),
    ]
    assert [s.idempotency_key for s in sent] == [key("lost", "1"), key("lost", "1", "sms")]
    assert {s.episode for s in sent} == {1}
    assert sim.phase() == Phase.LOST
    assert sim.state.lost_since == lost_at
    assert "lost" in sim.state.trouble
    [alert] = sim.alerts
    assert (alert.alert, alert.idempotency_key) == (AlertKind.LOST, f"{WF}:alert:lost:1")
    assert alert.raised_at == lost_at
    # one tag of each per episode, not one per channel
    assert tag_keys(sim)[tags_before:] == [
        (AUTO_DELAY_NOTIFIED, f"{WF}:lost:1:helpdesk:{AUTO_DELAY_NOTIFIED}"),
        (LOST_PACKAGE_TAG, f"{WF}:lost:1:helpdesk:{AUTO_DELAY_NOTIFIED}"),
    ]
    # nothing more while it stays lost
    sim.at(lost_at + timedelta(days=20))
    assert len(sim.alerts) == 1 and len(sim.sends(Trigger.LOST)) == 2


def test_lost_is_counted_from_the_start_when_there_was_never_a_scan() -> None:
    sim = Sim()
    assert next_action(sim.state, sim.shipment, POLICY).kind == "pickup_gap_alert"
    sim.at(START + timedelta(days=10) - SECOND)
    assert [a.alert for a in sim.alerts] == [AlertKind.PICKUP_GAP]
    sim.at(START + timedelta(days=10))
    assert [a.alert for a in sim.alerts] == [AlertKind.PICKUP_GAP, AlertKind.LOST]
    assert sim.phase() == Phase.LOST
    assert sim.sent_at(Trigger.LOST) == [(START + timedelta(days=10), Channel.EMAIL)]


def test_a_later_scan_revives_a_lost_parcel_and_rearms_the_timer() -> None:
    sim = Sim()
    in_transit(sim, ny(20, 11))
    sim.at(ny(30, 11))
    assert sim.phase() == Phase.LOST
    revived = sim.event(S.IN_TRANSIT, ny(31, 9), location="Memphis, TN")
    assert [(s.trigger, s.revived, s.idempotency_key) for s in revived] == [
        (Trigger.IN_TRANSIT, True, key("in_transit", "revived-1"))
    ]
    assert revived[0].event_location == "Memphis, TN"
    assert sim.phase() == Phase.IN_TRANSIT
    assert not sim.state.lost
    assert sim.timer_kinds == ["stale_check_in", "declare_lost"]
    assert due_timers(sim.state, sim.shipment, POLICY)[1].due_at == ny(41, 9)
    # lost again: a new episode, with its own keys
    sim.at(ny(41, 9))
    assert [s.idempotency_key for s in sim.sends(Trigger.LOST)] == [
        key("lost", "1"),
        key("lost", "2"),
    ]
    assert [a.idempotency_key for a in sim.alerts] == [f"{WF}:alert:lost:1", f"{WF}:alert:lost:2"]
    lost_tags = [k for t, k in tag_keys(sim) if t == LOST_PACKAGE_TAG]
    assert lost_tags == [
        f"{WF}:lost:1:helpdesk:{AUTO_DELAY_NOTIFIED}",
        f"{WF}:lost:2:helpdesk:{AUTO_DELAY_NOTIFIED}",
    ]


def test_a_revival_that_is_a_new_milestone_sends_only_that_milestone() -> None:
    sim = Sim()
    in_transit(sim, ny(20, 11))
    sim.at(ny(30, 11))
    sent = sim.event(S.OUT_FOR_DELIVERY, ny(31, 9))
    assert [(s.trigger, s.revived) for s in sent] == [(Trigger.OUT_FOR_DELIVERY, False)]
    assert sim.phase() == Phase.OUT_FOR_DELIVERY
    assert not sim.state.lost


def test_an_older_scan_arriving_late_does_not_revive() -> None:
    sim = Sim()
    in_transit(sim, ny(20, 11))
    sim.at(ny(30, 11))
    assert sim.event(S.IN_TRANSIT, ny(31, 9), occurred=ny(20, 10, 30)) == []
    assert sim.phase() == Phase.LOST
    assert sim.state.lost


def test_a_lost_parcel_is_watched_for_lost_follow_up_then_closed() -> None:
    sim = Sim()
    in_transit(sim, ny(20, 11))
    sim.at(ny(30, 11))
    action = next_action(sim.state, sim.shipment, POLICY)
    assert (action.kind, action.due_at) == ("complete", ny(30, 11) + timedelta(days=30))
    sim.at(ny(30, 11) + timedelta(days=30))
    assert sim.state.closed_reason == "stopped watching a lost parcel"
    assert sim.finished


def test_a_lost_message_held_overnight_is_dropped_when_the_parcel_moves() -> None:
    sim = Sim()
    sim.event(S.LABEL_CREATED)
    sim.event(S.IN_TRANSIT, ny(20, 22))  # late scan: its message waits for 08:00
    sim.at(ny(30, 22))
    assert sim.phase() == Phase.LOST
    assert [a.raised_at for a in sim.alerts] == [ny(30, 22)]  # ops are told at once
    assert sim.pending_keys == [key("lost", "1")]
    assert sim.event(S.IN_TRANSIT, ny(31, 6)) == []  # moving again, still before 08:00
    # the held lost message is dropped at once; the "found again" one waits for 08:00
    assert sim.pending_keys == [key("in_transit", "revived-1")]
    [dropped] = sim.notes("dropped")
    assert (dropped.key, dropped.detail, dropped.at) == (
        key("lost", "1"),
        "the parcel moved again",
        ny(31, 6),
    )
    sent = sim.at(ny(31, 8))
    assert [s.idempotency_key for s in sent] == [key("in_transit", "revived-1")]
    assert sim.sends(Trigger.LOST) == []
    # the lost message never went out: no lost tags
    assert LOST_PACKAGE_TAG not in [t for t, _ in tag_keys(sim)]


def test_a_revival_held_overnight_is_sent_even_when_out_for_delivery() -> None:
    """Regression: the "found again" message is an in_transit message; when the parcel was
    already out for delivery it was held overnight and then dropped as "a later milestone
    (out_for_delivery) was reached", though nothing had happened since it was decided."""
    sim = Sim()
    in_transit(sim, ny(20, 11))
    sim.event(S.OUT_FOR_DELIVERY, ny(21, 9))
    sim.at(ny(31, 9))
    assert sim.phase() == Phase.LOST
    assert sim.event(S.OUT_FOR_DELIVERY, ny(31, 23)) == []  # scanned again, late at night
    assert sim.pending_keys == [key("in_transit", "revived-1")]
    sent = sim.at(ny(32, 8))
    assert [(s.idempotency_key, s.revived) for s in sent] == [
        (key("in_transit", "revived-1"), True)
    ]
    assert sim.notes("dropped") == []


def test_a_held_revival_is_dropped_when_the_next_milestone_arrives() -> None:
    sim = Sim()
    in_transit(sim, ny(20, 11))
    sim.at(ny(30, 11))
    sim.event(S.IN_TRANSIT, ny(30, 23))
    assert sim.pending_keys == [key("in_transit", "revived-1")]
    sim.event(S.OUT_FOR_DELIVERY, ny(31, 6))
    sim.at(ny(31, 8))
    assert [s.trigger for s in sim.sends()][-1:] == [Trigger.OUT_FOR_DELIVERY]
    assert not any(s.revived for s in sim.sends())
    assert [n.key for n in sim.notes("dropped")] == [key("in_transit", "revived-1")]


@pytest.mark.parametrize("scanned", [ny(31, 9), ny(20, 12)], ids=["later", "same-instant"])
def test_a_revival_closes_an_exception_left_open(scanned: datetime) -> None:
    """Regression: lost while an exception was open, then found again by the newest scan
    (occurring after the exception, or at the same carrier instant): the phase went back to
    in_transit but the exception stayed open, so no stale check-in was ever armed again and
    the same exception kind later was ignored as "still open"."""
    sim = Sim()
    in_transit(sim, ny(20, 11))
    sim.exception(X.CARRIER_DELAY, ny(20, 12))
    sim.at(ny(30, 12))
    assert sim.phase() == Phase.LOST
    found = sim.event(S.IN_TRANSIT, ny(31, 9), occurred=scanned)
    assert [s.revived for s in found] == [True]
    assert sim.phase() == Phase.IN_TRANSIT
    assert sim.state.open_exception is None
    assert sim.timer_kinds == ["stale_check_in", "declare_lost"]
    again = sim.exception(X.CARRIER_DELAY, ny(31, 12))
    assert [s.idempotency_key for s in again] == [key("exception", "2-carrier_delay")]


# ======================================================================================
# Stale: in transit or out for delivery, no update for stale_after
# ======================================================================================


@pytest.mark.parametrize("status", [S.IN_TRANSIT, S.OUT_FOR_DELIVERY])
def test_one_stale_message_per_stale_episode(status: CarrierStatus) -> None:
    sim = Sim()
    sim.event(S.LABEL_CREATED)
    sim.event(status, ny(20, 11))
    assert sim.at(ny(23, 11) - SECOND) == []
    sent = sim.at(ny(23, 11))
    assert [(s.idempotency_key, s.episode) for s in sent] == [(key("stale", "1"), 1)]
    assert sim.at(ny(25, 11)) == []  # still no scan: no second message
    assert tag_keys(sim) == [(AUTO_DELAY_NOTIFIED, f"{WF}:stale:1:helpdesk:{AUTO_DELAY_NOTIFIED}")]
    # a new scan re-arms it: a new episode, its own key, its own tag
    sim.event(status, ny(25, 12))
    assert sim.at(ny(28, 12) - SECOND) == []
    assert [s.idempotency_key for s in sim.at(ny(28, 12))] == [key("stale", "2")]
    assert [k for _, k in tag_keys(sim)] == [
        f"{WF}:stale:1:helpdesk:{AUTO_DELAY_NOTIFIED}",
        f"{WF}:stale:2:helpdesk:{AUTO_DELAY_NOTIFIED}",
    ]


def test_express_goes_stale_after_a_day() -> None:
    sim = Sim(make_shipment(timezone=NY, shipping_speed=ShippingSpeed.EXPRESS))
    in_transit(sim, ny(20, 11))
    assert sim.at(ny(21, 11) - SECOND) == []
    assert [s.trigger for s in sim.at(ny(21, 11))] == [Trigger.STALE]


def test_no_stale_message_while_an_exception_is_open() -> None:
    sim = Sim()
    in_transit(sim, ny(20, 11))
    sim.exception(X.CUSTOMS_HOLD, ny(20, 12))
    assert sim.timer_kinds == ["declare_lost"]
    sim.at(ny(30, 12) - SECOND)
    assert sim.sends(Trigger.STALE) == []


def test_no_stale_message_before_the_first_scan() -> None:
    sim = Sim()
    sim.event(S.LABEL_CREATED)
    assert sim.timer_kinds == ["pickup_gap_alert", "declare_lost"]
    sim.at(START + timedelta(days=10) - SECOND)
    assert sim.sends(Trigger.STALE) == []


def test_stale_message_can_be_turned_off() -> None:
    sim = Sim(policy=TrackingPolicy(stale_message_enabled=False))
    in_transit(sim, ny(20, 11))
    assert sim.timer_kinds == ["declare_lost"]
    sim.at(ny(30, 11) - SECOND)
    assert sim.sends(Trigger.STALE) == [] and sim.tags == []


def test_a_held_stale_message_is_dropped_when_a_new_scan_arrives() -> None:
    sim = Sim()
    sim.event(S.LABEL_CREATED)
    sim.event(S.IN_TRANSIT, ny(20, 22))
    sim.at(ny(23, 22))
    assert sim.pending_keys == [key("stale", "1")]
    sim.event(S.IN_TRANSIT, ny(24, 7))  # a new scan before the window opens
    assert sim.pending_keys == []
    assert sim.at(ny(24, 8)) == []
    assert sim.sends(Trigger.STALE) == []
    [dropped] = sim.notes("dropped")
    assert (dropped.key, dropped.detail, dropped.at) == (
        key("stale", "1"),
        "a new carrier scan arrived",
        ny(24, 7),
    )
    assert sim.tags == []


def test_a_held_stale_message_without_a_new_scan_goes_out_in_the_morning() -> None:
    sim = Sim()
    sim.event(S.LABEL_CREATED)
    sim.event(S.IN_TRANSIT, ny(20, 22))
    sim.at(ny(24, 8))
    assert sim.sent_at(Trigger.STALE) == [(ny(24, 8), Channel.EMAIL)]
    assert len(sim.tags) == 1


# ======================================================================================
# Pickup gap: no first carrier scan within pickup_gap of the label
# ======================================================================================


def test_pickup_gap_raises_one_alert_and_no_customer_message() -> None:
    sim = Sim()
    sim.event(S.LABEL_CREATED)
    sim.at(ny(22, 10) - SECOND)
    assert sim.alerts == []
    assert sim.at(ny(22, 10)) == []
    [alert] = sim.alerts
    assert alert.alert == AlertKind.PICKUP_GAP
    assert alert.idempotency_key == f"{WF}:alert:pickup_gap:0"
    assert alert.raised_at == ny(22, 10)
    assert "no first carrier scan" in alert.summary
    assert sim.state.pickup_gap_alerted
    assert [n.kind for n in sim.notes("alert")] == ["alert"]
    sim.at(ny(29, 10))
    assert len(sim.alerts) == 1
    assert sim.sends(Trigger.STALE) == [] and sim.tags == []


def test_pickup_gap_customer_message_when_the_policy_asks_for_it() -> None:
    sim = Sim(policy=TrackingPolicy(pickup_gap_customer_message=True))
    sim.event(S.LABEL_CREATED)
    sent = sim.at(ny(22, 10))
    assert [(s.trigger, s.idempotency_key) for s in sent] == [
        (Trigger.STALE, key("stale", "pickup-gap"))
    ]
    assert [a.alert for a in sim.alerts] == [AlertKind.PICKUP_GAP]
    assert tag_keys(sim) == [
        (AUTO_DELAY_NOTIFIED, f"{WF}:stale:pickup-gap:helpdesk:{AUTO_DELAY_NOTIFIED}")
    ]


def test_express_pickup_gap_is_a_day() -> None:
    sim = Sim(make_shipment(timezone=NY, shipping_speed=ShippingSpeed.EXPRESS))
    sim.event(S.LABEL_CREATED)
    sim.at(ny(21, 10) - SECOND)
    assert sim.alerts == []
    sim.at(ny(21, 10))
    assert [a.alert for a in sim.alerts] == [AlertKind.PICKUP_GAP]


def test_a_first_scan_in_time_means_no_pickup_gap_alert() -> None:
    sim = Sim()
    sim.event(S.LABEL_CREATED)
    sim.event(S.IN_TRANSIT, ny(22, 9))
    assert "pickup_gap_alert" not in sim.timer_kinds
    sim.at(ny(25, 9) - SECOND)
    assert sim.alerts == []


# ======================================================================================
# Exception episodes and helpdesk tags
# ======================================================================================


def test_each_exception_episode_notifies_once_and_tags_once() -> None:
    sim = Sim(two_channels())
    in_transit(sim)
    weather = sim.exception(X.WEATHER_DELAY, ny(20, 13))
    assert [(s.channel, s.episode) for s in weather] == [(Channel.EMAIL, 1), (Channel.SMS, 1)]
    assert sim.exception(X.WEATHER_DELAY, ny(20, 15)) == []  # the same episode
    address = sim.exception(X.ADDRESS_ISSUE, ny(20, 16))  # another kind: a new episode
    assert [(s.exception, s.episode) for s in address] == [(X.ADDRESS_ISSUE, 2)] * 2
    assert tag_keys(sim) == [
        (AUTO_DELAY_NOTIFIED, f"{WF}:exception:1-weather_delay:helpdesk:{AUTO_DELAY_NOTIFIED}"),
        (AUTO_DELAY_NOTIFIED, f"{WF}:exception:2-address_issue:helpdesk:{AUTO_DELAY_NOTIFIED}"),
    ]
    assert [n.key for n in sim.notes("helpdesk")] == [k for _, k in tag_keys(sim)]


def test_milestone_messages_are_not_tagged() -> None:
    sim = Sim(two_channels())
    delivered(sim, ny(21, 10))
    sim.at(ny(25, 10))
    assert sim.tags == []


def test_unreachable_customer_gets_no_messages_and_no_tags() -> None:
    shipment = make_shipment(timezone=NY, email=None, sms_consent=False)
    sim = Sim(shipment)
    in_transit(sim)
    sim.exception(X.DAMAGED, ny(20, 13))
    sim.at(ny(30, 13))
    assert sim.sent == [] and sim.tags == []
    assert [a.alert for a in sim.alerts] == [AlertKind.LOST]  # ops still hear about it


def test_recovery_updates_the_eta_without_a_message_and_drops_the_held_exception() -> None:
    sim = Sim()
    in_transit(sim)
    assert sim.exception(X.WEATHER_DELAY, ny(20, 22)) == []
    assert sim.pending_keys == [key("exception", "1-weather_delay")]
    scan = sim.event(S.IN_TRANSIT, ny(21, 6), estimated_delivery=date(2026, 11, 24))
    assert scan == []
    assert sim.state.open_exception is None
    assert sim.phase() == Phase.IN_TRANSIT
    assert sim.state.estimated_delivery == date(2026, 11, 24)
    assert sim.at(ny(21, 8)) == []
    [dropped] = sim.notes("dropped")
    assert (dropped.key, dropped.detail) == (
        key("exception", "1-weather_delay"),
        "the exception is over",
    )
    assert sim.tags == []


def test_a_held_exception_is_dropped_when_another_kind_replaces_it() -> None:
    sim = Sim()
    in_transit(sim)
    sim.exception(X.WEATHER_DELAY, ny(20, 22))
    sim.exception(X.ADDRESS_ISSUE, ny(20, 23))
    sent = sim.at(ny(21, 8))
    assert [s.exception for s in sent] == [X.ADDRESS_ISSUE]
    assert [n.key for n in sim.notes("dropped")] == [key("exception", "1-weather_delay")]


def test_a_held_exception_is_dropped_when_the_parcel_goes_out_for_delivery() -> None:
    sim = Sim()
    in_transit(sim)
    sim.exception(X.FAILED_ATTEMPT, ny(20, 22))
    sim.event(S.OUT_FOR_DELIVERY, ny(21, 7))
    sent = sim.at(ny(21, 8))
    assert [s.trigger for s in sent] == [Trigger.OUT_FOR_DELIVERY]
    assert [n.detail for n in sim.notes("dropped")] == ["the exception is over"]


def test_a_message_split_by_the_sms_window_is_tagged_once() -> None:
    sim = Sim(two_channels(timezone=None, address=make_address("FL")))
    in_transit(sim)
    sent = sim.exception(X.CARRIER_DELAY, ny(20, 20, 30))
    assert [s.channel for s in sent] == [Channel.EMAIL]
    assert len(sim.tags) == 1
    assert [s.channel for s in sim.at(ny(21, 8))] == [Channel.SMS]
    assert len(sim.tags) == 1


# ======================================================================================
# Quiet hours: the customer's local send window
# ======================================================================================


@pytest.mark.parametrize(("hour", "minute"), [(8, 0), (12, 0), (20, 59)])
def test_inside_the_window_a_message_goes_at_once(hour: int, minute: int) -> None:
    sim = Sim(start=ny(20, hour, minute))
    assert [s.trigger for s in sim.event(S.LABEL_CREATED)] == [Trigger.LABEL_CREATED]
    assert sim.state.pending == []


@pytest.mark.parametrize(
    ("received", "due"),
    [
        (ny(20, 21), ny(21, 8)),
        (ny(20, 23, 30), ny(21, 8)),
        (ny(21, 3), ny(21, 8)),
        (ny(21, 7, 59), ny(21, 8)),
    ],
)
def test_outside_the_window_a_message_waits_for_it_to_open(
    received: datetime, due: datetime
) -> None:
    sim = Sim(start=received)
    assert sim.event(S.LABEL_CREATED) == []
    [held] = sim.state.pending
    assert (held.due_at, held.decided_at) == (due, received)
    assert sim.at(due - SECOND) == []
    assert [s.trigger for s in sim.at(due)] == [Trigger.LABEL_CREATED]
    assert sim.state.pending == []


def test_next_action_shows_the_held_message_in_utc_and_local_time() -> None:
    sim = Sim(two_channels())
    sim.event(S.LABEL_CREATED, ny(20, 21, 30))
    action = next_action(sim.state, sim.shipment, POLICY)
    assert action.kind == "send_when_window_opens"
    assert action.due_at == datetime(2026, 11, 21, 13, 0, tzinfo=UTC)
    assert action.due_local == "2026-11-21 08:00 EST (America/New_York)"
    assert action.timezone == NY
    assert action.detail is not None and "quiet hours" in action.detail
    shown = view(sim.state, sim.shipment, POLICY)
    assert shown.timezone == NY
    assert [(w.send.channel, w.due_at) for w in shown.waiting] == [
        (Channel.EMAIL, utc(21, 13)),
        (Channel.SMS, utc(21, 13)),
    ]


def test_next_action_local_time_is_in_the_customers_zone() -> None:
    sim = Sim(make_shipment(timezone=LA), start=local(LA, 2026, 11, 20, 22))
    sim.event(S.LABEL_CREATED)
    action = next_action(sim.state, sim.shipment, POLICY)
    assert action.due_at == utc(21, 16)  # 08:00 PST
    assert action.due_local == "2026-11-21 08:00 PST (America/Los_Angeles)"
    assert action.timezone == LA


@pytest.mark.parametrize(
    ("state", "zone"),
    [("FL", NY), ("OK", CHICAGO)],
)
def test_florida_and_oklahoma_texts_stop_at_eight_while_email_goes_until_nine(
    state: str, zone: str
) -> None:
    sim = Sim(
        two_channels(timezone=None, address=make_address(state)),
        start=local(zone, 2026, 11, 20, 19, 59),
    )
    assert [s.channel for s in sim.event(S.LABEL_CREATED)] == [Channel.EMAIL, Channel.SMS]
    sent = sim.event(S.IN_TRANSIT, local(zone, 2026, 11, 20, 20))
    assert [s.channel for s in sent] == [Channel.EMAIL]
    assert [(p.send.channel, p.due_at) for p in sim.state.pending] == [
        (Channel.SMS, local(zone, 2026, 11, 21, 8))
    ]
    assert view(sim.state, sim.shipment, POLICY).timezone == zone
    sim.at(local(zone, 2026, 11, 21, 8))
    assert sim.sent_at(Trigger.IN_TRANSIT) == [
        (local(zone, 2026, 11, 20, 20), Channel.EMAIL),
        (local(zone, 2026, 11, 21, 8), Channel.SMS),
    ]


def test_elsewhere_texts_go_until_nine() -> None:
    sim = Sim(two_channels(timezone=None, address=make_address("NY")))
    sent = sim.event(S.LABEL_CREATED, ny(20, 20, 30))
    assert [s.channel for s in sent] == [Channel.EMAIL, Channel.SMS]


def test_the_stricter_sms_windows_come_from_the_policy() -> None:
    lenient = TrackingPolicy(stricter_sms_windows={})
    sim = Sim(two_channels(timezone=None, address=make_address("FL")), policy=lenient)
    sent = sim.event(S.LABEL_CREATED, ny(20, 20, 30))
    assert [s.channel for s in sent] == [Channel.EMAIL, Channel.SMS]


@pytest.mark.parametrize(
    ("timezone", "address", "default", "zone"),
    [
        (LA, make_address("FL"), NY, LA),  # the customer's own zone wins
        (None, make_address("CA"), NY, LA),  # else the address's state
        (None, make_address(None, "JP"), NY, "Asia/Tokyo"),  # else its country
        (None, None, "Europe/Berlin", "Europe/Berlin"),  # else the store's default
        ("Not/A_Zone", None, CHICAGO, CHICAGO),  # an unknown customer zone is ignored
    ],
)
def test_which_time_zone_the_send_window_uses(
    timezone: str | None, address: Any, default: str, zone: str
) -> None:
    policy = TrackingPolicy(default_timezone=default)
    shipment = make_shipment(timezone=timezone, address=address)
    sim = Sim(shipment, policy=policy, start=local(zone, 2026, 11, 20, 21, 30))
    assert sim.event(S.LABEL_CREATED) == []  # 21:30 there: too late
    assert sim.state.pending[0].due_at == local(zone, 2026, 11, 21, 8)
    assert view(sim.state, shipment, policy).timezone == zone
    assert next_action(sim.state, shipment, policy).due_local == (
        f"2026-11-21 08:00 {sim.state.pending[0].due_at.astimezone(_tz(zone)):%Z} ({zone})"
    )


def _tz(zone: str) -> Any:
    import pytz

    return pytz.timezone(zone)


def test_a_late_wake_after_the_window_closed_again_holds_the_message_another_night() -> None:
    sim = Sim()
    sim.event(S.LABEL_CREATED, ny(20, 22))
    assert sim.tick(ny(21, 21, 30)) == []  # the worker was down all day
    assert [p.due_at for p in sim.state.pending] == [ny(22, 8)]
    assert [s.trigger for s in sim.at(ny(22, 8))] == [Trigger.LABEL_CREATED]


def test_always_open_windows_never_hold_anything() -> None:
    sim = Sim(policy=ANY_TIME_POLICY, start=ny(20, 3))
    assert [s.trigger for s in sim.event(S.LABEL_CREATED)] == [Trigger.LABEL_CREATED]
    assert sim.state.pending == []


# ======================================================================================
# "Arrives today": out for delivery and the send window
# ======================================================================================


def test_out_for_delivery_before_the_window_opens_waits_for_it() -> None:
    sim = Sim()
    in_transit(sim)
    assert sim.event(S.OUT_FOR_DELIVERY, ny(21, 6, 30)) == []
    assert sim.at(ny(21, 8)) != []
    assert sim.sent_at(Trigger.OUT_FOR_DELIVERY) == [(ny(21, 8), Channel.EMAIL)]


def test_out_for_delivery_inside_the_window_goes_at_once() -> None:
    sim = Sim()
    in_transit(sim)
    assert [s.trigger for s in sim.event(S.OUT_FOR_DELIVERY, ny(21, 11))] == [
        Trigger.OUT_FOR_DELIVERY
    ]


@pytest.mark.parametrize("delivered_at", [ny(21, 22, 15), ny(22, 7, 30)])
def test_out_for_delivery_after_the_window_is_skipped_once_delivered(
    delivered_at: datetime,
) -> None:
    sim = Sim()
    in_transit(sim)
    sim.event(S.OUT_FOR_DELIVERY, ny(21, 21, 30))
    sim.event(S.DELIVERED, delivered_at)
    # dropped as soon as delivery is known, not when the window opens
    assert sim.pending_keys == [key("delivered", "1")]
    [dropped] = sim.notes("dropped")
    assert dropped.key == key("out_for_delivery", "1")
    assert dropped.detail == "a later milestone (delivered) was reached"
    assert dropped.at == delivered_at
    sent = sim.at(ny(22, 8))
    assert [s.trigger for s in sent] == [Trigger.DELIVERED]
    assert sim.sends(Trigger.OUT_FOR_DELIVERY) == []


def test_out_for_delivery_after_the_window_goes_in_the_morning_if_not_delivered_yet() -> None:
    sim = Sim()
    in_transit(sim)
    sim.event(S.OUT_FOR_DELIVERY, ny(21, 21, 30))
    sim.event(S.DELIVERED, ny(22, 10))
    assert sim.sent_at(Trigger.OUT_FOR_DELIVERY) == [(ny(22, 8), Channel.EMAIL)]
    assert sim.sent_at(Trigger.DELIVERED) == [(ny(22, 10), Channel.EMAIL)]


# ======================================================================================
# Returns and refunds after delivery
# ======================================================================================


def test_a_return_within_the_window_starts_the_returns_workflow_once() -> None:
    sim = Sim()
    seen = delivered(sim, ny(21, 10))
    decision = sim.request_return("r-1", seen + timedelta(hours=30))
    [start] = decision.returns
    assert start.workflow_id == f"return-{TRACKING_NUMBER}-1001-r-1"
    assert start.request.request_id == "r-1"
    assert [(n.kind, n.key) for n in sim.notes("return_started")] == [
        ("return_started", start.workflow_id)
    ]
    assert sim.state.trouble == ["return requested"]
    before = sim.state
    duplicate = sim.request_return("r-1", seen + timedelta(hours=31))
    assert duplicate.returns == [] and duplicate.sends == [] and duplicate.tags == []
    assert sim.state == before
    second = sim.request_return("r-2", seen + timedelta(hours=32), kind="refund")
    assert [r.workflow_id for r in second.returns] == [f"return-{TRACKING_NUMBER}-1001-r-2"]
    assert sim.state.trouble == ["return requested", "refund requested"]


@pytest.mark.parametrize(
    ("after", "starts"),
    [(timedelta(hours=72), True), (timedelta(hours=72, seconds=1), False)],
)
def test_the_return_window_is_72_hours_after_delivery(after: timedelta, starts: bool) -> None:
    sim = Sim()
    seen = delivered(sim, ny(21, 10))
    decision = sim.request_return("r-1", seen + after)
    assert bool(decision.returns) == starts
    if not starts:
        [ignored] = sim.notes("return_ignored")
        assert (ignored.key, ignored.detail) == ("r-1", "outside the return window")


def test_a_return_before_delivery_starts_nothing_but_skips_the_review() -> None:
    sim = Sim()
    in_transit(sim)
    decision = sim.request_return("r-1", ny(20, 15))
    assert decision.returns == []
    [ignored] = sim.notes("return_ignored")
    assert (ignored.key, ignored.detail) == ("r-1", "not delivered yet")
    assert sim.state.trouble == ["return requested"]
    sim.event(S.DELIVERED, ny(21, 10))
    sim.at(ny(24, 10))
    assert sim.sends(Trigger.REVIEW_REQUEST) == []
    assert sim.state.review == "skipped"
    # the same request again after delivery is a duplicate: still nothing starts
    assert sim.returns == []


def test_return_workflow_id_is_made_safe() -> None:
    sim = Sim()
    delivered(sim, ny(21, 10))
    [start] = sim.request_return("gid://shopify/Return/123", ny(21, 11)).returns
    assert start.workflow_id == f"return-{TRACKING_NUMBER}-1001-gid---shopify-Return-123"


def test_plan_return_acknowledges_inside_the_send_window_and_tags_the_helpdesk() -> None:
    shipment = two_channels(timezone=None, address=make_address("FL"))
    request = ReturnRequest(request_id="r-1", kind="return", reason="too small")
    now = ny(22, 20, 30)  # email until 21:00, but texts in Florida only until 20:00
    plan = plan_return(shipment, POLICY, request, now)
    assert [(a.send.channel, a.due_at) for a in plan.acknowledgements] == [
        (Channel.EMAIL, now),
        (Channel.SMS, ny(23, 8)),
    ]
    assert [a.send.idempotency_key for a in plan.acknowledgements] == [
        key("return_requested", "r-1"),
        key("return_requested", "r-1", "sms"),
    ]
    assert {a.send.trigger for a in plan.acknowledgements} == {Trigger.RETURN_REQUESTED}
    assert plan.tag.tag == RETURN_REQUESTED_TAG
    assert plan.tag.idempotency_key == f"{WF}:helpdesk:{RETURN_REQUESTED_TAG}:r-1"
    assert plan.tag.note == "return requested: too small"


# ======================================================================================
# on_tick itself
# ======================================================================================


def test_a_tick_with_nothing_due_changes_nothing() -> None:
    sim = Sim()
    in_transit(sim)
    state = sim.state
    decision = on_tick(state, sim.shipment, POLICY, ny(21, 9))
    assert decision == Decision(state=state)


def test_ticking_twice_at_the_same_instant_does_nothing_more() -> None:
    sim = Sim(two_channels())
    in_transit(sim, ny(20, 11))
    late = ny(31, 9)  # stale and lost both overdue: one late wake fires both
    first = on_tick(sim.state, sim.shipment, POLICY, late)
    assert [s.trigger for s in first.sends] == [Trigger.STALE] * 2 + [Trigger.LOST] * 2
    again = on_tick(first.state, sim.shipment, POLICY, late)
    assert again == Decision(state=first.state)
    action = next_action(first.state, sim.shipment, POLICY)
    assert action.due_at is not None and action.due_at > late


def test_a_late_wake_up_does_not_fire_a_timer_the_previous_one_disarmed() -> None:
    policy = TrackingPolicy(standard=SpeedTimings(stale_after=timedelta(days=12)))
    punctual, late = Sim(policy=policy), Sim(policy=policy)
    for sim in (punctual, late):
        in_transit(sim, ny(20, 11))
    punctual.at(ny(33, 11))
    late.tick(ny(33, 11))  # the worker was down for two weeks
    assert punctual.phase() == late.phase() == Phase.LOST
    assert [s.trigger for s in punctual.sends()][-1:] == [Trigger.LOST]
    assert [s.trigger for s in late.sends()] == [s.trigger for s in punctual.sends()]


def test_an_exception_scan_before_any_transit_scan_means_the_carrier_has_the_parcel() -> None:
    start = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    shipment = make_shipment()
    state = on_start(ShipmentState(), start)
    delay = make_event(
        CarrierStatus.EXCEPTION, start + timedelta(hours=1), exception=ExceptionKind.CARRIER_DELAY
    )
    state = on_event(state, delay, shipment, POLICY, start + timedelta(hours=1)).state
    kinds = [t.kind for t in due_timers(state, shipment, POLICY)]
    assert TimerKind.PICKUP_GAP not in kinds
    assert TimerKind.LOST in kinds


def test_a_refund_request_drops_a_review_request_held_for_the_morning_at_once() -> None:
    shipment = make_shipment(
        timezone="America/New_York", phone=None, shipping_speed=ShippingSpeed.EXPRESS
    )
    afternoon = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)  # 16:00 in New York
    state = on_start(ShipmentState(), afternoon - timedelta(days=1))
    delivered = make_event(CarrierStatus.DELIVERED, afternoon)
    state = on_event(state, delivered, shipment, POLICY, afternoon).state
    night = afternoon + timedelta(hours=12)  # the express hold ends at 04:00 in New York
    state = on_tick(state, shipment, POLICY, night).state
    assert [p.send.trigger for p in state.pending] == [Trigger.REVIEW_REQUEST]
    refund = ReturnRequest(request_id="r-9", kind="refund")
    after = on_return_request(state, refund, shipment, POLICY, night + timedelta(minutes=5)).state
    assert after.pending == []
    assert [n.kind for n in after.notes][-2:] == ["dropped", "return_started"]


# ======================================================================================
# What a person reads: next_action details, held messages, the status line
# ======================================================================================


def details(sim: Sim) -> dict[TimerKind, str]:
    return {t.kind: t.detail for t in due_timers(sim.state, sim.shipment, sim.policy)}


def test_timer_details_say_durations_in_policy_terms() -> None:
    sim = Sim()
    sim.event(S.LABEL_CREATED)
    assert details(sim) == {
        TimerKind.PICKUP_GAP: "no first carrier scan within 2 days of the label",
        TimerKind.LOST: "no carrier scan for 10 days",
    }
    sim.event(S.IN_TRANSIT, sim.now + HOUR)
    assert details(sim) == {
        TimerKind.STALE: "no carrier update for 3 days",
        TimerKind.LOST: "no carrier scan for 10 days",
    }
    sim.event(S.DELIVERED, ny(20, 15))
    assert details(sim)[TimerKind.REVIEW_REQUEST] == "check-in 1 day after delivery"


def test_a_time_scaled_policy_shows_the_real_span_separately() -> None:
    sim = Sim(policy=POLICY.scaled(10000))
    in_transit(sim, sim.now + SECOND)
    assert details(sim) == {
        TimerKind.STALE: "no carrier update for 3 days (26s at 10000\u00d7 demo speed)",
        TimerKind.LOST: "no carrier scan for 10 days (86s at 10000\u00d7 demo speed)",
    }
    action = next_action(sim.state, sim.shipment, sim.policy)
    assert action.detail == "no carrier update for 3 days (26s at 10000\u00d7 demo speed)"


def test_the_public_view_shows_held_messages_in_words_and_no_bookkeeping() -> None:
    sim = Sim(two_channels(address=make_address("FL")))
    sim.event(S.LABEL_CREATED, ny(20, 21, 30))
    document = view(sim.state, sim.shipment, POLICY).public()
    morning, local_morning = utc(21, 13), "2026-11-21 08:00 EST (America/New_York)"
    assert document.waiting == [
        WaitingMessage(
            trigger=Trigger.LABEL_CREATED,
            channel=Channel.EMAIL,
            due_at=morning,
            due_local=local_morning,
            why="quiet hours: email goes out 08:00-21:00 America/New_York time",
        ),
        WaitingMessage(
            trigger=Trigger.LABEL_CREATED,
            channel=Channel.SMS,
            due_at=morning,
            due_local=local_morning,
            why="quiet hours: sms goes out 08:00-20:00 America/New_York time "
            "(US-FL's rule for texts)",
        ),
    ]
    shown = document.model_dump_json()
    for internal in ("idempotency_key", "rank", "scan_marker", "decided_at"):
        assert internal not in shown


def test_public_notes_say_what_they_are_about_without_the_workflow_id() -> None:
    sim = Sim()
    sim.event(S.LABEL_CREATED, ny(20, 21, 30))
    sim.event(S.IN_TRANSIT, ny(20, 23))  # the held label message is dropped
    [note] = view(sim.state, sim.shipment, POLICY).public().notes
    assert (note.kind, note.about) == ("dropped", "label_created:1:email")
    assert sim.state.notes[0].key == f"{WF}:label_created:1:email"


def test_a_closed_shipment_with_held_messages_says_they_still_go_out() -> None:
    """Scaled for a demo, tracking ends within a minute while quiet hours last all night."""
    policy = POLICY.scaled(10000)
    sim = Sim(two_channels(), policy=policy, start=ny(20, 22))
    in_transit(sim, sim.now + SECOND)
    sim.event(S.DELIVERED, sim.now + SECOND)
    sim.at(ny(20, 22, 1))  # the check-in 9 s later, the end 26 s later
    assert sim.state.closed_reason == "lifecycle complete"
    held = [(p.send.trigger, p.send.channel) for p in sim.state.pending]
    assert held == [
        (Trigger.DELIVERED, Channel.EMAIL),
        (Trigger.DELIVERED, Channel.SMS),
        (Trigger.REVIEW_REQUEST, Channel.EMAIL),
        (Trigger.REVIEW_REQUEST, Channel.SMS),
    ]
    document = view(sim.state, sim.shipment, policy).public()
    expected = "delivered — 4 messages waiting, then tracking ends (lifecycle complete)"
    assert document.summary == expected
    assert f"status: {expected}" in format_shipment(document).splitlines()

    sim.at(ny(21, 8))
    assert sim.finished
    document = view(sim.state, sim.shipment, policy).public()
    assert document.summary == "delivered — tracking ended (lifecycle complete)"


def test_a_lost_parcel_no_longer_watched_with_held_messages_says_they_still_go_out() -> None:
    policy = POLICY.scaled(10000)
    sim = Sim(two_channels(), policy=policy, start=ny(20, 22))
    in_transit(sim, sim.now + SECOND)
    sim.at(ny(20, 22, 10))  # lost 86 s after the scan, no longer watched 259 s after that
    assert sim.state.closed_reason == "stopped watching a lost parcel"
    assert [p.send.trigger for p in sim.state.pending] == [Trigger.LOST, Trigger.LOST]
    document = view(sim.state, sim.shipment, policy).public()
    expected = "lost — 2 messages waiting, then tracking ends (stopped watching a lost parcel)"
    assert document.summary == expected
    assert f"status: {expected}" in format_shipment(document).splitlines()


def test_a_message_says_when_it_was_decided_and_when_quiet_hours_released_it() -> None:
    """For the analytics: carrier event → message latency, and the share quiet hours held."""
    sim = Sim()
    in_transit(sim)
    (prompt,) = sim.sends(Trigger.IN_TRANSIT)
    assert (prompt.decided_at, prompt.held_until) == (sim.now, None)
    sim.event(S.RETURNED, ny(20, 22))
    sim.at(ny(21, 8))
    (held,) = sim.sends(Trigger.EXCEPTION)
    assert (held.decided_at, held.held_until) == (ny(20, 22), ny(21, 8))
