"""Send windows (quiet hours): send now, hold until the window opens, drop what is obsolete."""

from __future__ import annotations

from datetime import datetime

from trackflow.effects import SendNotification
from trackflow.estimates import tellable_estimate
from trackflow.models import Channel, Milestone, Shipment, Trigger
from trackflow.policy.audience import customer_region, customer_zone
from trackflow.policy.integrations import with_sends
from trackflow.policy.stages import DELAY_TRIGGERS, DELIVERED_RANK
from trackflow.send_windows import next_send_time, window_for
from trackflow.shipment_state import Decision, Note, PendingSend, Phase, ShipmentState
from trackflow.tracking_policy import SendWindow, TrackingPolicy


def schedule(
    decision: Decision,
    sends: list[SendNotification],
    shipment: Shipment,
    policy: TrackingPolicy,
    now: datetime,
) -> Decision:
    """Send now what the customer's window allows; hold the rest until it opens."""
    state = decision.state
    ready: list[SendNotification] = []
    pending = list(state.pending)
    for decided in sends:
        send = decided.model_copy(update={"decided_at": decided.decided_at or now})
        due = _next_send_time(send.channel, shipment, policy, now)
        if due == now:
            ready.append(send)
        else:
            pending.append(
                PendingSend(
                    send=send,
                    due_at=due,
                    decided_at=now,
                    rank=state.rank,
                    scan_marker=state.last_scan_at,
                )
            )
    decision = decision.model_copy(update={"state": state.model_copy(update={"pending": pending})})
    return with_sends(decision, ready, shipment, now)


def _next_send_time(
    channel: Channel, shipment: Shipment, policy: TrackingPolicy, now: datetime
) -> datetime:
    return next_send_time(
        now, customer_zone(shipment, policy), send_window(channel, shipment, policy)
    )


def send_window(channel: Channel, shipment: Shipment, policy: TrackingPolicy) -> SendWindow:
    region = customer_region(shipment, policy)
    return window_for(channel, region, policy, policy.stricter_sms_windows)


def release_pending(
    decision: Decision, shipment: Shipment, policy: TrackingPolicy, now: datetime
) -> Decision:
    state = decision.state
    keep: list[PendingSend] = []
    ready: list[SendNotification] = []
    notes: list[Note] = []
    for pending in state.pending:
        if pending.due_at > now:
            keep.append(pending)
        elif reason := obsolete_because(pending, state):
            key = pending.send.idempotency_key
            notes.append(Note(kind="dropped", key=key, detail=reason, at=now))
        elif (due := _next_send_time(pending.send.channel, shipment, policy, now)) != now:
            keep.append(pending.model_copy(update={"due_at": due}))
        else:
            ready.append(_released(pending.send, shipment, policy, now))
    state = state.model_copy(update={"pending": keep}).with_notes(*notes)
    return with_sends(decision.model_copy(update={"state": state}), ready, shipment, now)


def _released(
    send: SendNotification, shipment: Shipment, policy: TrackingPolicy, now: datetime
) -> SendNotification:
    """A held message as it goes out: an estimate that was still ahead when it was decided
    may be over by the time the window opens."""
    zone = customer_zone(shipment, policy)
    estimate = tellable_estimate(send.estimated_delivery, now, zone)
    return send.model_copy(update={"held_until": now, "estimated_delivery": estimate})


def drop_obsolete(state: ShipmentState, now: datetime) -> ShipmentState:
    """Held-back messages the shipment has moved past go at once, not when their window opens."""
    keep = [p for p in state.pending if not obsolete_because(p, state)]
    if len(keep) == len(state.pending):
        return state
    notes = [
        Note(kind="dropped", key=p.send.idempotency_key, detail=reason, at=now)
        for p in state.pending
        if (reason := obsolete_because(p, state))
    ]
    return state.model_copy(update={"pending": keep}).with_notes(*notes)


def obsolete_because(pending: PendingSend, state: ShipmentState) -> str | None:
    """A held-back message that the shipment has moved past is dropped, never sent late."""
    send = pending.send
    if state.phase == Phase.CANCELLED:
        return "shipment cancelled"
    # `pending.rank` is where the parcel stood when the message was decided: the message's own
    # milestone, or for a "found again" (revived in_transit) message the milestone reached
    # before it was lost.
    if Milestone.of(send.trigger) is not None and state.rank > pending.rank:
        return f"a later milestone ({state.phase}) was reached"
    # Not revived by a late scan dated before the newest one, but delivered all the same.
    if send.trigger in DELAY_TRIGGERS and state.rank >= DELIVERED_RANK > pending.rank:
        return "the parcel was delivered"
    # Whatever was held when the parcel was declared lost would go out with "seems lost".
    lost_since = state.lost_since
    if send.trigger != Trigger.LOST and lost_since is not None and lost_since >= pending.decided_at:
        return "the parcel was declared lost"
    if send.trigger == Trigger.EXCEPTION and (
        state.open_exception != send.exception or state.exception_episode != send.episode
    ):
        return "the exception is over"
    if send.trigger == Trigger.LOST and (not state.lost or state.lost_episode != send.episode):
        return "the parcel moved again"
    if send.trigger == Trigger.STALE and state.last_scan_at != pending.scan_marker:
        return "a new carrier scan arrived"
    if send.trigger == Trigger.REVIEW_REQUEST and state.trouble:
        return f"review skipped: {state.trouble[-1]}"
    return None
