"""The policy: (state, event or timer, order, TrackingPolicy) -> (new state, decisions).

Pure and deterministic: the workflow feeds it signals and timers and carries out what it
returns; the tests drive it with a fake clock.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import Field

from trackflow.models import (
    CarrierEvent,
    CarrierStatus,
    Channel,
    ExceptionKind,
    Model,
    Shipment,
    Trigger,
)
from trackflow.tracking_policy import TrackingPolicy

MAX_REMEMBERED_EVENT_KEYS = 500

_MILESTONE_RANK: dict[CarrierStatus, int] = {
    CarrierStatus.LABEL_CREATED: 0,
    CarrierStatus.IN_TRANSIT: 1,
    CarrierStatus.OUT_FOR_DELIVERY: 2,
    CarrierStatus.DELIVERED: 3,
}
_MILESTONE_TRIGGER: dict[CarrierStatus, Trigger] = {
    CarrierStatus.LABEL_CREATED: Trigger.LABEL_CREATED,
    CarrierStatus.IN_TRANSIT: Trigger.IN_TRANSIT,
    CarrierStatus.OUT_FOR_DELIVERY: Trigger.OUT_FOR_DELIVERY,
    CarrierStatus.DELIVERED: Trigger.DELIVERED,
}
DELIVERED_RANK = _MILESTONE_RANK[CarrierStatus.DELIVERED]


class Phase(StrEnum):
    """Where the shipment stands; shown in the API and the `TrackflowStatus` search attribute."""

    PENDING = "pending"
    LABEL_CREATED = "label_created"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    RETURNED = "returned"
    CANCELLED = "cancelled"


class Tone(StrEnum):
    NEW_CUSTOMER = "new_customer"
    RETURNING_CUSTOMER = "returning_customer"


class TimelineEntry(Model):
    status: CarrierStatus
    exception: ExceptionKind | None = None
    occurred_at: datetime
    received_at: datetime
    description: str | None = None
    location: str | None = None
    source: str = "api"
    effect: str = Field(description="what the policy did with the event, for ops")


class SendNotification(Model):
    """One message to one channel; carried out by the send activity exactly once per key."""

    idempotency_key: str
    trigger: Trigger
    channel: Channel
    to: str
    exception: ExceptionKind | None = None
    episode: int = 0
    tone: Tone = Tone.NEW_CUSTOMER
    estimated_delivery: date | None = None
    event_description: str | None = None
    event_location: str | None = None


class SentNotification(Model):
    idempotency_key: str
    trigger: Trigger
    channel: Channel
    exception: ExceptionKind | None = None
    sent_at: datetime


class ShipmentState(Model):
    phase: Phase = Phase.PENDING
    rank: int = -1
    last_milestone_at: datetime | None = None
    open_exception: ExceptionKind | None = None
    exception_episode: int = 0
    delivered_seen_at: datetime | None = None
    closed_reason: str | None = None
    estimated_delivery: date | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)
    seen_event_keys: list[str] = Field(default_factory=list)
    notifications: list[SentNotification] = Field(default_factory=list)


class Decision(Model):
    state: ShipmentState
    sends: list[SendNotification] = Field(default_factory=list)


class NextAction(Model):
    kind: str
    due_at: datetime | None = None


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


def idempotency_key(shipment: Shipment, trigger: Trigger, episode: str, channel: Channel) -> str:
    return f"{shipment.workflow_id}:{trigger}:{episode}:{channel}"


def on_event(
    state: ShipmentState,
    event: CarrierEvent,
    shipment: Shipment,
    policy: TrackingPolicy,
    now: datetime,
) -> Decision:
    key = event.dedupe_key
    if key in state.seen_event_keys or event.tracking_number != shipment.tracking_number:
        return Decision(state=state)
    seen = [*state.seen_event_keys, key][-MAX_REMEMBERED_EVENT_KEYS:]
    eta = event.estimated_delivery or state.estimated_delivery

    changes, trigger, episode_tag, effect = _classify(state, event)
    entry = TimelineEntry(
        status=event.status,
        exception=None if event.status in _MILESTONE_RANK else _exception_kind(event),
        occurred_at=event.occurred_at,
        received_at=now,
        description=event.description,
        location=event.location,
        source=event.source,
        effect=effect,
    )
    if changes.get("phase") == Phase.DELIVERED:
        changes["delivered_seen_at"] = now
    timeline = sorted([*state.timeline, entry], key=lambda e: e.occurred_at)
    new_state = state.model_copy(
        update={**changes, "seen_event_keys": seen, "estimated_delivery": eta, "timeline": timeline}
    )
    if trigger is None:
        return Decision(state=new_state)
    sends = _sends(new_state, shipment, policy, trigger, episode_tag, event)
    return Decision(state=new_state, sends=sends)


def _classify(
    state: ShipmentState, event: CarrierEvent
) -> tuple[dict[str, object], Trigger | None, str, str]:
    """What the event changes, which message it triggers (if any), and why, in words."""
    if state.closed_reason:
        return {}, None, "", f"ignored: shipment {state.closed_reason}"

    if event.status in _MILESTONE_RANK:
        rank = _MILESTONE_RANK[event.status]
        if rank <= state.rank:
            return {}, None, "", "ignored: milestone already reached"
        changes: dict[str, object] = {
            "rank": rank,
            "phase": Phase(event.status.value),
            "last_milestone_at": event.occurred_at,
            "open_exception": None,
        }
        return changes, _MILESTONE_TRIGGER[event.status], "1", "milestone"

    if state.rank >= DELIVERED_RANK:
        return {}, None, "", "ignored: already delivered"
    if state.last_milestone_at and event.occurred_at < state.last_milestone_at:
        return {}, None, "", "ignored: older than the last milestone"

    kind = _exception_kind(event)
    changes = {"phase": Phase.EXCEPTION, "open_exception": kind}
    if event.status == CarrierStatus.RETURNED:
        changes.update(phase=Phase.RETURNED, closed_reason="returned to sender")
    if state.open_exception == kind:
        return changes, None, "", "ignored: same exception still open"
    episode = state.exception_episode + 1
    changes["exception_episode"] = episode
    return changes, Trigger.EXCEPTION, f"{episode}-{kind}", "exception"


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
    event: CarrierEvent,
) -> list[SendNotification]:
    tone = tone_for(shipment, policy)
    return [
        SendNotification(
            idempotency_key=idempotency_key(shipment, trigger, episode_tag, channel),
            trigger=trigger,
            channel=channel,
            to=to,
            exception=state.open_exception if trigger == Trigger.EXCEPTION else None,
            episode=state.exception_episode if trigger == Trigger.EXCEPTION else 0,
            tone=tone,
            estimated_delivery=state.estimated_delivery,
            event_description=event.description,
            event_location=event.location,
        )
        for channel, to in channels_for(shipment, policy)
    ]


def record_sent(state: ShipmentState, send: SendNotification, sent_at: datetime) -> ShipmentState:
    if any(n.idempotency_key == send.idempotency_key for n in state.notifications):
        return state
    sent = SentNotification(
        idempotency_key=send.idempotency_key,
        trigger=send.trigger,
        channel=send.channel,
        exception=send.exception,
        sent_at=sent_at,
    )
    return state.model_copy(update={"notifications": [*state.notifications, sent]})


def on_cancel(state: ShipmentState, reason: str) -> ShipmentState:
    if state.closed_reason:
        return state
    return state.model_copy(
        update={"phase": Phase.CANCELLED, "closed_reason": f"cancelled: {reason}"}
    )


def on_shipment_update(current: Shipment, update: Shipment) -> Shipment:
    """Later facts replace earlier ones, but a workflow never changes tracking number."""
    if update.tracking_number != current.tracking_number:
        raise ValueError("shipment update is for another tracking number")
    return update


def next_action(state: ShipmentState, shipment: Shipment, policy: TrackingPolicy) -> NextAction:
    if state.closed_reason:
        return NextAction(kind="complete")
    if state.delivered_seen_at is not None:
        hold = policy.timings(shipment.shipping_speed).post_delivery_hold
        return NextAction(kind="close_after_delivery", due_at=state.delivered_seen_at + hold)
    return NextAction(kind="await_carrier_event")


def is_finished(
    state: ShipmentState, shipment: Shipment, policy: TrackingPolicy, now: datetime
) -> bool:
    action = next_action(state, shipment, policy)
    if action.kind == "complete":
        return True
    return (
        action.due_at is not None and now >= action.due_at and action.kind == "close_after_delivery"
    )


class NotificationView(Model):
    trigger: Trigger
    channel: Channel
    exception: ExceptionKind | None = None
    sent_at: datetime


class ShipmentView(Model):
    """What `GET /v1/shipments/{n}` and `trackflow shipment show` display."""

    workflow_id: str
    tracking_number: str
    order_id: str
    status: Phase
    exception: ExceptionKind | None = None
    carrier: str | None
    estimated_delivery: date | None = None
    closed_reason: str | None = None
    timeline: list[TimelineEntry]
    notifications: list[NotificationView]
    next_action: NextAction


def view(state: ShipmentState, shipment: Shipment, policy: TrackingPolicy) -> ShipmentView:
    return ShipmentView(
        workflow_id=shipment.workflow_id,
        tracking_number=shipment.tracking_number,
        order_id=shipment.order_id,
        status=state.phase,
        exception=state.open_exception if state.phase == Phase.EXCEPTION else None,
        carrier=shipment.carrier,
        estimated_delivery=state.estimated_delivery,
        closed_reason=state.closed_reason,
        timeline=state.timeline,
        notifications=[
            NotificationView(
                trigger=n.trigger, channel=n.channel, exception=n.exception, sent_at=n.sent_at
            )
            for n in state.notifications
        ],
        next_action=next_action(state, shipment, policy),
    )
