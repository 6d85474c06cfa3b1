"""Who is told, by which channel and in which tone, in which zone and region."""

from __future__ import annotations

from trackflow.carriers import courier_tracking_url
from trackflow.effects import Tone
from trackflow.links import web_link
from trackflow.models import Channel, Shipment
from trackflow.pinning import pinned_facts
from trackflow.tracking_policy import TrackingPolicy


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


def customer_zone(shipment: Shipment, policy: TrackingPolicy) -> str:
    return pinned_facts(shipment, policy).timezone


def customer_region(shipment: Shipment, policy: TrackingPolicy) -> str | None:
    return pinned_facts(shipment, policy).region


def carrier_page(shipment: Shipment) -> str | None:
    return web_link(shipment.tracking_url) or courier_tracking_url(
        shipment.carrier, shipment.tracking_number
    )
