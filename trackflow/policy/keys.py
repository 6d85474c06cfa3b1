"""The keys that make each effect once: the shipment's business identity and the episode."""

from __future__ import annotations

from trackflow.effects import SendNotification
from trackflow.idempotency import IdempotencyKey
from trackflow.models import Channel, Shipment, Trigger


def shipment_key(shipment: Shipment) -> str:
    """The shipment's business identity in effect keys: carriers recycle tracking numbers, so
    the order (and fulfillment) is part of it."""
    order = shipment.order_id + (f"/{shipment.fulfillment_id}" if shipment.fulfillment_id else "")
    return f"{shipment.tracking_number}/" + order.replace("%", "%25").replace(":", "%3A")


def idempotency_key(shipment: Shipment, trigger: Trigger, episode: str, channel: Channel) -> str:
    return str(IdempotencyKey.message(shipment_key(shipment), trigger, episode, channel))


def episode_key(send: SendNotification) -> str:
    return str(IdempotencyKey.parse(send.idempotency_key).episode)


def safe_id(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)[:80]
