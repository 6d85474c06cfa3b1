"""The policy's state for one shipment, and what it decides in one step."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from trackflow.effects import (
    PollCarrier,
    RaiseAlert,
    SendNotification,
    StartReturn,
    SyncDelayedList,
    TagHelpdesk,
)
from trackflow.models import (
    CarrierStatus,
    Channel,
    ExceptionKind,
    Model,
    NumberWarning,
    ShippingSpeed,
    Trigger,
)


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
    outcome: str | None = None


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
        "integration",
    ]
    key: str
    detail: str
    at: datetime


# What a shipment remembers is bounded whatever arrives (a 40-day workflow, any number of
# events): the first entry of each milestone is always kept, the rest is a recent window.
MAX_TIMELINE = 60
MAX_NOTES = 60
MAX_NOTIFICATIONS = 60
MAX_EXCEPTION_MESSAGES = 20
MAX_RETURN_REQUESTS = 50
MAX_UNRECOGNISED_CODES = 50


def remembered(key: str) -> str:
    """What the state keeps of an id it only needs to recognise again (event keys, webhook
    delivery ids, return request ids): a short digest, whatever the id's length or alphabet."""
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


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
    review_skip_at_delivery: bool = Field(
        default=False,
        description="a delivery after trouble skips the review request right then, with no "
        "timer (lifecycles started since the workflow's LEAN_PATCH)",
    )
    return_request_ids: list[str] = Field(default_factory=list)
    unrecognised_codes: list[str] = Field(
        default_factory=list, description="source codes we had no mapping for (kept, counted)"
    )
    closed_reason: str | None = None
    estimated_delivery: date | None = None
    projections: int = Field(default=0, description="read-model rows written: the last version")
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
    registered: bool = Field(default=False, description="the first registration was answered")
    events_not_before: datetime | None = Field(
        default=None,
        description="events that occurred earlier belong to an earlier order on this recycled "
        "tracking number",
    )
    delayed_list_member: bool = Field(
        default=False, description="on the merchant's delayed-shipments list (Klaviyo)"
    )
    delayed_list_scan: datetime | None = Field(
        default=None, description="the last scan when the customer was told of the delay"
    )
    delayed_list_changes: int = 0
    timeline_omitted: int = Field(default=0, description="older timeline entries dropped")
    notes_omitted: int = Field(default=0, description="older notes dropped")

    @property
    def lost(self) -> bool:
        return self.lost_since is not None

    def with_timeline_entry(
        self, entry: TimelineEntry, milestones: set[CarrierStatus]
    ) -> ShipmentState:
        """The entry in time order; beyond MAX_TIMELINE, the oldest entries go except the first
        of each milestone."""
        timeline = sorted([*self.timeline, entry], key=lambda e: e.occurred_at)
        if len(timeline) <= MAX_TIMELINE:
            return self.model_copy(update={"timeline": timeline})
        firsts: dict[CarrierStatus, TimelineEntry] = {}
        for kept in timeline:
            if kept.status in milestones:
                firsts.setdefault(kept.status, kept)
        keep = {id(e) for e in firsts.values()} | {id(e) for e in timeline[-MAX_TIMELINE:]}
        kept_entries = [e for e in timeline if id(e) in keep]
        dropped = len(timeline) - len(kept_entries)
        return self.model_copy(
            update={"timeline": kept_entries, "timeline_omitted": self.timeline_omitted + dropped}
        )

    def with_notes(self, *notes: Note) -> ShipmentState:
        all_notes = [*self.notes, *notes]
        dropped = max(0, len(all_notes) - MAX_NOTES)
        return self.model_copy(
            update={"notes": all_notes[dropped:], "notes_omitted": self.notes_omitted + dropped}
        )

    def with_trouble(self, what: str) -> list[str]:
        """Why no review request: each reason once, the latest last."""
        return [*(t for t in self.trouble if t != what), what]


class Outcome(Model):
    """What a caller is told about a registration or a return request."""

    outcome: Literal["accepted", "updated", "already_registered", "return_started", "ignored"]
    detail: str | None = None


class Decision(Model):
    state: ShipmentState
    outcome: Outcome | None = Field(default=None, description="the answer to a caller, if any")
    sends: list[SendNotification] = Field(default_factory=list)
    alerts: list[RaiseAlert] = Field(default_factory=list)
    tags: list[TagHelpdesk] = Field(default_factory=list)
    segments: list[SyncDelayedList] = Field(default_factory=list)
    returns: list[StartReturn] = Field(default_factory=list)
    polls: list[PollCarrier] = Field(default_factory=list)


class NextAction(Model):
    """What the shipment waits for next."""

    kind: str = Field(
        description="send_when_window_opens, pickup_gap_alert, stale_check_in, declare_lost, "
        "poll_carrier_api, review_request, complete, or await_carrier_event (no timer)"
    )
    due_at: datetime | None = Field(default=None, description="when, in UTC")
    due_local: str | None = Field(default=None, description="when, in the customer's zone")
    timezone: str | None = Field(default=None, description="the customer's IANA time zone")
    detail: str | None = Field(default=None, description="why, in words")


class NotificationView(Model):
    """A customer message decided and handed to its channel."""

    trigger: Trigger
    channel: Channel
    exception: ExceptionKind | None = None
    sent_at: datetime
    outcome: str | None = Field(
        default=None,
        description="how it went: its transport (outbox, shadow, sendgrid, twilio), or why it "
        "did not go: suppressed:<reason> (the customer's consent), <provider>:failed:<code>, "
        "<provider>:uncertain",
    )


class HeldMessage(PendingSend):
    """A held message as the internal view shows it: the pending send, and why, in words."""

    due_local: str | None = None
    why: str = ""


class WaitingMessage(Model):
    """A customer message decided but held back; dropped instead if the shipment moves past
    it before it is due (a later milestone, the exception is over...)."""

    trigger: Trigger
    channel: Channel
    exception: ExceptionKind | None = None
    due_at: datetime = Field(description="when it goes out, in UTC")
    due_local: str | None = Field(default=None, description="the same, in the customer's zone")
    why: str = Field(description="why it waits, in words")


class NoteView(Model):
    """Something ops should see that is not a customer message."""

    kind: str = Field(
        description="alert, helpdesk, dropped, return_started, return_ignored, review, "
        "suppressed, implausible_timestamp, update_ignored or integration (an integration "
        "that gave up)"
    )
    about: str = Field(
        description="what it is about: a message (`trigger:episode:channel`), an alert, a "
        "helpdesk tag, a return workflow, an event or a shipment update"
    )
    detail: str
    at: datetime


class ShipmentDocument(Model):
    """A shipment as `GET /v1/shipments/{n}` and `trackflow shipment show` give it: a stable
    public shape (the internal bookkeeping is in `trackflow shipment show --debug`)."""

    tracking_number: str
    order_id: str
    workflow_id: str = Field(description="the Temporal workflow that tracks it")
    status: Phase
    exception: ExceptionKind | None = Field(
        default=None, description="the open exception, when status is exception"
    )
    summary: str = Field(
        description="the status in words, e.g. `delivered — 2 messages waiting, then tracking "
        "ends (lifecycle complete)`"
    )
    carrier: str | None
    carrier_label: str | None = Field(
        default=None,
        description="the carrier as the platform wrote it (`PostNL`), when not its code",
    )
    declared_carrier: str | None = Field(
        default=None, description="the carrier the platform named, when the number is another's"
    )
    timezone: str = Field(description="the customer's IANA time zone")
    time_scale: float | None = Field(
        default=None, description="this shipment's durations pass this many times faster (not 1)"
    )
    estimated_delivery: date | None = None
    closed_reason: str | None = Field(
        default=None, description="why tracking ends once nothing is waiting any more"
    )
    timeline: list[TimelineEntry]
    timeline_omitted: int = Field(
        default=0, description="older timeline entries not kept (each milestone's first is)"
    )
    notifications: list[NotificationView]
    waiting: list[WaitingMessage] = Field(description="held messages, earliest first")
    notes: list[NoteView]
    notes_omitted: int = Field(default=0, description="older notes not kept")
    unrecognised_codes: list[str] = Field(
        default_factory=list, description="source codes with no mapping (kept as exceptions)"
    )
    warnings: list[NumberWarning] = Field(
        default_factory=list,
        description="what looked wrong with the tracking number at registration (`code`: "
        "not_carrier_format, check_digit or unknown_format; `message`): accepted all the same",
    )
    next_action: NextAction


class ShipmentView(Model):
    """The workflow's query answer and result: the public document's facts and internal
    bookkeeping (idempotency keys, ranks, scan markers); `public()` is what the API shows."""

    workflow_id: str
    tracking_number: str
    order_id: str
    status: Phase
    exception: ExceptionKind | None = None
    carrier: str | None
    carrier_label: str | None = None
    declared_carrier: str | None = None
    timezone: str
    estimated_delivery: date | None = None
    closed_reason: str | None = None
    timeline: list[TimelineEntry]
    timeline_omitted: int = 0
    notifications: list[NotificationView]
    waiting: list[HeldMessage]
    notes: list[Note]
    notes_omitted: int = 0
    unrecognised_codes: list[str] = Field(default_factory=list)
    warnings: list[NumberWarning] = Field(default_factory=list)
    next_action: NextAction
    time_scale: float | None = Field(
        default=None, description="this shipment's durations pass this many times faster (not 1)"
    )

    def public(self) -> ShipmentDocument:
        waiting = sorted(self.waiting, key=lambda held: held.due_at)
        return ShipmentDocument(
            tracking_number=self.tracking_number,
            order_id=self.order_id,
            workflow_id=self.workflow_id,
            status=self.status,
            exception=self.exception,
            summary=self._summary(),
            carrier=self.carrier,
            carrier_label=self.carrier_label,
            declared_carrier=self.declared_carrier,
            timezone=self.timezone,
            time_scale=self.time_scale,
            estimated_delivery=self.estimated_delivery,
            closed_reason=self.closed_reason,
            timeline=self.timeline,
            timeline_omitted=self.timeline_omitted,
            notifications=self.notifications,
            waiting=[
                WaitingMessage(
                    trigger=held.send.trigger,
                    channel=held.send.channel,
                    exception=held.send.exception,
                    due_at=held.due_at,
                    due_local=held.due_local,
                    why=held.why,
                )
                for held in waiting
            ],
            notes=[
                NoteView(kind=n.kind, about=self._about(n.key), detail=n.detail, at=n.at)
                for n in self.notes
            ],
            notes_omitted=self.notes_omitted,
            unrecognised_codes=self.unrecognised_codes,
            warnings=self.warnings,
            next_action=self.next_action,
        )

    def _summary(self) -> str:
        """Honest about a closed shipment whose held messages still have to go out: its
        workflow runs until they have."""
        status = self.status.value + (f" ({self.exception.value})" if self.exception else "")
        if not self.closed_reason:
            return status
        if not self.waiting:
            return f"{status} — tracking ended ({self.closed_reason})"
        count = len(self.waiting)
        messages = "1 message" if count == 1 else f"{count} messages"
        return f"{status} — {messages} waiting, then tracking ends ({self.closed_reason})"

    def _about(self, key: str) -> str:
        """A note's key without the shipment key (number/order) every effect key starts with."""
        prefix, colon, rest = key.partition(":")
        return rest if colon and prefix.startswith(f"{self.tracking_number}/") else key


class ShipmentProjection(Model):
    """What every read needs about one shipment lifecycle, and nothing personal beyond the
    customer's first name."""

    version: int = Field(ge=1)
    updated_at: datetime
    document: ShipmentDocument
    shipment_key: str = Field(description="tracking number / order (+ fulfillment)")
    order_name: str | None = None
    first_name: str | None = None
    shipping_speed: ShippingSpeed = ShippingSpeed.STANDARD
    registered_at: datetime | None = None
    first_scan_at: datetime | None = Field(
        default=None, description="the carrier's first scan after the label (in transit)"
    )
    delivered_at: datetime | None = None
    estimated_delivery: date | None = Field(
        default=None, description="the latest estimate the carrier gave before delivery"
    )
    exception_episodes: int = 0
    lost: bool = Field(default=False, description="declared lost at some point")
    open_problem: bool = Field(default=False, description="exception or lost right now")

    @property
    def tracking_number(self) -> str:
        return self.document.tracking_number

    @property
    def workflow_id(self) -> str:
        return self.document.workflow_id

    def material(self) -> dict[str, object]:
        """What a write must carry: everything but the version and the write's time."""
        return self.model_dump(mode="json", exclude={"version", "updated_at"})

    def with_sent(self, sent: list[tuple[SendNotification, datetime, str]]) -> ShipmentProjection:
        """The row once the send activity has sent (send, sent at, outcome) each message, as
        the workflow's state records them (`policy.record_sent`)."""
        known = {(n.trigger, n.channel, n.sent_at) for n in self.document.notifications}
        added = [
            NotificationView(
                trigger=send.trigger,
                channel=send.channel,
                exception=send.exception,
                sent_at=at,
                outcome=outcome,
            )
            for send, at, outcome in sent
            if (send.trigger, send.channel, at) not in known
        ]
        if not added:
            return self
        document = self.document.model_copy(
            update={"notifications": [*self.document.notifications, *added]}
        )
        return self.model_copy(update={"document": document})
