"""The messages a trigger decides, and what their outcomes ask for next."""

from __future__ import annotations

from datetime import datetime

from trackflow.effects import SendNotification
from trackflow.estimates import tellable_estimate
from trackflow.idempotency import IdempotencyKey
from trackflow.models import CarrierEvent, Channel, Shipment, Trigger
from trackflow.policy.audience import channels_for, customer_zone, tone_for
from trackflow.policy.keys import idempotency_key
from trackflow.send_outcome import SendOutcome, SendStatus
from trackflow.shipment_state import MAX_NOTIFICATIONS, Decision, SentNotification, ShipmentState
from trackflow.tracking_policy import TrackingPolicy


def sends_for(
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


def record_sent(
    state: ShipmentState,
    send: SendNotification,
    sent_at: datetime,
    outcome: SendOutcome | None = None,
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
    outcome: SendOutcome,
    shipment: Shipment,
    policy: TrackingPolicy,
) -> Decision:
    """What a message's outcome asks for next: an email its provider refused for good
    (`SendStatus.FAILED`) becomes a text, if the policy says so and the customer has a
    consenting phone that this message's episode has not texted yet."""
    failed = outcome.status is SendStatus.FAILED
    if not (failed and send.channel == Channel.EMAIL and policy.sms_fallback_on_email_failure):
        return Decision(state=state)
    customer = shipment.customer
    key = str(IdempotencyKey.parse(send.idempotency_key).episode.child(Channel.SMS))
    decided = {n.idempotency_key for n in state.notifications}
    decided |= {p.send.idempotency_key for p in state.pending}
    if not (customer.phone and customer.sms_consent) or key in decided:
        return Decision(state=state)
    text = send.model_copy(update={"idempotency_key": key, "channel": Channel.SMS})
    text = text.model_copy(update={"to": customer.phone})
    return Decision(state=state, sends=[text])
