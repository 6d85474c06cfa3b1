"""Carrier events: milestones, exceptions, revivals, and the messages they trigger."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from trackflow.event_time import implausible_time
from trackflow.models import (
    CarrierEvent,
    CarrierStatus,
    ExceptionKind,
    Milestone,
    Shipment,
    Trigger,
)
from trackflow.policy.caps import capped_because, count_exception_message, suppressed
from trackflow.policy.integrations import leave_delayed_list
from trackflow.policy.quiet_hours import drop_obsolete, schedule
from trackflow.policy.sends import sends_for
from trackflow.policy.stages import DELIVERED_RANK, MILESTONE_STATUSES, phase_at
from trackflow.policy.timers import review_skipped_if_trouble
from trackflow.shipment_state import (
    MAX_UNRECOGNISED_CODES,
    Decision,
    Note,
    Phase,
    ShipmentState,
    TimelineEntry,
    remembered,
)
from trackflow.tracking_policy import TrackingPolicy

MAX_REMEMBERED_EVENT_KEYS = 500


def on_event(
    state: ShipmentState,
    event: CarrierEvent,
    shipment: Shipment,
    policy: TrackingPolicy,
    now: datetime,
) -> Decision:
    return leave_delayed_list(_on_event(state, event, shipment, policy, now), shipment)


def _on_event(
    state: ShipmentState,
    event: CarrierEvent,
    shipment: Shipment,
    policy: TrackingPolicy,
    now: datetime,
) -> Decision:
    key = remembered(event.dedupe_key)
    if key in state.seen_event_keys or event.tracking_number != shipment.tracking_number:
        return Decision(state=state)
    if reason := implausible_time(event.occurred_at, now, policy.max_event_clock_skew):
        return Decision(state=_implausible(state, event, reason, now))
    if state.events_not_before is not None and event.occurred_at < state.events_not_before:
        return Decision(state=_earlier_order(state, event, now))
    changes, trigger, episode_tag, effect = _classify(state, event)
    changes |= _scan_bookkeeping(state, event, now)
    if not event.polled:
        changes["push_seen"] = True
    if changes.get("phase") == Phase.DELIVERED:
        changes["delivered_seen_at"] = now
    exception = None if event.status in MILESTONE_STATUSES else _exception_kind(event)
    entry = _timeline_entry(event, exception, effect, now)
    if not event.recognised and event.raw_code:
        code = f"{event.source}:{event.raw_code}"
        codes = [*state.unrecognised_codes, code]
        changes["unrecognised_codes"] = codes[-MAX_UNRECOGNISED_CODES:]
    state = state.model_copy(
        update={
            **changes,
            "seen_event_keys": [*state.seen_event_keys, key][-MAX_REMEMBERED_EVENT_KEYS:],
            "estimated_delivery": event.estimated_delivery or state.estimated_delivery,
        }
    ).with_timeline_entry(entry, MILESTONE_STATUSES)
    state = drop_obsolete(state, now)
    if changes.get("delivered_seen_at"):
        state = review_skipped_if_trouble(state, now)
    if trigger is None:
        return Decision(state=state)
    sends = sends_for(state, shipment, policy, trigger, episode_tag, now, event=event)
    if trigger == Trigger.EXCEPTION and sends and state.open_exception is not None:
        kind = state.open_exception
        if why := capped_because(state, kind, policy, now):
            return Decision(state=suppressed(state, entry, sends[0], why, now))
        state = count_exception_message(state, sends[0], kind, now)
    return schedule(Decision(state=state), sends, shipment, policy, now)


def _implausible(
    state: ShipmentState, event: CarrierEvent, reason: str, now: datetime
) -> ShipmentState:
    """A wild `occurred_at` would become the newest scan for ever: the event is only noted
    (once), and not remembered as seen, so the carrier's corrected re-send still counts."""
    key = event.dedupe_key
    if any(n.kind == "implausible_timestamp" and n.key == key for n in state.notes):
        return state
    what = event.status.value + (f" ({event.exception})" if event.exception else "")
    detail = f"{what} at {event.occurred_at.isoformat()} ignored: {reason}"
    return state.with_notes(Note(kind="implausible_timestamp", key=key, detail=detail, at=now))


def _earlier_order(state: ShipmentState, event: CarrierEvent, now: datetime) -> ShipmentState:
    """A late event of the order this recycled number belonged to before: on the timeline,
    changing nothing, and not remembered as seen (the dedupe window is for this order)."""
    why = "ignored: before this order (the tracking number was used for an earlier one)"
    entry = _timeline_entry(event, event.exception, why, now)
    return state.with_timeline_entry(entry, MILESTONE_STATUSES)


def _timeline_entry(
    event: CarrierEvent, exception: ExceptionKind | None, effect: str, now: datetime
) -> TimelineEntry:
    return TimelineEntry(
        status=event.status,
        exception=exception,
        occurred_at=event.occurred_at,
        received_at=now,
        description=event.description,
        location=event.location,
        source=event.source,
        raw_code=event.raw_code,
        recognised=event.recognised,
        effect=effect,
    )


class Classified(NamedTuple):
    """What an event changes in the state, which message it triggers (if any) in which
    episode, and what the policy did with it, in words (the timeline's `effect`)."""

    changes: dict[str, object]
    trigger: Trigger | None
    episode_tag: str
    effect: str


def _ignored(why: str) -> Classified:
    return Classified({}, None, "", f"ignored: {why}")


def _classify(state: ShipmentState, event: CarrierEvent) -> Classified:
    if state.closed_reason:
        return _ignored(f"shipment {state.closed_reason}")
    revival = _revival(state, event)

    if (milestone := Milestone.of(event.status)) is not None:
        rank = milestone.rank
        if rank > state.rank:
            changes: dict[str, object] = {
                "rank": rank,
                "phase": Phase(milestone),
                "last_milestone_at": event.occurred_at,
                "open_exception": None,
                "exception_opened_at": None,
            }
            return Classified(revival | changes, Trigger(milestone), "1", "milestone")
        if revival:  # the newest scan: it also ends an exception episode left open
            revival |= {"open_exception": None, "exception_opened_at": None}
            tag = f"revived-{state.lost_episode}"
            return Classified(revival, Trigger.IN_TRANSIT, tag, "found again")
        if _recovers(state, event):
            recovered = {"open_exception": None, "exception_opened_at": None}
            return Classified(recovered | {"phase": phase_at(state.rank)}, None, "", "recovered")
        return _ignored("milestone already reached")

    if state.rank >= DELIVERED_RANK:
        return _ignored("already delivered")
    if state.last_milestone_at and event.occurred_at < state.last_milestone_at:
        return _ignored("older than the last milestone")

    kind = _exception_kind(event)
    changes = revival | {"phase": Phase.EXCEPTION, "open_exception": kind}
    if event.status == CarrierStatus.RETURNED:
        changes |= {"phase": Phase.RETURNED, "closed_reason": "returned to sender"}
    changes["trouble"] = state.with_trouble(kind.value)
    if state.open_exception == kind:
        return Classified(changes, None, "", "ignored: same exception still open")
    episode = state.exception_episode + 1
    changes |= {"exception_episode": episode, "exception_opened_at": event.occurred_at}
    return Classified(changes, Trigger.EXCEPTION, f"{episode}-{kind}", "exception")


def _revival(state: ShipmentState, event: CarrierEvent) -> dict[str, object]:
    """A scan after we declared the parcel lost: it is moving again."""
    if not state.lost or not _is_newest(state, event):
        return {}
    return {"lost_since": None, "phase": phase_at(state.rank)}


def _recovers(state: ShipmentState, event: CarrierEvent) -> bool:
    opened = state.exception_opened_at
    return state.open_exception is not None and opened is not None and event.occurred_at > opened


def _is_newest(state: ShipmentState, event: CarrierEvent) -> bool:
    return state.latest_occurred_at is None or event.occurred_at >= state.latest_occurred_at


def _scan_bookkeeping(
    state: ShipmentState, event: CarrierEvent, now: datetime
) -> dict[str, object]:
    if not _is_newest(state, event):
        return {}
    return {"latest_occurred_at": event.occurred_at, "last_scan_at": now}


def _exception_kind(event: CarrierEvent) -> ExceptionKind:
    if event.status == CarrierStatus.RETURNED:
        return ExceptionKind.RETURN_TO_SENDER
    if event.status == CarrierStatus.AVAILABLE_FOR_PICKUP:
        return ExceptionKind.HELD_AT_FACILITY
    return event.exception or ExceptionKind.UNKNOWN
