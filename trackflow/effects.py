"""What the policy asks the durable shell to do: each is carried out exactly once per key."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from trackflow.models import Channel, ExceptionKind, Model, ReturnRequest, Trigger


class Tone(StrEnum):
    NEW_CUSTOMER = "new_customer"
    RETURNING_CUSTOMER = "returning_customer"


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
    hold_until: date | None = None
    revived: bool = False
    """An in-transit message sent because a package we had declared lost moved again."""


class AlertKind(StrEnum):
    LOST = "lost"
    PICKUP_GAP = "pickup_gap"
    CARRIER_API_OUTAGE = "carrier_api_outage"
    CARRIER_API_RECOVERED = "carrier_api_recovered"
    PROVIDER_OUTAGE = "provider_outage"
    PROVIDER_RECOVERED = "provider_recovered"
    UNCERTAIN_SEND = "uncertain_send"
    """A customer message a crash left unknown: the provider cannot tell whether it got it."""


class RaiseAlert(Model):
    """An internal alert to the merchant's ops channel (Slack later; the ledger now)."""

    idempotency_key: str
    alert: AlertKind
    tracking_number: str
    order_id: str
    summary: str
    raised_at: datetime


class TagHelpdesk(Model):
    """Tag the customer in the helpdesk so agents see what we already told them."""

    idempotency_key: str
    tag: str
    customer_email: str | None
    customer_phone: str | None
    tracking_number: str
    order_id: str
    note: str


AUTO_DELAY_NOTIFIED = "auto_delay_notified"
RETURN_REQUESTED_TAG = "return_requested"
LOST_PACKAGE_TAG = "lost_package"


class StartReturn(Model):
    """Start the returns workflow for a request made within the window after delivery."""

    workflow_id: str
    request: ReturnRequest


class PollCarrier(Model):
    """Ask an aggregator's API for the tracker's current events (shipments without webhooks)."""

    provider: str
    tracking_number: str
    carrier: str | None
    attempt: int
    newest_known: datetime | None = None
    """Only events that occurred at or after it come back (the shipment has the older ones;
    the newest is sent again when it shares its second with a new one, and deduplicated)."""
