"""Pure rules for polling cadence and carrier-API outage alerts (fake clock)."""

from __future__ import annotations

from datetime import timedelta

from tests.factories import ANY_TIME_POLICY, at, make_event, make_shipment
from trackflow.api_health import ApiHealth, on_outcome, on_time, outage_due
from trackflow.effects import AlertKind
from trackflow.models import CarrierStatus, ShippingSpeed
from trackflow.policy import on_event, on_start, on_tick
from trackflow.shipment_state import ShipmentState
from trackflow.timers import TimerKind, due_timers

POLICY = ANY_TIME_POLICY


def test_poll_interval_stays_within_the_speed_bounds_and_is_deterministic() -> None:
    for speed in ShippingSpeed:
        shipment = make_shipment(poll_via="easypost", shipping_speed=speed)
        state = on_start(ShipmentState(), at(0))
        timings = POLICY.timings(speed)
        seen = []
        for _ in range(20):
            poll = next(t for t in due_timers(state, shipment, POLICY) if t.kind == TimerKind.POLL)
            gap = poll.due_at - (state.last_poll_at or at(0))
            assert timings.poll_every_min <= gap <= timings.poll_every_max
            seen.append(gap)
            decision = on_tick(state, shipment, POLICY, poll.due_at)
            assert [p.attempt for p in decision.polls] == [state.polls + 1]
            state = decision.state
        assert len(set(seen)) > 1  # jittered
        replay = on_start(ShipmentState(), at(0))
        first = next(t for t in due_timers(replay, shipment, POLICY) if t.kind == TimerKind.POLL)
        assert first.due_at - at(0) == seen[0]


def test_polling_stops_after_a_pushed_event_but_not_after_a_polled_one() -> None:
    shipment = make_shipment(poll_via="easypost")
    state = on_start(ShipmentState(), at(0))
    polled = make_event(CarrierStatus.IN_TRANSIT, at(1), polled=True)
    state = on_event(state, polled, shipment, POLICY, at(1)).state
    assert any(t.kind == TimerKind.POLL for t in due_timers(state, shipment, POLICY))
    pushed = make_event(CarrierStatus.OUT_FOR_DELIVERY, at(2), source="easypost")
    state = on_event(state, pushed, shipment, POLICY, at(2)).state
    assert not any(t.kind == TimerKind.POLL for t in due_timers(state, shipment, POLICY))


def test_polling_stops_once_delivered_and_without_a_provider() -> None:
    shipment = make_shipment(poll_via="easypost")
    state = on_start(ShipmentState(), at(0))
    delivered = make_event(CarrierStatus.DELIVERED, at(1), polled=True)
    state = on_event(state, delivered, shipment, POLICY, at(1)).state
    assert not any(t.kind == TimerKind.POLL for t in due_timers(state, shipment, POLICY))
    plain = make_shipment()
    fresh = on_start(ShipmentState(), at(0))
    assert not any(t.kind == TimerKind.POLL for t in due_timers(fresh, plain, POLICY))


def test_outage_alert_once_after_the_threshold_and_one_recovery_notice() -> None:
    limit = POLICY.carrier_api_outage_after
    health = ApiHealth(provider="easypost")
    health = on_outcome(health, False, "503", at(0)).health
    health = on_outcome(health, False, "503", at(1)).health
    assert outage_due(health, POLICY) == at(0) + limit
    assert on_time(health, POLICY, at(0) + limit - timedelta(seconds=1)).alerts == []
    decision = on_time(health, POLICY, at(0) + limit)
    assert [a.alert for a in decision.alerts] == [AlertKind.CARRIER_API_OUTAGE]
    health = decision.health
    assert health.status == "outage"
    assert on_time(health, POLICY, at(100)).alerts == []
    health = on_outcome(health, False, "503", at(101)).health
    recovered = on_outcome(health, True, None, at(102))
    assert [a.alert for a in recovered.alerts] == [AlertKind.CARRIER_API_RECOVERED]
    assert recovered.health.status == "healthy"
    assert on_outcome(recovered.health, True, None, at(103)).alerts == []
    keys = [a.idempotency_key for a in recovered.health.alerts]
    assert len(set(keys)) == 2


def test_a_short_failure_spell_raises_nothing() -> None:
    health = on_outcome(ApiHealth(provider="easypost"), False, "timeout", at(0)).health
    healthy = on_outcome(health, True, None, at(1))
    assert healthy.alerts == []
    assert outage_due(healthy.health, POLICY) is None
    assert healthy.health.status == "healthy"
