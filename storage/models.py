"""The values the ledger stores and answers with: records, states, claims, figures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class CustomerShipment(BaseModel):
    """A shipment a customer's email digest was registered with (the inbound-ticket lookup)."""

    model_config = ConfigDict(frozen=True)

    email_digest: str
    tracking_number: str
    order_id: str
    workflow_id: str
    registered_at: datetime
    tracking_url: str | None = None


class BaselineWeek(BaseModel):
    """A week before trackflow, as the merchant imported it: WISMO tickets per shipments."""

    model_config = ConfigDict(frozen=True)

    week_start: date  # a Monday
    shipments: int = Field(ge=0)
    wismo_tickets: int = Field(ge=0)


class PageVisit(BaseModel):
    """A view of a tracking page; `message_key` when it came from a message's link."""

    model_config = ConfigDict(frozen=True)

    page_token: str
    message_key: str | None
    at: datetime


class Suppression(BaseModel):
    """An address the merchant may not contact on a channel, and why (since when)."""

    model_config = ConfigDict(frozen=True)

    channel: str
    address: str
    reason: str
    at: datetime


class Purged(BaseModel):
    """What a retention purge deleted."""

    shipments: int
    tickets: int
    page_visits: int


class TicketRecord(BaseModel):
    """One inbound helpdesk ticket, anonymised for the WISMO analytics: no email, no text."""

    model_config = ConfigDict(frozen=True)

    helpdesk: str
    ticket_id: str
    received_at: datetime
    created_at: datetime | None = None
    tracking_number: str | None = None
    intent: str
    already_notified: bool | None = None
    language: str
    rule: str | None = None

    @field_validator("received_at", "created_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("needs a time zone")
        return value.astimezone(UTC)


class LedgerRecord(BaseModel):
    """One message (or alert, or helpdesk ticket) that went out."""

    model_config = ConfigDict(frozen=True)

    idempotency_key: str
    kind: Literal["message", "alert", "helpdesk", "klaviyo"] = "message"
    tracking_number: str
    order_id: str
    trigger: str
    exception: str | None = None
    channel: str
    to: str
    subject: str | None = None
    body: str
    html: str | None = None
    transport: str
    provider_message_id: str | None = None
    sent_at: datetime
    decided_at: datetime | None = None  # a message: when the policy decided it
    held_until: datetime | None = None  # a message its send window held: when released

    @field_validator("sent_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("sent_at needs a time zone")
        return value.astimezone(UTC)


class MessageState(BaseModel):
    """A ledger row whatever its status, with what providers said about it since."""

    model_config = ConfigDict(frozen=True)

    idempotency_key: str
    status: Literal["sending", "sent", "failed", "uncertain", "suppressed"]
    kind: str | None
    tracking_number: str | None
    order_id: str | None
    trigger: str | None
    exception: str | None
    channel: str | None
    to: str | None
    subject: str | None
    transport: str | None
    provider_message_id: str | None
    owner: str | None
    lease_until: datetime | None
    attempts: int
    claimed_at: datetime | None
    sent_at: datetime | None
    error_code: str | None
    """The provider's code for a refusal ('21610', '400'), a suppression's reason, or the
    error code of the latest delivery feedback."""
    error_detail: str | None
    delivery_status: str | None
    delivery_status_at: datetime | None
    delivered_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    decided_at: datetime | None = None
    held_until: datetime | None = None


@dataclass(frozen=True)
class MessageCount:
    """How many ledger rows share these values (`error_code`: failed rows only, else None)."""

    kind: str | None
    trigger: str | None
    channel: str | None
    status: str
    transport: str | None
    error_code: str | None
    count: int


@dataclass(frozen=True)
class LatencyHistogram:
    """Seconds from the policy's decision to the provider's receipt (sent_at - decided_at,
    0 when negative) of a channel's sent customer messages that have both times."""

    channel: str | None
    buckets: tuple[float, ...]  # upper bounds, ascending
    cumulative: tuple[int, ...]  # per bound: the messages at or under it
    count: int
    sum: float


@dataclass(frozen=True)
class LedgerTotals:
    """The ledger aggregated in SQL (`message_figures`): O(groups), not O(rows)."""

    counts: tuple[MessageCount, ...]
    latency: tuple[LatencyHistogram, ...]
    open_problems: int  # read-model rows with an open problem (exception, lost)
    alerts: dict[str | None, int]  # sent alert rows by kind (their trigger)


class ClaimState(StrEnum):
    NEW = "new"  # no row before: ours, nothing was sent
    RELEASED = "released"  # a 'sending' row its last owner let go of, knowing nothing went out
    EXPIRED = "sending-expired"  # a 'sending' row whose owner's lease ran out: ours, reconcile
    LIVE = "sending-live"  # someone else holds the lease: wait
    SENT = "sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    SUPPRESSED = "suppressed"


@dataclass(frozen=True)
class Claim:
    """What `claim` found under a key, and whether the caller now holds its lease."""

    ours: bool
    state: ClaimState
    row: MessageState
    record: LedgerRecord | None = None  # the stored record when state is SENT

    @property
    def owner(self) -> str | None:
        return self.row.owner

    @property
    def lease_until(self) -> datetime | None:
        return self.row.lease_until

    @property
    def claimed_at(self) -> datetime | None:
        """When the key was first claimed: the earliest any attempt can have sent it."""
        return self.row.claimed_at

    @property
    def provider_message_id(self) -> str | None:
        return self.row.provider_message_id
