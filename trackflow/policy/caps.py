"""Exception messages: how severe each kind is, and the frequency cap that holds some back."""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum

from trackflow.durations import human_duration
from trackflow.effects import SendNotification
from trackflow.idempotency import IdempotencyKey
from trackflow.models import ExceptionKind
from trackflow.policy.keys import episode_key
from trackflow.shipment_state import (
    MAX_EXCEPTION_MESSAGES,
    ExceptionMessage,
    Note,
    ShipmentState,
    TimelineEntry,
)
from trackflow.tracking_policy import TrackingPolicy


class Severity(IntEnum):
    """How bad an exception is for the customer; the frequency cap never holds back SEVERE."""

    DELAY = 0  # late, nothing to do
    ACTION = 1  # the customer may have to act (address, redelivery, pickup)
    SEVERE = 2  # it will not arrive as sent


EXCEPTION_SEVERITY: dict[ExceptionKind, Severity] = {
    ExceptionKind.WEATHER_DELAY: Severity.DELAY,
    ExceptionKind.CARRIER_DELAY: Severity.DELAY,
    ExceptionKind.CUSTOMS_HOLD: Severity.DELAY,
    ExceptionKind.UNKNOWN: Severity.DELAY,
    ExceptionKind.ADDRESS_ISSUE: Severity.ACTION,
    ExceptionKind.FAILED_ATTEMPT: Severity.ACTION,
    ExceptionKind.HELD_AT_FACILITY: Severity.ACTION,
    ExceptionKind.DAMAGED: Severity.SEVERE,
    ExceptionKind.LOST: Severity.SEVERE,
    ExceptionKind.RETURN_TO_SENDER: Severity.SEVERE,
}


def _counted_messages(state: ShipmentState) -> list[ExceptionMessage]:
    """The exception/lost messages the cap counts: all decided, except a last one that never
    reached anyone (held for quiet hours, then dropped as over): the next one takes its place."""
    messages = state.exception_messages
    if not messages:
        return messages
    episode = IdempotencyKey.parse(messages[-1].episode_key)
    keys = [n.idempotency_key for n in state.notifications]
    keys += [p.send.idempotency_key for p in state.pending]
    reached = any(IdempotencyKey.parse(k).is_under(episode) for k in keys)
    return messages if reached else messages[:-1]


def capped_because(
    state: ShipmentState, kind: ExceptionKind, policy: TrackingPolicy, now: datetime
) -> str | None:
    """Why the frequency cap holds back this exception message (None: it goes out). A severe
    kind always goes out; one more severe than the last message skips the interval."""
    severity = EXCEPTION_SEVERITY[kind]
    if severity == Severity.SEVERE:
        return None
    counted = _counted_messages(state)
    limit = policy.max_exception_messages
    if len(counted) >= limit:
        plural = "" if limit == 1 else "s"
        return f"exception cap: at most {limit} exception message{plural} per shipment"
    if counted and severity <= EXCEPTION_SEVERITY[counted[-1].kind]:
        interval = policy.exception_message_min_interval
        if now - counted[-1].decided_at < interval:
            per = human_duration(interval, policy.time_scale)
            return f"exception cap: at most 1 exception message per {per}"
    return None


def count_exception_message(
    state: ShipmentState, send: SendNotification, kind: ExceptionKind, now: datetime
) -> ShipmentState:
    message = ExceptionMessage(episode_key=episode_key(send), kind=kind, decided_at=now)
    messages = [*_counted_messages(state), message][-MAX_EXCEPTION_MESSAGES:]
    return state.model_copy(update={"exception_messages": messages})


def suppressed(
    state: ShipmentState, entry: TimelineEntry, send: SendNotification, why: str, now: datetime
) -> ShipmentState:
    """The exception still moves the state on; only its message is held back, for good."""
    noted = entry.model_copy(update={"effect": f"{entry.effect}, message suppressed ({why})"})
    timeline = [noted if e is entry else e for e in state.timeline]
    detail = f"{send.exception}: {why}"
    note = Note(kind="suppressed", key=episode_key(send), detail=detail, at=now)
    return state.model_copy(update={"timeline": timeline}).with_notes(note)
