"""Durable timers: what the shipment is waiting for next, and when it is due."""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta
from enum import StrEnum

from trackflow.durations import human_duration
from trackflow.models import CarrierStatus, Model, Shipment
from trackflow.shipment_state import Phase, ShipmentState
from trackflow.tracking_policy import TrackingPolicy

_IN_TRANSIT_RANK = 1


class TimerKind(StrEnum):
    DELIVER_HELD = "send_when_window_opens"
    PICKUP_GAP = "pickup_gap_alert"
    STALE = "stale_check_in"
    LOST = "declare_lost"
    POLL = "poll_carrier_api"
    REVIEW_REQUEST = "review_request"
    COMPLETE = "complete"


class Timer(Model):
    kind: TimerKind
    due_at: datetime
    detail: str


def due_timers(state: ShipmentState, shipment: Shipment, policy: TrackingPolicy) -> list[Timer]:
    """Every timer that is armed in this state, earliest first (ties in declaration order)."""
    timers = [
        *_held_messages(state),
        *_lifecycle_timers(state, shipment, policy),
    ]
    order = list(TimerKind)
    return sorted(timers, key=lambda t: (t.due_at, order.index(t.kind)))


def _held_messages(state: ShipmentState) -> list[Timer]:
    if not state.pending:
        return []
    first = min(state.pending, key=lambda p: p.due_at)
    what = f"{first.send.trigger.value} {first.send.channel.value}"
    return [
        Timer(
            kind=TimerKind.DELIVER_HELD,
            due_at=first.due_at,
            detail=f"{what} held for the customer's send window (quiet hours)",
        )
    ]


def _lifecycle_timers(
    state: ShipmentState, shipment: Shipment, policy: TrackingPolicy
) -> list[Timer]:
    if state.closed_reason or state.phase == Phase.CANCELLED:
        return []
    timings = policy.timings(shipment.shipping_speed)

    def spell(duration: timedelta) -> str:
        return human_duration(duration, policy.time_scale)

    timers: list[Timer] = []
    if state.delivered_seen_at is not None:
        delivered = state.delivered_seen_at
        if state.review is None:
            due = delivered + timings.post_delivery_hold
            detail = f"check-in {spell(timings.post_delivery_hold)} after delivery"
            timers.append(Timer(kind=TimerKind.REVIEW_REQUEST, due_at=due, detail=detail))
        end = delivered + max(timings.post_delivery_hold, policy.return_window)
        timers.append(Timer(kind=TimerKind.COMPLETE, due_at=end, detail="lifecycle complete"))
        return timers

    if state.lost_since is not None:
        end = state.lost_since + policy.lost_follow_up
        detail = "stopped watching a lost parcel"
        return [Timer(kind=TimerKind.COMPLETE, due_at=end, detail=detail)]

    last_scan = state.last_scan_at or state.started_at
    if last_scan is None:
        return timers
    if shipment.poll_via and not state.push_seen and state.started_at:
        due = (state.last_poll_at or state.started_at) + poll_interval(state, shipment, policy)
        detail = f"poll {shipment.poll_via} (no webhook event so far)"
        timers.append(Timer(kind=TimerKind.POLL, due_at=due, detail=detail))
    lost_at = last_scan + timings.lost_after
    detail = f"no carrier scan for {spell(timings.lost_after)}"
    timers.append(Timer(kind=TimerKind.LOST, due_at=lost_at, detail=detail))
    carrier_has_it = any(e.status != CarrierStatus.LABEL_CREATED for e in state.timeline)
    if not carrier_has_it and not state.pickup_gap_alerted and state.started_at:
        due = state.started_at + timings.pickup_gap
        detail = f"no first carrier scan within {spell(timings.pickup_gap)} of the label"
        timers.append(Timer(kind=TimerKind.PICKUP_GAP, due_at=due, detail=detail))
    stale_armed = (
        policy.stale_message_enabled
        and state.rank >= _IN_TRANSIT_RANK
        and state.open_exception is None
        and state.stale_notified_for != state.last_scan_at
        and state.last_scan_at is not None
    )
    if stale_armed and state.last_scan_at is not None:
        due = state.last_scan_at + timings.stale_after
        detail = f"no carrier update for {spell(timings.stale_after)}"
        timers.append(Timer(kind=TimerKind.STALE, due_at=due, detail=detail))
    return timers


def poll_interval(state: ShipmentState, shipment: Shipment, policy: TrackingPolicy) -> timedelta:
    """Between the speed's bounds, jittered so shipments registered together spread out; the
    jitter comes from the number and the poll count, so it is the same on every replay."""
    timings = policy.timings(shipment.shipping_speed)
    seed = zlib.crc32(f"{shipment.tracking_number}:{state.polls}".encode()) / 0xFFFFFFFF
    return timings.poll_every_min + (timings.poll_every_max - timings.poll_every_min) * seed
