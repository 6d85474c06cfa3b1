"""The policy's state for one shipment, and what it decides in one step."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from trackflow.effects import PollCarrier, RaiseAlert, SendNotification, StartReturn, TagHelpdesk
from trackflow.models import CarrierStatus, Channel, ExceptionKind, Model, Trigger


class Phase(StrEnum):
    """Where the shipment stands; shown in the API and the `TrackflowStatus` search attribute."""

    PENDING = "pending"
    LABEL_CREATED = "label_created"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    LOST = "lost"
    RETURNED = "returned"
    CANCELLED = "cancelled"


class TimelineEntry(Model):
    status: CarrierStatus
    exception: ExceptionKind | None = None
    occurred_at: datetime
    received_at: datetime
    description: str | None = None
    location: str | None = None
    source: str = "api"
    raw_code: str | None = None
    recognised: bool = True
    effect: str = Field(description="what the policy did with the event, for ops")


class SentNotification(Model):
    idempotency_key: str
    trigger: Trigger
    channel: Channel
    exception: ExceptionKind | None = None
    sent_at: datetime


class PendingSend(Model):
    """A message held back by the customer's send window (quiet hours)."""

    send: SendNotification
    due_at: datetime
    decided_at: datetime
    rank: int
    scan_marker: datetime | None


class ExceptionMessage(Model):
    """An exception or lost message decided (sent at once or held): what the cap counts."""

    episode_key: str
    kind: ExceptionKind
    decided_at: datetime


class Note(Model):
    """Something ops should see that is not a customer message: alerts, tags, drops, returns."""

    kind: Literal[
        "alert",
        "helpdesk",
        "dropped",
        "return_started",
        "return_ignored",
        "review",
        "suppressed",
        "implausible_timestamp",
        "update_ignored",
    ]
    key: str
    detail: str
    at: datetime


class ShipmentState(Model):
    phase: Phase = Phase.PENDING
    rank: int = -1
    started_at: datetime | None = None
    last_scan_at: datetime | None = Field(
        default=None, description="when we last received a carrier event newer than all before"
    )
    latest_occurred_at: datetime | None = None
    last_milestone_at: datetime | None = None
    open_exception: ExceptionKind | None = None
    exception_opened_at: datetime | None = None
    exception_episode: int = 0
    exception_messages: list[ExceptionMessage] = Field(
        default_factory=list, description="exception/lost messages decided: the frequency cap"
    )
    lost_episode: int = 0
    lost_since: datetime | None = None
    stale_episode: int = 0
    stale_notified_for: datetime | None = None
    pickup_gap_alerted: bool = False
    polls: int = 0
    last_poll_at: datetime | None = None
    push_seen: bool = Field(default=False, description="a webhook/API event arrived: stop polling")
    delivered_seen_at: datetime | None = None
    review: Literal["sent", "skipped"] | None = None
    trouble: list[str] = Field(default_factory=list, description="why no review request")
    return_request_ids: list[str] = Field(default_factory=list)
    unrecognised_codes: list[str] = Field(
        default_factory=list, description="source codes we had no mapping for (kept, counted)"
    )
    closed_reason: str | None = None
    estimated_delivery: date | None = None
    pending: list[PendingSend] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    seen_event_keys: list[str] = Field(default_factory=list)
    applied_update_ids: list[str] = Field(
        default_factory=list, description="ids of the last shipment updates applied (replays)"
    )
    applied_update_at: datetime | None = Field(
        default=None, description="the newest `updated_at` of an applied shipment update"
    )
    notifications: list[SentNotification] = Field(default_factory=list)
    notes: list[Note] = Field(default_factory=list)

    @property
    def lost(self) -> bool:
        return self.lost_since is not None


class Decision(Model):
    state: ShipmentState
    sends: list[SendNotification] = Field(default_factory=list)
    alerts: list[RaiseAlert] = Field(default_factory=list)
    tags: list[TagHelpdesk] = Field(default_factory=list)
    returns: list[StartReturn] = Field(default_factory=list)
    polls: list[PollCarrier] = Field(default_factory=list)


class NextAction(Model):
    kind: str
    due_at: datetime | None = None
    due_local: str | None = None
    timezone: str | None = None
    detail: str | None = None


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
    declared_carrier: str | None = None
    timezone: str
    estimated_delivery: date | None = None
    closed_reason: str | None = None
    timeline: list[TimelineEntry]
    notifications: list[NotificationView]
    waiting: list[PendingSend]
    notes: list[Note]
    unrecognised_codes: list[str] = Field(default_factory=list)
    next_action: NextAction
