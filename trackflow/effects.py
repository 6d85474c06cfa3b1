"""What the policy asks the durable shell to do: each is carried out exactly once per key."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import Field

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
    decided_at: datetime | None = None
    """When the policy decided it (the carrier event or timer it answers was handled)."""
    held_until: datetime | None = None
    """When it was released, if the customer's send window held it (quiet hours)."""


class AlertKind(StrEnum):
    LOST = "lost"
    PICKUP_GAP = "pickup_gap"
    CARRIER_API_OUTAGE = "carrier_api_outage"
    CARRIER_API_RECOVERED = "carrier_api_recovered"
    PROVIDER_OUTAGE = "provider_outage"
    PROVIDER_RECOVERED = "provider_recovered"
    UNCERTAIN_SEND = "uncertain_send"
    """A customer message a crash left unknown: the provider cannot tell whether it got it."""
    RETURN_OPENED = "return_opened"
    INVALID_TRACKING_NUMBER = "invalid_tracking_number"
    """The number does not fit the carrier it was registered with (`NumberWarning`)."""


class RaiseAlert(Model):
    """An internal alert to the merchant's ops channel (Slack later; the ledger now)."""

    idempotency_key: str
    alert: AlertKind
    tracking_number: str
    order_id: str
    summary: str
    raised_at: datetime
    # What an agent needs to act without opening anything else (absent in older histories).
    carrier: str | None = None
    first_name: str | None = None
    """The customer's first name only: an alert channel is no place for personal data."""
    already_sent: list[str] = Field(default_factory=list)
    """What the customer was already told, one line each: "delayed email 2026-12-01 09:02 UTC"."""
    carrier_url: str | None = None
    workflow_id: str | None = None


class TagHelpdesk(Model):
    """Tag the customer in the helpdesk so agents see what we already told them."""

    idempotency_key: str
    tag: str
    customer_email: str | None
    customer_phone: str | None
    tracking_number: str
    order_id: str
    note: str
    tags: list[str] = Field(default_factory=list)
    """Every tag to add, `tag` first (older histories carry `tag` alone)."""

    @property
    def all_tags(self) -> list[str]:
        return self.tags or [self.tag]


class SyncDelayedList(Model):
    """Put the customer on the merchant's "delayed shipments" list (Klaviyo), or take them off
    once the delay is over; a no-op where no list is configured."""

    idempotency_key: str
    member: bool
    customer_email: str | None
    customer_phone: str | None
    first_name: str | None
    tracking_number: str
    order_id: str


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
