"""The policy: (state, event or timer, order, TrackingPolicy) -> (new state, decisions).

Pure and deterministic: the workflow feeds it signals and the passing of time and carries
out what it returns; the tests drive it with a fake clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import IntEnum
from typing import NamedTuple

from trackflow.carriers import courier_tracking_url
from trackflow.durations import human_duration
from trackflow.effects import (
    AUTO_DELAY_NOTIFIED,
    LOST_PACKAGE_TAG,
    AlertKind,
    PollCarrier,
    RaiseAlert,
    SendNotification,
    StartReturn,
    SyncDelayedList,
    TagHelpdesk,
    Tone,
)
from trackflow.estimates import tellable_estimate
from trackflow.event_time import implausible_time
from trackflow.links import web_link
from trackflow.models import (
    CarrierEvent,
    CarrierStatus,
    Channel,
    ExceptionKind,
    Milestone,
    NumberWarning,
    ReturnRequest,
    Shipment,
    ShipmentUpdate,
    Trigger,
)
from trackflow.pinning import pinned_facts
from trackflow.send_windows import format_local, next_send_time, window_for
from trackflow.shipment_state import (
    MAX_EXCEPTION_MESSAGES,
    MAX_NOTIFICATIONS,
    MAX_RETURN_REQUESTS,
    MAX_UNRECOGNISED_CODES,
    Decision,
    ExceptionMessage,
    HeldMessage,
    NextAction,
    Note,
    NotificationView,
    Outcome,
    PendingSend,
    Phase,
    SentNotification,
    ShipmentState,
    ShipmentView,
    TimelineEntry,
    remembered,
)
from trackflow.timers import Timer, TimerKind, due_timers
from trackflow.tracking_policy import SendWindow, TrackingPolicy

__all__ = [
    "Decision",
    "NextAction",
    "Phase",
    "SendNotification",
    "ShipmentState",
    "ShipmentView",
    "TimelineEntry",
    "Tone",
]

MAX_REMEMBERED_EVENT_KEYS = 500
MAX_REMEMBERED_UPDATE_IDS = 100

DELIVERED_RANK = Milestone.DELIVERED.rank
MILESTONE_STATUSES = {CarrierStatus(m) for m in Milestone}
_DELAY_TRIGGERS = {Trigger.EXCEPTION, Trigger.LOST, Trigger.STALE}


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


# --- who, how -----------------------------------------------------------------------------


def channels_for(shipment: Shipment, policy: TrackingPolicy) -> list[tuple[Channel, str]]:
    """Email whenever there is an address; SMS above the value threshold (or when email is
    impossible), and only to a phone that consented."""
    customer = shipment.customer
    channels: list[tuple[Channel, str]] = []
    if customer.email:
        channels.append((Channel.EMAIL, customer.email))
    wants_sms = shipment.order_value > policy.sms_value_threshold or not customer.email
    if customer.phone and customer.sms_consent and wants_sms:
        channels.append((Channel.SMS, customer.phone))
    return channels


def tone_for(shipment: Shipment, policy: TrackingPolicy) -> Tone:
    if shipment.customer_order_count >= policy.returning_customer_min_orders:
        return Tone.RETURNING_CUSTOMER
    return Tone.NEW_CUSTOMER


def shipment_key(shipment: Shipment) -> str:
    """The shipment's business identity in effect keys: carriers recycle tracking numbers, so
    the order (and fulfillment) is part of it."""
    order = shipment.order_id + (f"/{shipment.fulfillment_id}" if shipment.fulfillment_id else "")
    return f"{shipment.tracking_number}/" + order.replace("%", "%25").replace(":", "%3A")


def idempotency_key(shipment: Shipment, trigger: Trigger, episode: str, channel: Channel) -> str:
    return f"{shipment_key(shipment)}:{trigger}:{episode}:{channel}"


def customer_zone(shipment: Shipment, policy: TrackingPolicy) -> str:
    return pinned_facts(shipment, policy).timezone


def customer_region(shipment: Shipment, policy: TrackingPolicy) -> str | None:
    return pinned_facts(shipment, policy).region


# --- inputs -------------------------------------------------------------------------------


def on_start(state: ShipmentState, now: datetime) -> ShipmentState:
    if state.started_at is not None:
        return state
    return state.model_copy(update={"started_at": now})


def on_event(
    state: ShipmentState,
    event: CarrierEvent,
    shipment: Shipment,
    policy: TrackingPolicy,
    now: datetime,
) -> Decision:
    return _leave_delayed_list(_on_event(state, event, shipment, policy, now), shipment)


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
    state = _drop_obsolete(state, now)
    if changes.get("delivered_seen_at") and state.review_skip_at_delivery:
        state = _review_skipped_if_trouble(state, now)
    if trigger is None:
        return Decision(state=state)
    sends = _sends(state, shipment, policy, trigger, episode_tag, now, event=event)
    if trigger == Trigger.EXCEPTION and sends and state.open_exception is not None:
        kind = state.open_exception
        if why := _capped_because(state, kind, policy, now):
            return Decision(state=_suppressed(state, entry, sends[0], why, now))
        state = _count_exception_message(state, sends[0], kind, now)
    return _schedule(Decision(state=state), sends, shipment, policy, now)


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
    decision = _release_pending(decision, shipment, policy, now)
    return _leave_delayed_list(_fire_timers(decision, shipment, policy, now), shipment)


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


def on_return_request(
    state: ShipmentState,
    request: ReturnRequest,
    shipment: Shipment,
    policy: TrackingPolicy,
    now: datetime,
) -> Decision:
    if remembered(request.request_id) in state.return_request_ids:
        return Decision(state=state, outcome=Outcome(outcome="ignored", detail="already requested"))
    state = state.model_copy(
        update={
            "return_request_ids": [*state.return_request_ids, remembered(request.request_id)][
                -MAX_RETURN_REQUESTS:
            ],
            "trouble": state.with_trouble(f"{request.kind} requested"),
        }
    )
    state = _drop_obsolete(state, now)  # e.g. a review request held for the morning
    delivered = state.delivered_seen_at
    if delivered is None or now - delivered > policy.return_window:
        why = "not delivered yet" if delivered is None else "outside the return window"
        note = Note(kind="return_ignored", key=request.request_id, detail=why, at=now)
        return Decision(state=_noted(state, note), outcome=Outcome(outcome="ignored", detail=why))
    start = StartReturn(
        workflow_id=f"return-{shipment.tracking_number}-{_safe_id(shipment.order_id)}-"
        f"{_safe_id(request.request_id)}",
        request=request,
    )
    note = Note(kind="return_started", key=start.workflow_id, detail=request.kind, at=now)
    outcome = Outcome(outcome="return_started", detail=start.workflow_id)
    return Decision(state=_noted(state, note), returns=[start], outcome=outcome)


def on_cancel(state: ShipmentState, reason: str) -> ShipmentState:
    if state.closed_reason:
        return state
    return state.model_copy(
        update={"phase": Phase.CANCELLED, "closed_reason": f"cancelled: {reason}", "pending": []}
    )


def on_shipment_update(
    state: ShipmentState, current: Shipment, update: ShipmentUpdate, now: datetime
) -> tuple[ShipmentState, Shipment]:
    """Later facts replace earlier ones. Ignored, with a note: a replayed update (an id already
    applied), one older than the applied one (by the source's `updated_at`), and one for
    another tracking number (a workflow never changes number)."""
    why = _update_ignored_because(state, current, update)
    if why is not None:
        note = Note(kind="update_ignored", key=update.update_id or "", detail=why, at=now)
        if not any(
            (n.kind, n.key, n.detail) == (note.kind, note.key, note.detail) for n in state.notes
        ):
            state = _noted(state, note)
        return state, current
    changes: dict[str, object] = {}
    if update.update_id is not None:
        ids = [*state.applied_update_ids, remembered(update.update_id)]
        changes["applied_update_ids"] = ids[-MAX_REMEMBERED_UPDATE_IDS:]
    if update.updated_at is not None:
        changes["applied_update_at"] = update.updated_at
    return state.model_copy(update=changes), update.shipment


class AnotherOrder(ValueError):
    """A registration or return request for another order than the one this tracking number
    is followed for: two live orders on one number, or a mistaken id. Never reaches state."""


def check_same_order(current: Shipment, order_id: str | None, tracking_number: str) -> None:
    if tracking_number != current.tracking_number:
        raise AnotherOrder(f"this workflow follows tracking number {current.tracking_number}")
    if order_id is not None and order_id != current.order_id:
        raise AnotherOrder(
            f"tracking number {current.tracking_number} is followed for order "
            f"{current.order_id}, which is still in transit; a second live order on the same "
            "number is refused"
        )


def on_registration(
    state: ShipmentState, current: Shipment, update: ShipmentUpdate, now: datetime
) -> tuple[ShipmentState, Shipment, Outcome]:
    """The first registration is the one that started the workflow; later ones are updates
    (or replays of it). The order was checked by `check_same_order` before."""
    if not state.registered:
        state, shipment = on_shipment_update(state, current, update, now)
        return state.model_copy(update={"registered": True}), shipment, Outcome(outcome="accepted")
    why = _update_ignored_because(state, current, update)
    state, shipment = on_shipment_update(state, current, update, now)
    if why == "replayed webhook":
        return state, shipment, Outcome(outcome="already_registered", detail=why)
    if why is not None:
        return state, shipment, Outcome(outcome="ignored", detail=why)
    if shipment == current:
        return state, shipment, Outcome(outcome="already_registered", detail="same facts")
    return state, shipment, Outcome(outcome="updated")


def number_warnings(shipment: Shipment) -> list[NumberWarning]:
    """What looked wrong with the tracking number when the shipment was registered (pinned:
    a later edit of the format table changes nothing for it)."""
    return shipment.pinned.warnings if shipment.pinned else []


def on_number_warnings(state: ShipmentState, shipment: Shipment, now: datetime) -> Decision:
    """Ops hear once per shipment that its tracking number looks wrong: at the first
    registration (or update) that says so. The alert's key makes it once in the ledger too."""
    warnings = number_warnings(shipment)
    key = f"{shipment_key(shipment)}:alert:{AlertKind.INVALID_TRACKING_NUMBER.value}"
    if not warnings or any(n.kind == "alert" and n.key == key for n in state.notes):
        return Decision(state=state)
    detail = "; ".join(warning.message for warning in warnings)
    kind = AlertKind.INVALID_TRACKING_NUMBER
    return _raised(Decision(state=state), state, shipment, kind, key, detail, now)


def _update_ignored_because(
    state: ShipmentState, current: Shipment, update: ShipmentUpdate
) -> str | None:
    if update.shipment.tracking_number != current.tracking_number:
        return f"for another tracking number: {update.shipment.tracking_number}"
    if update.update_id is not None and remembered(update.update_id) in state.applied_update_ids:
        return "replayed webhook"
    applied_at = state.applied_update_at
    if update.updated_at is not None and applied_at is not None and update.updated_at < applied_at:
        return f"older than the applied update of {applied_at.astimezone(UTC).isoformat()}"
    return None


def record_sent(
    state: ShipmentState, send: SendNotification, sent_at: datetime, outcome: str | None = None
) -> ShipmentState:
    if any(n.idempotency_key == send.idempotency_key for n in state.notifications):
        return state
    sent = SentNotification(
        idempotency_key=send.idempotency_key,
        trigger=send.trigger,
        channel=send.channel,
        exception=send.exception,
        sent_at=sent_at,
        outcome=outcome,
    )
    notifications = [*state.notifications, sent][-MAX_NOTIFICATIONS:]
    return state.model_copy(update={"notifications": notifications})


def on_send_outcome(
    state: ShipmentState,
    send: SendNotification,
    outcome: str,
    shipment: Shipment,
    policy: TrackingPolicy,
) -> Decision:
    """What a message's outcome asks for next: an email its provider refused for good
    (`<provider>:failed:<code>`) becomes a text, if the policy says so and the customer has a
    consenting phone that this message's episode has not texted yet."""
    failed = ":failed:" in outcome
    if not (failed and send.channel == Channel.EMAIL and policy.sms_fallback_on_email_failure):
        return Decision(state=state)
    customer = shipment.customer
    key = f"{_episode_key(send)}:{Channel.SMS}"
    decided = {n.idempotency_key for n in state.notifications}
    decided |= {p.send.idempotency_key for p in state.pending}
    if not (customer.phone and customer.sms_consent) or key in decided:
        return Decision(state=state)
    text = send.model_copy(update={"idempotency_key": key, "channel": Channel.SMS})
    text = text.model_copy(update={"to": customer.phone})
    return Decision(state=state, sends=[text])


def is_finished(state: ShipmentState) -> bool:
    return state.closed_reason is not None and not state.pending


# --- events -------------------------------------------------------------------------------


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
    return _noted(state, Note(kind="implausible_timestamp", key=key, detail=detail, at=now))


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


def phase_at(rank: int) -> Phase:
    return Phase.PENDING if rank < 0 else Phase(Milestone.at(rank))


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


def _counted_messages(state: ShipmentState) -> list[ExceptionMessage]:
    """The exception/lost messages the cap counts: all decided, except a last one that never
    reached anyone (held for quiet hours, then dropped as over): the next one takes its place."""
    messages = state.exception_messages
    if not messages:
        return messages
    prefix = messages[-1].episode_key + ":"
    keys = [n.idempotency_key for n in state.notifications]
    keys += [p.send.idempotency_key for p in state.pending]
    return messages if any(k.startswith(prefix) for k in keys) else messages[:-1]


def _capped_because(
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


def _count_exception_message(
    state: ShipmentState, send: SendNotification, kind: ExceptionKind, now: datetime
) -> ShipmentState:
    message = ExceptionMessage(episode_key=_episode_key(send), kind=kind, decided_at=now)
    messages = [*_counted_messages(state), message][-MAX_EXCEPTION_MESSAGES:]
    return state.model_copy(update={"exception_messages": messages})


def _suppressed(
    state: ShipmentState, entry: TimelineEntry, send: SendNotification, why: str, now: datetime
) -> ShipmentState:
    """The exception still moves the state on; only its message is held back, for good."""
    noted = entry.model_copy(update={"effect": f"{entry.effect}, message suppressed ({why})"})
    timeline = [noted if e is entry else e for e in state.timeline]
    detail = f"{send.exception}: {why}"
    note = Note(kind="suppressed", key=_episode_key(send), detail=detail, at=now)
    return _noted(state.model_copy(update={"timeline": timeline}), note)


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


def _sends(
    state: ShipmentState,
    shipment: Shipment,
    policy: TrackingPolicy,
    trigger: Trigger,
    episode_tag: str,
    now: datetime,
    *,
    event: CarrierEvent | None = None,
) -> list[SendNotification]:
    is_exception = trigger == Trigger.EXCEPTION
    told_at = max(now, event.occurred_at) if event else now
    estimate = tellable_estimate(state.estimated_delivery, told_at, customer_zone(shipment, policy))
    return [
        SendNotification(
            idempotency_key=idempotency_key(shipment, trigger, episode_tag, channel),
            trigger=trigger,
            channel=channel,
            to=to,
            exception=state.open_exception if is_exception else None,
            episode=_episode_number(state, trigger),
            tone=tone_for(shipment, policy),
            estimated_delivery=estimate,
            event_description=event.description if event else None,
            event_location=event.location if event else None,
            hold_until=event.hold_until if event else None,
            revived=episode_tag.startswith("revived-"),
        )
        for channel, to in channels_for(shipment, policy)
    ]


def _episode_number(state: ShipmentState, trigger: Trigger) -> int:
    return {
        Trigger.EXCEPTION: state.exception_episode,
        Trigger.LOST: state.lost_episode,
        Trigger.STALE: state.stale_episode,
    }.get(trigger, 0)


# --- send windows (quiet hours) -----------------------------------------------------------


def _schedule(
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
    return _with_sends(decision, ready, shipment, now)


def _next_send_time(
    channel: Channel, shipment: Shipment, policy: TrackingPolicy, now: datetime
) -> datetime:
    return next_send_time(
        now, customer_zone(shipment, policy), send_window(channel, shipment, policy)
    )


def send_window(channel: Channel, shipment: Shipment, policy: TrackingPolicy) -> SendWindow:
    region = customer_region(shipment, policy)
    return window_for(channel, region, policy, policy.stricter_sms_windows)


def _release_pending(
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
    return _with_sends(decision.model_copy(update={"state": state}), ready, shipment, now)


def _released(
    send: SendNotification, shipment: Shipment, policy: TrackingPolicy, now: datetime
) -> SendNotification:
    """A held message as it goes out: an estimate that was still ahead when it was decided
    may be over by the time the window opens."""
    zone = customer_zone(shipment, policy)
    estimate = tellable_estimate(send.estimated_delivery, now, zone)
    return send.model_copy(update={"held_until": now, "estimated_delivery": estimate})


def _drop_obsolete(state: ShipmentState, now: datetime) -> ShipmentState:
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
    if send.trigger in _DELAY_TRIGGERS and state.rank >= DELIVERED_RANK > pending.rank:
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


def _with_sends(
    decision: Decision, sends: list[SendNotification], shipment: Shipment, now: datetime
) -> Decision:
    """Add sends. When a delay message goes out, tag the customer's open helpdesk tickets
    (with a private note saying what was sent) and put them on the delayed-shipments list."""
    tags = list(decision.tags)
    segments = list(decision.segments)
    state = decision.state
    for trigger, told in _by_trigger(sends):
        if trigger not in _DELAY_TRIGGERS:
            continue
        key = _episode_key(told[0]) + f":helpdesk:{AUTO_DELAY_NOTIFIED}"
        if any(n.key == key for n in state.notes):
            continue
        wanted = [AUTO_DELAY_NOTIFIED] + ([LOST_PACKAGE_TAG] if trigger == Trigger.LOST else [])
        tags.append(
            TagHelpdesk(
                idempotency_key=key,
                tag=AUTO_DELAY_NOTIFIED,
                tags=wanted,
                customer_email=shipment.customer.email,
                customer_phone=shipment.customer.phone,
                tracking_number=shipment.tracking_number,
                order_id=shipment.order_id,
                note=_helpdesk_note(state, shipment, told, now),
            )
        )
        state = _noted(state, Note(kind="helpdesk", key=key, detail="+".join(wanted), at=now))
        if not state.delayed_list_member:
            state, segment = _delayed_list_change(state, shipment, member=True)
            segments.append(segment)
        state = state.model_copy(update={"delayed_list_scan": state.last_scan_at})
    return decision.model_copy(
        update={
            "state": state,
            "sends": [*decision.sends, *sends],
            "tags": tags,
            "segments": segments,
        }
    )


def _by_trigger(sends: list[SendNotification]) -> list[tuple[Trigger, list[SendNotification]]]:
    grouped: dict[Trigger, list[SendNotification]] = {}
    for send in sends:
        grouped.setdefault(send.trigger, []).append(send)
    return list(grouped.items())


def _helpdesk_note(
    state: ShipmentState, shipment: Shipment, told: list[SendNotification], now: datetime
) -> str:
    """The private note an agent reads on the customer's ticket."""
    first = told[0]
    what = first.trigger.value.replace("_", " ") + (
        f" ({first.exception.value.replace('_', ' ')})" if first.exception else ""
    )
    channels = " and ".join(send.channel.value.replace("sms", "SMS") for send in told)
    carrier = shipment.carrier or "the carrier"
    lines = [
        f"trackflow told the customer: {what}, by {channels}, at {now:%Y-%m-%d %H:%M} UTC.",
        f"Live status: {state.phase.value.replace('_', ' ')} with {carrier}"
        + (
            f", estimated delivery {state.estimated_delivery:%Y-%m-%d}"
            if state.estimated_delivery
            else ""
        )
        + ".",
    ]
    if link := carrier_page(shipment):
        lines.append(f"Tracking: {link}")
    lines.append(f"Order {shipment.order_name or shipment.order_id}, {shipment.tracking_number}.")
    return "\n".join(lines)


def carrier_page(shipment: Shipment) -> str | None:
    return web_link(shipment.tracking_url) or courier_tracking_url(
        shipment.carrier, shipment.tracking_number
    )


def _delayed_list_change(
    state: ShipmentState, shipment: Shipment, *, member: bool
) -> tuple[ShipmentState, SyncDelayedList]:
    changes = state.delayed_list_changes + 1
    segment = SyncDelayedList(
        idempotency_key=f"{shipment_key(shipment)}:delayed-list:{changes}:"
        + ("add" if member else "remove"),
        member=member,
        customer_email=shipment.customer.email,
        customer_phone=shipment.customer.phone,
        first_name=shipment.customer.first_name,
        tracking_number=shipment.tracking_number,
        order_id=shipment.order_id,
    )
    state = state.model_copy(
        update={"delayed_list_member": member, "delayed_list_changes": changes}
    )
    return state, segment


def _delay_over(state: ShipmentState) -> bool:
    """The delay the customer was told of is over: delivered (or returned, cancelled), or a
    newer scan arrived with no exception open and the parcel not lost."""
    if state.phase in (Phase.DELIVERED, Phase.RETURNED, Phase.CANCELLED):
        return True
    moved = state.last_scan_at != state.delayed_list_scan
    return moved and state.open_exception is None and not state.lost


def _leave_delayed_list(decision: Decision, shipment: Shipment) -> Decision:
    state = decision.state
    if not (state.delayed_list_member and _delay_over(state)):
        return decision
    state, segment = _delayed_list_change(state, shipment, member=False)
    return decision.model_copy(update={"state": state, "segments": [*decision.segments, segment]})


def _episode_key(send: SendNotification) -> str:
    return send.idempotency_key.rsplit(":", 1)[0]


def _review_skipped_if_trouble(state: ShipmentState, now: datetime) -> ShipmentState:
    """No review request for a customer who had trouble: noted once, no timer left for it."""
    if not state.trouble or state.review is not None:
        return state
    note = Note(kind="review", key="review", detail=f"skipped: {state.trouble[-1]}", at=now)
    return _noted(state.model_copy(update={"review": "skipped"}), note)


def _noted(state: ShipmentState, note: Note) -> ShipmentState:
    return state.with_notes(note)


def _safe_id(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)[:80]


# --- timers -------------------------------------------------------------------------------


def _fire(
    timer: Timer, decision: Decision, shipment: Shipment, policy: TrackingPolicy, now: datetime
) -> Decision:
    state = decision.state
    match timer.kind:
        case TimerKind.PICKUP_GAP:
            state = state.model_copy(update={"pickup_gap_alerted": True})
            decision = _alert(decision, state, shipment, AlertKind.PICKUP_GAP, timer, now)
            if policy.pickup_gap_customer_message:
                sends = _sends(decision.state, shipment, policy, Trigger.STALE, "pickup-gap", now)
                decision = _schedule(decision, sends, shipment, policy, now)
            return decision
        case TimerKind.STALE:
            episode = state.stale_episode + 1
            state = state.model_copy(
                update={"stale_episode": episode, "stale_notified_for": state.last_scan_at}
            )
            sends = _sends(state, shipment, policy, Trigger.STALE, str(episode), now)
            return _schedule(
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
            state = _drop_obsolete(state, now)  # before counting: a dropped one gives its slot
            decision = _alert(decision, state, shipment, AlertKind.LOST, timer, now)
            sends = _sends(decision.state, shipment, policy, Trigger.LOST, str(episode), now)
            if sends:  # always goes out, and counts for the exception message cap
                state = _count_exception_message(decision.state, sends[0], ExceptionKind.LOST, now)
                decision = decision.model_copy(update={"state": state})
            return _schedule(decision, sends, shipment, policy, now)
        case TimerKind.REVIEW_REQUEST:
            if state.trouble:
                state = _review_skipped_if_trouble(state, now)
                return decision.model_copy(update={"state": state})
            state = state.model_copy(update={"review": "sent"})
            sends = _sends(state, shipment, policy, Trigger.REVIEW_REQUEST, "1", now)
            return _schedule(
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


def _alert(
    decision: Decision,
    state: ShipmentState,
    shipment: Shipment,
    kind: AlertKind,
    timer: Timer,
    now: datetime,
) -> Decision:
    key = f"{shipment_key(shipment)}:alert:{kind.value}:{state.lost_episode}"
    return _raised(decision, state, shipment, kind, key, timer.detail, now)


def _raised(
    decision: Decision,
    state: ShipmentState,
    shipment: Shipment,
    kind: AlertKind,
    key: str,
    detail: str,
    now: datetime,
) -> Decision:
    alert = RaiseAlert(
        idempotency_key=key,
        alert=kind,
        tracking_number=shipment.tracking_number,
        order_id=shipment.order_id,
        summary=f"{shipment.carrier or 'carrier'} {shipment.tracking_number} "
        f"(order {shipment.order_name or shipment.order_id}): {detail}",
        raised_at=now,
        carrier=shipment.carrier,
        first_name=shipment.customer.first_name,
        already_sent=already_sent(state),
        carrier_url=carrier_page(shipment),
        workflow_id=shipment.workflow_id,
    )
    state = _noted(state, Note(kind="alert", key=key, detail=detail, at=now))
    return decision.model_copy(update={"state": state, "alerts": [*decision.alerts, alert]})


def on_integration_gave_up(
    state: ShipmentState, key: str, why: str, now: datetime
) -> ShipmentState:
    """An integration (Slack, helpdesk, Klaviyo) stayed down past its retries: say so where
    ops look at the shipment."""
    return _noted(state, Note(kind="integration", key=key, detail=why[:300], at=now))


def already_sent(state: ShipmentState) -> list[str]:
    """What the customer was told so far, one line per message, for an alert."""
    return [
        f"{n.trigger.value.replace('_', ' ')} {n.channel.value} {n.sent_at:%Y-%m-%d %H:%M} UTC"
        + (f" ({n.outcome})" if n.outcome and n.outcome not in ("outbox", "sent") else "")
        for n in state.notifications[-10:]
    ]


# --- what ops see -------------------------------------------------------------------------


def next_action(state: ShipmentState, shipment: Shipment, policy: TrackingPolicy) -> NextAction:
    zone = customer_zone(shipment, policy)
    timers = due_timers(state, shipment, policy)
    if not timers:
        if state.closed_reason:
            return NextAction(kind="complete", detail=state.closed_reason, timezone=zone)
        return NextAction(kind="await_carrier_event", timezone=zone)
    timer = timers[0]
    return NextAction(
        kind=timer.kind.value,
        due_at=timer.due_at,
        due_local=format_local(timer.due_at, zone),
        timezone=zone,
        detail=timer.detail,
    )


def view(state: ShipmentState, shipment: Shipment, policy: TrackingPolicy) -> ShipmentView:
    """The internal view (the workflow's query answer); `ShipmentView.public()` is the API's."""
    zone = customer_zone(shipment, policy)
    return ShipmentView(
        workflow_id=shipment.workflow_id,
        tracking_number=shipment.tracking_number,
        order_id=shipment.order_id,
        status=state.phase,
        exception=state.open_exception if state.phase == Phase.EXCEPTION else None,
        carrier=shipment.carrier,
        carrier_label=shipment.carrier_label
        if shipment.carrier_label != shipment.carrier
        else None,
        declared_carrier=shipment.declared_carrier,
        timezone=zone,
        estimated_delivery=state.estimated_delivery,
        closed_reason=state.closed_reason,
        timeline=state.timeline,
        timeline_omitted=state.timeline_omitted,
        notifications=[
            NotificationView(
                trigger=n.trigger,
                channel=n.channel,
                exception=n.exception,
                sent_at=n.sent_at,
                outcome=n.outcome,
            )
            for n in state.notifications
        ],
        waiting=[_held(pending, shipment, policy, zone) for pending in state.pending],
        notes=state.notes,
        notes_omitted=state.notes_omitted,
        unrecognised_codes=state.unrecognised_codes,
        warnings=number_warnings(shipment),
        next_action=next_action(state, shipment, policy),
        time_scale=policy.time_scale if policy.time_scale != 1 else None,
    )


def _held(
    pending: PendingSend, shipment: Shipment, policy: TrackingPolicy, zone: str
) -> HeldMessage:
    channel = pending.send.channel
    region = customer_region(shipment, policy)
    window = send_window(channel, shipment, policy)
    why = "held for the customer's send window (quiet hours)"
    if not window.always_open:
        hours = f"{window.start:%H:%M}-{window.end:%H:%M}"
        why = f"quiet hours: {channel.value} goes out {hours} {zone} time"
        if channel == Channel.SMS and region and region.upper() in policy.stricter_sms_windows:
            why += f" ({region}'s rule for texts)"
    return HeldMessage(**dict(pending), due_local=format_local(pending.due_at, zone), why=why)
