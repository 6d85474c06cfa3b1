"""Held messages (quiet hours) that a later state made obsolete are dropped, never sent late.

Issue 8: with a compressed clock (the demo's 10000x) a parcel can be declared lost while a
message decided the evening before still waits for 08:00; "delayed by weather" and "seems
lost" then went out together. Send windows are wall-clock hours and are never compressed.
"""

from __future__ import annotations

from datetime import timedelta

from tests.test_policy_timers import POLICY, Sim, in_transit, key, ny
from trackflow.effects import LOST_PACKAGE_TAG
from trackflow.models import CarrierStatus, ExceptionKind, Trigger
from trackflow.policy import Phase

S = CarrierStatus
X = ExceptionKind
DEMO = POLICY.scaled(10_000)  # lost after 86.4 s, stale after 25.9 s
LOST_AFTER = DEMO.standard.lost_after


def test_a_held_exception_is_dropped_when_the_parcel_is_declared_lost() -> None:
    sim = Sim(policy=DEMO, start=ny(20, 21, 10))  # after 21:00: everything waits for 08:00
    sim.event(S.LABEL_CREATED)
    sim.exception(X.WEATHER_DELAY, ny(20, 21, 11))
    assert sim.pending_keys == [key("label_created", "1"), key("exception", "1-weather_delay")]

    lost_at = ny(20, 21, 11) + LOST_AFTER
    sim.at(lost_at)
    assert sim.phase() == Phase.LOST
    # dropped at once, not when the window opens: `waiting` shows only what will go out
    assert sim.pending_keys == [key("lost", "1")]
    assert [(n.key, n.detail, n.at) for n in sim.notes("dropped")] == [
        (key("label_created", "1"), "the parcel was declared lost", lost_at),
        (key("exception", "1-weather_delay"), "the parcel was declared lost", lost_at),
    ]
    # the dropped exception message never reached anyone: its slot goes to the lost message
    assert [m.kind for m in sim.state.exception_messages] == [X.LOST]

    sent = sim.at(ny(21, 8))
    assert [s.trigger for s in sent] == [Trigger.LOST]
    assert sim.sends(Trigger.EXCEPTION) == []


def test_a_held_check_in_and_on_its_way_are_dropped_when_the_parcel_is_declared_lost() -> None:
    sim = Sim(policy=DEMO, start=ny(20, 21, 10))
    sim.event(S.LABEL_CREATED)
    sim.event(S.IN_TRANSIT, ny(20, 21, 11))
    sim.at(ny(20, 21, 11) + DEMO.standard.stale_after)
    assert sim.pending_keys[-1] == key("stale", "1")

    sim.at(ny(20, 21, 11) + LOST_AFTER)
    assert sim.pending_keys == [key("lost", "1")]
    assert {n.key for n in sim.notes("dropped")} == {
        key("label_created", "1"),
        key("in_transit", "1"),
        key("stale", "1"),
    }
    assert [s.trigger for s in sim.at(ny(21, 8))] == [Trigger.LOST]


def test_a_held_lost_message_is_dropped_when_a_delivered_scan_arrives_late() -> None:
    """The delivery scan is dated before the last scan (carrier clocks disagree), so it does
    not revive the parcel; it was still delivered, and "seems lost" must not follow."""
    sim = Sim()
    sim.event(S.LABEL_CREATED)
    sim.event(S.IN_TRANSIT, ny(20, 22))
    sim.at(ny(30, 22))
    assert sim.pending_keys == [key("lost", "1")]

    sim.event(S.DELIVERED, ny(31, 6), occurred=ny(20, 21, 30))
    assert sim.phase() == Phase.DELIVERED
    assert sim.pending_keys == [key("delivered", "1")]
    [dropped] = sim.notes("dropped")
    assert (dropped.key, dropped.detail) == (key("lost", "1"), "the parcel was delivered")
    assert [s.trigger for s in sim.at(ny(31, 8))] == [Trigger.DELIVERED]
    assert LOST_PACKAGE_TAG not in [tag for t in sim.tags for tag in t.all_tags]


def test_a_held_exception_is_dropped_when_the_parcel_is_delivered() -> None:
    sim = Sim()
    in_transit(sim)
    sim.exception(X.WEATHER_DELAY, ny(20, 22))
    sim.event(S.DELIVERED, ny(21, 7))
    assert [s.trigger for s in sim.at(ny(21, 8))] == [Trigger.DELIVERED]
    assert [n.key for n in sim.notes("dropped")] == [key("exception", "1-weather_delay")]


def test_a_held_found_again_message_is_dropped_when_the_parcel_is_lost_again() -> None:
    sim = Sim(policy=DEMO, start=ny(20, 21, 10))
    sim.event(S.IN_TRANSIT)
    sim.at(ny(20, 21, 10) + LOST_AFTER)
    sim.event(S.IN_TRANSIT, ny(20, 21, 12))
    assert sim.pending_keys == [key("in_transit", "revived-1")]
    sim.at(ny(20, 21, 12) + LOST_AFTER - timedelta(seconds=1))
    assert key("in_transit", "revived-1") in sim.pending_keys
    sim.at(ny(20, 21, 12) + LOST_AFTER)
    assert sim.pending_keys == [key("lost", "2")]
    assert [s.trigger for s in sim.at(ny(21, 8))] == [Trigger.LOST]


def test_a_late_wake_up_fires_the_lost_timer_before_releasing_what_it_makes_obsolete() -> None:
    """The worker was down overnight: when it wakes after 08:00, the lost declaration that
    fell due at 21:12 comes first, so the weather delay held since 21:11 is dropped."""
    sim = Sim(policy=DEMO, start=ny(20, 21, 10))
    sim.event(S.LABEL_CREATED)
    sim.exception(X.WEATHER_DELAY, ny(20, 21, 11))
    assert ny(20, 21, 11) + LOST_AFTER < ny(21, 8)

    sent = sim.tick(ny(21, 8, 5))  # one wake-up, none of those on the way
    assert [s.trigger for s in sent] == [Trigger.LOST]
    assert sim.sends(Trigger.EXCEPTION) == []
    assert key("exception", "1-weather_delay") in {n.key for n in sim.notes("dropped")}
