"""The passing of time: held messages released, and the timers that fall due fired."""

from __future__ import annotations

from datetime import datetime

from trackflow.effects import AlertKind, PollCarrier
from trackflow.models import ExceptionKind, Shipment, Trigger
from trackflow.policy.caps import count_exception_message
from trackflow.policy.integrations import alert_for_timer, leave_delayed_list
from trackflow.policy.quiet_hours import drop_obsolete, release_pending, schedule
from trackflow.policy.sends import sends_for
from trackflow.shipment_state import Decision, Note, Phase, ShipmentState
from trackflow.timers import Timer, TimerKind, due_timers
from trackflow.tracking_policy import TrackingPolicy


def on_tick(
    state: ShipmentState, shipment: Shipment, policy: TrackingPolicy, now: datetime
) -> Decision:
    """Let time pass: release deferred messages and fire every timer that is due, in the
    order they fell due (after a late wake-up, a lost declaration that fell due before a held
    message's release makes that message obsolete instead of letting both go out)."""
    decision = Decision(state=state)
    released_at = min((p.due_at for p in state.pending if p.due_at <= now), default=None)
    if released_at is not None:
        decision = _fire_timers(decision, shipment, policy, now, due_before=released_at)
    decision = release_pending(decision, shipment, policy, now)
    return leave_delayed_list(_fire_timers(decision, shipment, policy, now), shipment)


def _fire_timers(
    decision: Decision,
    shipment: Shipment,
    policy: TrackingPolicy,
    now: datetime,
    due_before: datetime | None = None,
) -> Decision:
    """Fire the timers due by `now` (only those due strictly before `due_before`, if given)."""
    for _ in range(len(TimerKind)):  # each firing disarms its timer; this bounds the loop
        due = [
            timer
            for timer in due_timers(decision.state, shipment, policy)
            if timer.due_at <= now
            and (due_before is None or timer.due_at < due_before)
            and timer.kind != TimerKind.DELIVER_HELD
        ]
        if not due:
            break
        # Recomputed after every firing: one timer can disarm another (lost ends stale).
        decision = _fire(due[0], decision, shipment, policy, now)
    return decision


def _fire(
    timer: Timer, decision: Decision, shipment: Shipment, policy: TrackingPolicy, now: datetime
) -> Decision:
    state = decision.state
    match timer.kind:
        case TimerKind.PICKUP_GAP:
            state = state.model_copy(update={"pickup_gap_alerted": True})
            decision = alert_for_timer(decision, state, shipment, AlertKind.PICKUP_GAP, timer, now)
            if policy.pickup_gap_customer_message:
                sends = sends_for(
                    decision.state, shipment, policy, Trigger.STALE, "pickup-gap", now
                )
                decision = schedule(decision, sends, shipment, policy, now)
            return decision
        case TimerKind.STALE:
            episode = state.stale_episode + 1
            state = state.model_copy(
                update={"stale_episode": episode, "stale_notified_for": state.last_scan_at}
            )
            sends = sends_for(state, shipment, policy, Trigger.STALE, str(episode), now)
            return schedule(
                decision.model_copy(update={"state": state}), sends, shipment, policy, now
            )
        case TimerKind.LOST:
            episode = state.lost_episode + 1
            state = state.model_copy(
                update={
                    "lost_episode": episode,
                    "lost_since": now,
                    "phase": Phase.LOST,
                    "trouble": state.with_trouble("lost"),
                }
            )
            state = drop_obsolete(state, now)  # before counting: a dropped one gives its slot
            decision = alert_for_timer(decision, state, shipment, AlertKind.LOST, timer, now)
            sends = sends_for(decision.state, shipment, policy, Trigger.LOST, str(episode), now)
            if sends:  # always goes out, and counts for the exception message cap
                state = count_exception_message(decision.state, sends[0], ExceptionKind.LOST, now)
                decision = decision.model_copy(update={"state": state})
            return schedule(decision, sends, shipment, policy, now)
        case TimerKind.REVIEW_REQUEST:
            if state.trouble:
                state = review_skipped_if_trouble(state, now)
                return decision.model_copy(update={"state": state})
            state = state.model_copy(update={"review": "sent"})
            sends = sends_for(state, shipment, policy, Trigger.REVIEW_REQUEST, "1", now)
            return schedule(
                decision.model_copy(update={"state": state}), sends, shipment, policy, now
            )
        case TimerKind.COMPLETE:
            state = state.model_copy(update={"closed_reason": timer.detail})
            return decision.model_copy(update={"state": state})
        case TimerKind.DELIVER_HELD:
            return decision
        case TimerKind.POLL:
            attempt = state.polls + 1
            state = state.model_copy(update={"polls": attempt, "last_poll_at": now})
            poll = PollCarrier(
                provider=shipment.poll_via or "",
                tracking_number=shipment.tracking_number,
                carrier=shipment.carrier,
                attempt=attempt,
                newest_known=state.latest_occurred_at,
            )
            return decision.model_copy(update={"state": state, "polls": [*decision.polls, poll]})
    raise AssertionError(f"unhandled timer {timer.kind}")


def review_skipped_if_trouble(state: ShipmentState, now: datetime) -> ShipmentState:
    """No review request for a customer who had trouble: noted once, no timer left for it."""
    if not state.trouble or state.review is not None:
        return state
    note = Note(kind="review", key="review", detail=f"skipped: {state.trouble[-1]}", at=now)
    return state.model_copy(update={"review": "skipped"}).with_notes(note)
