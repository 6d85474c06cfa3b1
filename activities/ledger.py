"""The notification ledger: the durable record that makes every message go out exactly once.

One row per idempotency key. Alerts and helpdesk tags are stored whole by `record_once`, which
inserts a new key atomically, so concurrent writers of one key agree on a single record.
Customer messages go through a claim first, because providers take no idempotency key:

* `claim` inserts a 'sending' row with an owner and a lease (`lease_until`), or takes over a
  'sending' row whose lease expired (or that its owner released); it tells the caller what it
  found: sent, failed, uncertain, suppressed, or claimed by someone else until when.
* `record_sent` stores the provider's receipt (`provider_message_id`), `record_failed` a
  permanent refusal with the provider's code, `mark_uncertain` a message nobody can say was
  sent or not, `mark_suppressed` one the customer's consent ruled out.
* `record_feedback` keeps the provider's delivery status, opened and clicked times and error
  code on the row (feedback events deduplicated by their own id), and the suppression table
  keeps, per merchant, the addresses not to contact again, why, since when (`at`) and the
  time of the newest event that asked for it (`event_at`), which a lift must be newer than.

Inbound helpdesk tickets add two tables: `<table>_customer_index` maps a keyed digest of a
customer's email (never the email; trackflow.tickets) to the shipments registered with it,
and `<table>_inbound_tickets` keeps one anonymised row per ticket (helpdesk, ticket id, times,
shipment, intent, already_notified, language: no email, no text) for the WISMO analytics.

`get` and `list` show only 'sent' rows (the outbox); `state` and `states` show every row with
its status and feedback (the shipment view). Ledgers written by earlier versions (every row
'sent') are migrated in place when a writer opens them: missing columns are added; a
read-only ledger (the CLI) migrates nothing and reads the columns it lacks as empty.

Two backends share the SQL: SQLite (embedded default, stdlib sqlite3 run in a thread,
WAL so a worker and the CLI can share the file) and PostgreSQL via asyncpg for several
workers. Opened `read_only` (the CLI), a ledger creates nothing, not even a missing
file or table (it then reads as empty), and never waits for a writer's transaction.
"""

from __future__ import annotations

import asyncio
import builtins
import itertools
import math
import os
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, field_validator

from trackflow.limits import MAX_VISITS_PER_PAGE
from trackflow.shipment_state import ShipmentProjection

DEFAULT_TABLE = "notification_ledger"
SQLITE_FILE_NAME = "ledger.sqlite3"

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_RECORD_COLUMNS = (
    "kind",
    "tracking_number",
    "order_id",
    '"trigger"',
    "exception",
    "channel",
    "recipient",
    "subject",
    "body",
    "html",
    "transport",
    "provider_message_id",
    "sent_at",
)
_DRAFT_COLUMNS = _RECORD_COLUMNS[:-2]  # what a claim stores before the provider answers
STATUSES = ("sending", "sent", "failed", "uncertain", "suppressed")
# Columns added since the first ledgers (name, type on SQLite, type on PostgreSQL).
_ADDED_COLUMNS = (
    ("claimed_at", "TEXT", "TIMESTAMPTZ"),
    ("error_code", "TEXT", "TEXT"),
    ("error_detail", "TEXT", "TEXT"),
    ("delivery_status", "TEXT", "TEXT"),
    ("delivery_status_at", "TEXT", "TIMESTAMPTZ"),
    ("delivered_at", "TEXT", "TIMESTAMPTZ"),
    ("opened_at", "TEXT", "TIMESTAMPTZ"),
    ("clicked_at", "TEXT", "TIMESTAMPTZ"),
    ("decided_at", "TEXT", "TIMESTAMPTZ"),
    ("held_until", "TEXT", "TIMESTAMPTZ"),
)
# Columns added to the suppression table since its first version: `event_at`, the time of the
# newest event that asked for the suppression, which a lift must be newer than. Rows from
# before it have none and count from `at`, when they were recorded, which is no earlier
# than their event: a resubscribe dated before that cannot lift them.
_ADDED_SUPPRESSION_COLUMNS = (("event_at", "TEXT", "TIMESTAMPTZ"),)
_SUPPRESSION_EVENT_AT = "COALESCE(event_at, at)"
# Feedback statuses about engagement, not delivery: they never replace the delivery status.
_ENGAGEMENT = frozenset({"opened", "clicked", "spam_report", "unsubscribed", "resubscribed"})
# Delivery statuses a provider reports last: a late "sent" or "queued" does not undo them.
_FINAL_DELIVERY = frozenset(
    {"delivered", "undelivered", "failed", "canceled", "bounced", "dropped"}
)
# The strongest reason first, when an address is suppressed for several.
_REASON_RANK = ("bounced", "spam_report", "sms_stop", "unsubscribed")


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


class ReadOnlyLedgerError(RuntimeError):
    """A write on a ledger opened read-only."""


class LedgerUnavailable(RuntimeError):
    """The ledger's database cannot be reached or used right now: a refused, timed-out or
    dropped connection, a server shutting down, starting or out of resources, a SQLite file
    that cannot be opened, locked past the busy timeout, read-only or on a full disk. A retry
    later can succeed, unlike an error in the SQL (which is raised as it is)."""


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


class Ledger(Protocol):
    async def record_once(self, record: LedgerRecord) -> tuple[LedgerRecord, bool]:
        """Store the record unless its key is already sent; return the stored record and
        whether this call stored it."""
        ...

    async def get(self, idempotency_key: str) -> LedgerRecord | None: ...

    async def list(self, tracking_number: str | None = None) -> builtins.list[LedgerRecord]:
        """Sent records, oldest first (sent_at, then insertion order)."""
        ...

    async def claim(
        self,
        idempotency_key: str,
        owner: str,
        lease: timedelta,
        *,
        draft: LedgerRecord | None = None,
        now: datetime | None = None,
    ) -> Claim:
        """Take the key for sending: insert a 'sending' row (with `draft`'s fields: whom,
        what) or take over one whose lease expired; see `ClaimState` for what it can find."""
        ...

    async def record_sent(self, idempotency_key: str, owner: str, record: LedgerRecord) -> bool:
        """The provider took it: the row becomes 'sent' with the record's transport,
        provider id and time. False when the row was not 'sending' or 'uncertain'."""
        ...

    async def record_failed(
        self,
        idempotency_key: str,
        code: str,
        detail: str,
        *,
        at: datetime | None = None,
        owner: str | None = None,
    ) -> bool: ...

    async def mark_uncertain(self, idempotency_key: str, *, owner: str | None = None) -> bool: ...

    async def mark_suppressed(
        self, idempotency_key: str, reason: str, *, owner: str | None = None
    ) -> bool: ...

    async def release(self, idempotency_key: str, owner: str, *, sent_nothing: bool) -> bool:
        """Give the lease up now: `sent_nothing` says the provider surely has nothing (the
        next claim sends at once), otherwise the next claim reconciles first."""
        ...

    async def state(self, idempotency_key: str) -> MessageState | None: ...

    async def states(self, tracking_number: str | None = None) -> builtins.list[MessageState]:
        """Every row (any status, any kind), oldest first."""
        ...

    async def record_feedback(
        self,
        key: str,
        status: str,
        at: datetime,
        error_code: str | None = None,
        *,
        provider_message_id: str | None = None,
        dedupe_id: str | None = None,
    ) -> bool:
        """A provider's word on a message: delivery status, opened/clicked time, error code.
        False when no row has the key or `dedupe_id` was applied before."""
        ...

    async def key_for_provider_id(self, provider_message_id: str) -> str | None: ...

    async def provider_id_for_key(self, idempotency_key: str) -> str | None: ...

    async def feedback_seen(self, dedupe_id: str) -> bool: ...

    async def remember_feedback(self, dedupe_id: str) -> bool:
        """Note a feedback event as applied; False when it was noted before."""
        ...

    async def suppress(
        self, merchant: str, channel: str, address: str, reason: str, at: datetime | None = None
    ) -> bool:
        """Put the address on the merchant's list for the channel, asked for by an event at
        `at` (default: now); False if already there for that reason (a newer event then
        becomes the one a lift must be newer than)."""
        ...

    async def unsuppress(
        self,
        merchant: str,
        channel: str,
        address: str,
        reason: str | None = None,
        at: datetime | None = None,
    ) -> bool:
        """Lift the suppression (for `reason` only, or all), with an event at `at` only if
        it is newer than every event that asked for the suppression (no `at`: regardless);
        False if nothing was lifted."""
        ...

    async def suppressions(self, merchant: str) -> builtins.list[Suppression]:
        """The merchant's whole suppression list, oldest first."""
        ...

    async def suppressed(self, merchant: str, channel: str, address: str) -> str | None:
        """Why the address must not be contacted on the channel, or None."""
        ...

    async def save_policy(self, digest: str, body: str) -> None:
        """Keep a tracking policy by digest, for workers started later (a changed file)."""

    async def stored_policies(self) -> dict[str, str]: ...

    async def index_customer(self, shipment: CustomerShipment) -> bool:
        """Remember that the email digest has this shipment; False when it was known."""
        ...

    async def customer_shipments(
        self, email_digests: builtins.list[str]
    ) -> builtins.list[CustomerShipment]:
        """The shipments of any of the digests, the most recently registered first."""
        ...

    async def record_ticket(self, ticket: TicketRecord) -> tuple[TicketRecord, bool]:
        """Store the ticket's row once per (helpdesk, ticket id); return the stored row and
        whether this call stored it."""
        ...

    async def ticket(self, helpdesk: str, ticket_id: str) -> TicketRecord | None: ...

    async def tickets(self, since: datetime | None = None) -> builtins.list[TicketRecord]:
        """Inbound ticket rows received at or after `since`, oldest first."""
        ...

    async def save_projection(
        self,
        projection: ShipmentProjection,
        page_token: str | None = None,
        *,
        only_if_absent: bool = False,
    ) -> bool:
        """Store the shipment's read-model row unless a newer version is there (the same
        version again replaces it: the send activity's retry knows more), or with
        `only_if_absent` unless any row is; whether it was stored."""
        ...

    async def projection(self, tracking_number: str) -> ShipmentProjection | None:
        """The latest lifecycle's row for a tracking number."""
        ...

    async def projection_by_page(self, page_token: str) -> ShipmentProjection | None: ...

    async def projections(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> builtins.list[ShipmentProjection]:
        """Rows of shipments registered in [since, until), oldest first."""
        ...

    async def record_page_visit(
        self, page_token: str, message_key: str | None, at: datetime
    ) -> bool:
        """Record a view of the page (from message `message_key`'s link, else None) at `at`,
        unless this (token, message key) was recorded in the same UTC hour already, or the
        token has `MAX_VISITS_PER_PAGE` rows and this is not a message's first click;
        whether it was recorded."""
        ...

    async def page_visits(self, since: datetime | None = None) -> builtins.list[PageVisit]: ...

    async def save_baseline(self, weeks: builtins.list[BaselineWeek]) -> None:
        """Store the imported weeks (a week imported again is replaced)."""
        ...

    async def baseline(self) -> builtins.list[BaselineWeek]: ...

    async def message_figures(self, buckets: tuple[float, ...]) -> LedgerTotals:
        """Row counts by kind, trigger, channel, status, transport and (failed rows) error
        code; per channel the send-latency histogram with these bucket bounds (seconds,
        ascending); open-problem shipments; sent alerts by kind. Aggregated by the database."""
        ...

    async def purge_before(self, cutoff: datetime) -> Purged:
        """Delete read-model rows not updated since `cutoff`, inbound ticket records and page
        visits older than it (the retention setting)."""
        ...

    async def ping(self) -> None:
        """Reach the database (raises `LedgerUnavailable` when it cannot)."""
        ...

    async def close(self) -> None: ...


def normalize_address(channel: str, address: str) -> str:
    """One spelling per address: emails compare case-insensitively, numbers without blanks."""
    address = address.strip()
    return address.lower() if channel == "email" else re.sub(r"[\s\-().]", "", address)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _SqlLedger(ABC):
    """The ledger logic in SQL common to SQLite and PostgreSQL (written with `?` markers)."""

    def __init__(self, table: str, read_only: bool) -> None:
        if not _TABLE_NAME.match(table):
            raise ValueError(f"invalid ledger table name: {table!r}")
        self.table = table
        self.read_only = read_only
        # Whether the message table has every column of `_ADDED_COLUMNS` (a writer adds the
        # missing ones when it opens the ledger; a reader learns it by looking).
        self._complete = not read_only

    def _writing(self) -> None:
        if self.read_only:
            raise ReadOnlyLedgerError(f"ledger table {self.table} was opened read-only")

    @abstractmethod
    async def _fetch(self, sql: str, *args: object) -> builtins.list[dict[str, Any]]: ...

    @abstractmethod
    async def _column_names(self) -> frozenset[str]:
        """The message table's columns (none when there is no table)."""

    @abstractmethod
    def _null_of(self, sqlite_type: str, pg_type: str) -> str:
        """A NULL of the column type, as SQL."""

    async def _messages(self) -> str:
        """What message-row reads select from: the table, or, opened read-only on a table an
        earlier version wrote (only a writer adds the missing columns), the table with every
        column added since read as NULL. Checked again on each read until they all exist (a
        writer may migrate the table meanwhile)."""
        if self._complete:
            return self.table
        have = await self._column_names()
        if not have:  # no table (yet): reads find nothing
            return self.table
        missing = [
            f"{self._null_of(lite, pg)} AS {name}"
            for name, lite, pg in _ADDED_COLUMNS
            if name not in have
        ]
        if not missing:
            self._complete = True
            return self.table
        return f"(SELECT *, {', '.join(missing)} FROM {self.table}) AS {self.table}"

    @abstractmethod
    def _seconds_between(self, later: str, earlier: str) -> str:
        """SQL for the seconds from column `earlier` to column `later`."""

    @abstractmethod
    def _to_db_time(self, value: datetime) -> object: ...

    @abstractmethod
    def _from_db_time(self, value: Any) -> datetime: ...

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    def _db_time(self, value: datetime | None) -> object:
        return None if value is None else self._to_db_time(value)

    def _py_time(self, value: Any) -> datetime | None:
        return None if value is None else self._from_db_time(value)

    async def record_once(self, record: LedgerRecord) -> tuple[LedgerRecord, bool]:
        self._writing()
        t = self.table
        columns = ", ".join(_RECORD_COLUMNS)
        markers = ", ".join("?" for _ in _RECORD_COLUMNS)
        created = await self._fetch(
            f"INSERT INTO {t} (idempotency_key, status, {columns}) VALUES (?, 'sent', {markers}) "
            "ON CONFLICT (idempotency_key) DO NOTHING RETURNING seq",
            record.idempotency_key,
            *self._record_values(record),
        )
        if created:
            return record, True
        stored = await self.get(record.idempotency_key)
        if stored is None:
            raise RuntimeError(f"ledger row for {record.idempotency_key!r} vanished")
        return stored, False

    def _record_values(self, record: LedgerRecord) -> tuple[object, ...]:
        return (
            record.kind,
            record.tracking_number,
            record.order_id,
            record.trigger,
            record.exception,
            record.channel,
            record.to,
            record.subject,
            record.body,
            record.html,
            record.transport,
            record.provider_message_id,
            self._to_db_time(record.sent_at),
        )

    async def save_policy(self, digest: str, body: str) -> None:
        self._writing()
        await self._fetch(
            f"INSERT INTO {self.table}_policies (digest, body) VALUES (?, ?) "
            "ON CONFLICT (digest) DO NOTHING",
            digest,
            body,
        )

    async def stored_policies(self) -> dict[str, str]:
        rows = await self._fetch(f"SELECT digest, body FROM {self.table}_policies")
        return {row["digest"]: row["body"] for row in rows}

    async def get(self, idempotency_key: str) -> LedgerRecord | None:
        rows = await self._fetch(
            f"SELECT * FROM {self.table} WHERE idempotency_key = ? AND status = 'sent'",
            idempotency_key,
        )
        return self._record(rows[0]) if rows else None

    async def list(self, tracking_number: str | None = None) -> builtins.list[LedgerRecord]:
        if tracking_number is None:
            rows = await self._fetch(
                f"SELECT * FROM {self.table} WHERE status = 'sent' ORDER BY sent_at, seq"
            )
        else:
            rows = await self._fetch(
                f"SELECT * FROM {self.table} WHERE status = 'sent' AND tracking_number = ? "
                f"ORDER BY sent_at, seq",
                tracking_number,
            )
        return [self._record(row) for row in rows]

    @staticmethod
    def _message(row: dict[str, Any]) -> dict[str, Any]:
        """The columns a sent record and a row's state share."""
        return {
            "idempotency_key": row["idempotency_key"],
            "kind": row["kind"],
            "tracking_number": row["tracking_number"],
            "order_id": row["order_id"],
            "trigger": row["trigger"],
            "exception": row["exception"],
            "channel": row["channel"],
            "to": row["recipient"],
            "subject": row["subject"],
            "transport": row["transport"],
            "provider_message_id": row["provider_message_id"],
        }

    def _record(self, row: dict[str, Any]) -> LedgerRecord:
        return LedgerRecord(
            **self._message(row),
            body=row["body"],
            html=row["html"],
            sent_at=self._from_db_time(row["sent_at"]),
        )

    def _state(self, row: dict[str, Any]) -> MessageState:
        return MessageState(
            **self._message(row),
            status=row["status"],
            owner=row["owner"],
            lease_until=self._py_time(row["lease_until"]),
            attempts=row["attempts"] or 0,
            claimed_at=self._py_time(row.get("claimed_at")),
            sent_at=self._py_time(row["sent_at"]),
            error_code=row.get("error_code"),
            error_detail=row.get("error_detail"),
            delivery_status=row.get("delivery_status"),
            delivery_status_at=self._py_time(row.get("delivery_status_at")),
            delivered_at=self._py_time(row.get("delivered_at")),
            opened_at=self._py_time(row.get("opened_at")),
            clicked_at=self._py_time(row.get("clicked_at")),
            decided_at=self._py_time(row.get("decided_at")),
            held_until=self._py_time(row.get("held_until")),
        )

    async def _row(self, idempotency_key: str) -> dict[str, Any] | None:
        rows = await self._fetch(
            f"SELECT * FROM {await self._messages()} WHERE idempotency_key = ?", idempotency_key
        )
        return rows[0] if rows else None

    async def state(self, idempotency_key: str) -> MessageState | None:
        row = await self._row(idempotency_key)
        return self._state(row) if row else None

    async def states(self, tracking_number: str | None = None) -> builtins.list[MessageState]:
        source = await self._messages()
        order = "ORDER BY COALESCE(sent_at, claimed_at), seq"
        if tracking_number is None:
            rows = await self._fetch(f"SELECT * FROM {source} {order}")
        else:
            rows = await self._fetch(
                f"SELECT * FROM {source} WHERE tracking_number = ? {order}", tracking_number
            )
        return [self._state(row) for row in rows]

    # --- claims -------------------------------------------------------------------------

    async def claim(
        self,
        idempotency_key: str,
        owner: str,
        lease: timedelta,
        *,
        draft: LedgerRecord | None = None,
        now: datetime | None = None,
    ) -> Claim:
        self._writing()
        if lease <= timedelta(0):
            raise ValueError("a claim's lease must be positive")
        at = (now or _utc_now()).astimezone(UTC)
        until = self._to_db_time(at + lease)
        t = self.table
        columns = ", ".join(_DRAFT_COLUMNS)
        markers = ", ".join("?" for _ in _DRAFT_COLUMNS)
        values = self._record_values(draft)[: len(_DRAFT_COLUMNS)] if draft else ()
        if draft is not None and draft.idempotency_key != idempotency_key:
            raise ValueError("the draft's key differs from the key claimed")
        while True:
            if draft is None:
                inserted = await self._fetch(
                    f"INSERT INTO {t} (idempotency_key, status, owner, lease_until, attempts, "
                    "claimed_at, kind) VALUES (?, 'sending', ?, ?, 1, ?, 'message') "
                    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING *",
                    idempotency_key,
                    owner,
                    until,
                    self._to_db_time(at),
                )
            else:
                inserted = await self._fetch(
                    f"INSERT INTO {t} (idempotency_key, status, owner, lease_until, attempts, "
                    f"claimed_at, decided_at, held_until, {columns}) "
                    f"VALUES (?, 'sending', ?, ?, 1, ?, ?, ?, {markers}) "
                    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING *",
                    idempotency_key,
                    owner,
                    until,
                    self._to_db_time(at),
                    self._db_time(draft.decided_at),
                    self._db_time(draft.held_until),
                    *values,
                )
            if inserted:
                return Claim(True, ClaimState.NEW, self._state(inserted[0]))
            row = await self._row(idempotency_key)
            if row is None:
                continue  # never deleted today; a manual DELETE raced us: insert again
            found = self._state(row)
            if found.status != "sending":
                record = self._record(row) if found.status == "sent" else None
                return Claim(False, ClaimState(found.status), found, record)
            if found.owner is not None and found.lease_until and found.lease_until > at:
                return Claim(False, ClaimState.LIVE, found)
            # Take it over, unless another claimer did since we read it (`attempts` is the
            # row's version: every claim bumps it).
            taken = await self._fetch(
                f"UPDATE {t} SET owner = ?, lease_until = ?, attempts = attempts + 1, "
                "claimed_at = COALESCE(claimed_at, ?) "
                "WHERE idempotency_key = ? AND status = 'sending' AND attempts = ? "
                "RETURNING *",
                owner,
                until,
                self._to_db_time(at),
                idempotency_key,
                row["attempts"],
            )
            if taken:
                state = ClaimState.RELEASED if found.owner is None else ClaimState.EXPIRED
                return Claim(True, state, self._state(taken[0]))

    async def record_sent(self, idempotency_key: str, owner: str, record: LedgerRecord) -> bool:
        self._writing()
        if record.idempotency_key != idempotency_key:
            raise ValueError("the record's key differs from the key recorded")
        assignments = ", ".join(f"{column} = ?" for column in _RECORD_COLUMNS)
        updated = await self._fetch(
            f"UPDATE {self.table} SET status = 'sent', owner = ?, lease_until = NULL, "
            f"{assignments} WHERE idempotency_key = ? AND status IN ('sending', 'uncertain') "
            "RETURNING seq",
            owner,
            *self._record_values(record),
            idempotency_key,
        )
        return bool(updated)

    async def _settle(
        self, idempotency_key: str, status: str, owner: str | None, sets: str, *args: object
    ) -> bool:
        self._writing()
        only_owner = " AND owner = ?" if owner is not None else ""
        updated = await self._fetch(
            f"UPDATE {self.table} SET status = ?, lease_until = NULL{sets} "
            f"WHERE idempotency_key = ? AND status = 'sending'{only_owner} RETURNING seq",
            status,
            *args,
            idempotency_key,
            *((owner,) if owner is not None else ()),
        )
        return bool(updated)

    async def record_failed(
        self,
        idempotency_key: str,
        code: str,
        detail: str,
        *,
        at: datetime | None = None,
        owner: str | None = None,
    ) -> bool:
        return await self._settle(
            idempotency_key,
            "failed",
            owner,
            ", error_code = ?, error_detail = ?, sent_at = ?",
            code,
            detail,
            self._to_db_time(at or _utc_now()),
        )

    async def mark_uncertain(self, idempotency_key: str, *, owner: str | None = None) -> bool:
        return await self._settle(idempotency_key, "uncertain", owner, "")

    async def mark_suppressed(
        self, idempotency_key: str, reason: str, *, owner: str | None = None
    ) -> bool:
        return await self._settle(idempotency_key, "suppressed", owner, ", error_code = ?", reason)

    async def release(self, idempotency_key: str, owner: str, *, sent_nothing: bool) -> bool:
        self._writing()
        args: tuple[object, ...] = ()
        if sent_nothing:
            sets = "owner = NULL, lease_until = NULL"
        else:  # keep the owner: the next claim sees an expired lease and reconciles
            sets, args = "lease_until = ?", (self._to_db_time(_utc_now()),)
        updated = await self._fetch(
            f"UPDATE {self.table} SET {sets} "
            "WHERE idempotency_key = ? AND status = 'sending' AND owner = ? RETURNING seq",
            *args,
            idempotency_key,
            owner,
        )
        return bool(updated)

    # --- provider feedback --------------------------------------------------------------

    async def record_feedback(
        self,
        key: str,
        status: str,
        at: datetime,
        error_code: str | None = None,
        *,
        provider_message_id: str | None = None,
        dedupe_id: str | None = None,
    ) -> bool:
        self._writing()
        row = await self._row(key)
        if row is None:
            return False
        if dedupe_id is not None and not await self.remember_feedback(dedupe_id):
            return False
        current = self._state(row)
        sets: builtins.list[str] = []
        args: builtins.list[object] = []
        if status == "opened" and current.opened_at is None:
            sets.append("opened_at = ?")
            args.append(self._to_db_time(at))
        elif status == "clicked" and current.clicked_at is None:
            sets.append("clicked_at = ?")
            args.append(self._to_db_time(at))
        elif status not in _ENGAGEMENT and _advances(current, status, at):
            sets += ["delivery_status = ?", "delivery_status_at = ?"]
            args += [status, self._to_db_time(at)]
            if status == "delivered" and current.delivered_at is None:
                sets.append("delivered_at = ?")
                args.append(self._to_db_time(at))
        if error_code:
            sets.append("error_code = ?")
            args.append(error_code)
        if provider_message_id and current.provider_message_id is None:
            sets.append("provider_message_id = ?")
            args.append(provider_message_id)
        if sets:
            await self._fetch(
                f"UPDATE {self.table} SET {', '.join(sets)} WHERE idempotency_key = ?",
                *args,
                key,
            )
        return True

    async def key_for_provider_id(self, provider_message_id: str) -> str | None:
        rows = await self._fetch(
            f"SELECT idempotency_key FROM {self.table} WHERE provider_message_id = ? "
            "ORDER BY seq LIMIT 1",
            provider_message_id,
        )
        return rows[0]["idempotency_key"] if rows else None

    async def provider_id_for_key(self, idempotency_key: str) -> str | None:
        rows = await self._fetch(
            f"SELECT provider_message_id FROM {self.table} WHERE idempotency_key = ?",
            idempotency_key,
        )
        return rows[0]["provider_message_id"] if rows else None

    async def feedback_seen(self, dedupe_id: str) -> bool:
        rows = await self._fetch(
            f"SELECT 1 AS seen FROM {self.table}_feedback_seen WHERE dedupe_id = ?", dedupe_id
        )
        return bool(rows)

    async def remember_feedback(self, dedupe_id: str) -> bool:
        self._writing()
        inserted = await self._fetch(
            f"INSERT INTO {self.table}_feedback_seen (dedupe_id, seen_at) VALUES (?, ?) "
            "ON CONFLICT (dedupe_id) DO NOTHING RETURNING dedupe_id",
            dedupe_id,
            self._to_db_time(_utc_now()),
        )
        return bool(inserted)

    # --- suppression list ---------------------------------------------------------------

    async def suppress(
        self, merchant: str, channel: str, address: str, reason: str, at: datetime | None = None
    ) -> bool:
        self._writing()
        key = (merchant, channel, normalize_address(channel, address), reason)
        event_at = self._to_db_time(at or _utc_now())
        inserted = await self._fetch(
            f"INSERT INTO {self.table}_suppressions "
            "(merchant, channel, address, reason, at, event_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (merchant, channel, address, reason) DO NOTHING RETURNING reason",
            *key,
            event_at,
            event_at,
        )
        if inserted:
            return True
        await self._fetch(
            f"UPDATE {self.table}_suppressions SET event_at = ? WHERE merchant = ? "
            f"AND channel = ? AND address = ? AND reason = ? AND {_SUPPRESSION_EVENT_AT} < ?",
            event_at,
            *key,
            event_at,
        )
        return False

    async def unsuppress(
        self,
        merchant: str,
        channel: str,
        address: str,
        reason: str | None = None,
        at: datetime | None = None,
    ) -> bool:
        self._writing()
        only = " AND reason = ?" if reason is not None else ""
        newer = f" AND {_SUPPRESSION_EVENT_AT} < ?" if at is not None else ""
        deleted = await self._fetch(
            f"DELETE FROM {self.table}_suppressions "
            f"WHERE merchant = ? AND channel = ? AND address = ?{only}{newer} RETURNING reason",
            merchant,
            channel,
            normalize_address(channel, address),
            *((reason,) if reason is not None else ()),
            *((self._to_db_time(at),) if at is not None else ()),
        )
        return bool(deleted)

    async def suppressions(self, merchant: str) -> builtins.list[Suppression]:
        rows = await self._fetch(
            f"SELECT channel, address, reason, at FROM {self.table}_suppressions "
            "WHERE merchant = ? ORDER BY at, channel, address",
            merchant,
        )
        return [
            Suppression(
                channel=row["channel"],
                address=row["address"],
                reason=row["reason"],
                at=self._from_db_time(row["at"]),
            )
            for row in rows
        ]

    async def suppressed(self, merchant: str, channel: str, address: str) -> str | None:
        rows = await self._fetch(
            f"SELECT reason FROM {self.table}_suppressions "
            "WHERE merchant = ? AND channel = ? AND address = ?",
            merchant,
            channel,
            normalize_address(channel, address),
        )
        reasons = [str(row["reason"]) for row in rows]
        if not reasons:
            return None
        # An unknown reason is the strongest: it is some refusal we do not know how to lift.
        return min(
            reasons,
            key=lambda r: (_REASON_RANK.index(r) if r in _REASON_RANK else -1, r),
        )

    # --- inbound tickets: the customer index and the anonymised ticket rows ---------------

    async def index_customer(self, shipment: CustomerShipment) -> bool:
        self._writing()
        inserted = await self._fetch(
            f"INSERT INTO {self.table}_customer_index (email_digest, tracking_number, "
            "order_id, workflow_id, registered_at, tracking_url) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (email_digest, tracking_number, order_id) DO NOTHING "
            "RETURNING email_digest",
            shipment.email_digest,
            shipment.tracking_number,
            shipment.order_id,
            shipment.workflow_id,
            self._to_db_time(shipment.registered_at),
            shipment.tracking_url,
        )
        return bool(inserted)

    async def customer_shipments(
        self, email_digests: builtins.list[str]
    ) -> builtins.list[CustomerShipment]:
        if not email_digests:
            return []
        markers = ", ".join("?" for _ in email_digests)
        rows = await self._fetch(
            f"SELECT * FROM {self.table}_customer_index WHERE email_digest IN ({markers}) "
            "ORDER BY registered_at DESC, tracking_number",
            *email_digests,
        )
        return [
            CustomerShipment(
                email_digest=row["email_digest"],
                tracking_number=row["tracking_number"],
                order_id=row["order_id"],
                workflow_id=row["workflow_id"],
                registered_at=self._from_db_time(row["registered_at"]),
                tracking_url=row["tracking_url"],
            )
            for row in rows
        ]

    async def record_ticket(self, ticket: TicketRecord) -> tuple[TicketRecord, bool]:
        self._writing()
        inserted = await self._fetch(
            f"INSERT INTO {self.table}_inbound_tickets (helpdesk, ticket_id, received_at, "
            "created_at, tracking_number, intent, already_notified, language, rule) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (helpdesk, ticket_id) DO NOTHING RETURNING ticket_id",
            ticket.helpdesk,
            ticket.ticket_id,
            self._to_db_time(ticket.received_at),
            self._db_time(ticket.created_at),
            ticket.tracking_number,
            ticket.intent,
            ticket.already_notified,
            ticket.language,
            ticket.rule,
        )
        if inserted:
            return ticket, True
        stored = await self.ticket(ticket.helpdesk, ticket.ticket_id)
        if stored is None:
            raise RuntimeError(f"ticket row {ticket.helpdesk}/{ticket.ticket_id} vanished")
        return stored, False

    def _ticket(self, row: dict[str, Any]) -> TicketRecord:
        notified = row["already_notified"]
        return TicketRecord(
            helpdesk=row["helpdesk"],
            ticket_id=row["ticket_id"],
            received_at=self._from_db_time(row["received_at"]),
            created_at=self._py_time(row["created_at"]),
            tracking_number=row["tracking_number"],
            intent=row["intent"],
            already_notified=None if notified is None else bool(notified),
            language=row["language"],
            rule=row["rule"],
        )

    async def ticket(self, helpdesk: str, ticket_id: str) -> TicketRecord | None:
        rows = await self._fetch(
            f"SELECT * FROM {self.table}_inbound_tickets WHERE helpdesk = ? AND ticket_id = ?",
            helpdesk,
            ticket_id,
        )
        return self._ticket(rows[0]) if rows else None

    async def record_page_visit(
        self, page_token: str, message_key: str | None, at: datetime
    ) -> bool:
        self._writing()
        t = self.table
        # The cap is checked apart from the insert: racing views may pass it by a few rows.
        kept = await self._fetch(
            f"SELECT COUNT(*) AS n, COUNT(CASE WHEN message_key = ? THEN 1 END) AS clicks "
            f"FROM {t}_page_visits WHERE page_token = ?",
            message_key or "",
            page_token,
        )
        first_click = message_key is not None and not kept[0]["clicks"]
        if kept[0]["n"] >= MAX_VISITS_PER_PAGE and not first_click:
            return False
        stored = await self._fetch(
            f"INSERT INTO {t}_page_visits (page_token, message_key, at, visit_hour) "
            "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING page_token",
            page_token,
            message_key,
            self._to_db_time(at),
            _visit_hour(at),
        )
        return bool(stored)

    async def page_visits(self, since: datetime | None = None) -> builtins.list[PageVisit]:
        rows = await self._fetch(
            f"SELECT * FROM {self.table}_page_visits WHERE at >= ? ORDER BY at, page_token",
            self._to_db_time(since or datetime(1970, 1, 1, tzinfo=UTC)),
        )
        return [
            PageVisit(
                page_token=row["page_token"],
                message_key=row["message_key"],
                at=self._from_db_time(row["at"]),
            )
            for row in rows
        ]

    async def save_baseline(self, weeks: builtins.list[BaselineWeek]) -> None:
        self._writing()
        for week in weeks:
            await self._fetch(
                f"INSERT INTO {self.table}_baseline (week_start, shipments, wismo_tickets) "
                "VALUES (?, ?, ?) ON CONFLICT (week_start) DO UPDATE SET "
                "shipments = excluded.shipments, wismo_tickets = excluded.wismo_tickets",
                week.week_start.isoformat(),
                week.shipments,
                week.wismo_tickets,
            )

    async def baseline(self) -> builtins.list[BaselineWeek]:
        rows = await self._fetch(f"SELECT * FROM {self.table}_baseline ORDER BY week_start")
        return [
            BaselineWeek(
                week_start=date.fromisoformat(row["week_start"]),
                shipments=row["shipments"],
                wismo_tickets=row["wismo_tickets"],
            )
            for row in rows
        ]

    async def message_figures(self, buckets: tuple[float, ...]) -> LedgerTotals:
        bounds = tuple(float(bound) for bound in buckets)
        if not all(map(math.isfinite, bounds)) or list(bounds) != sorted(set(bounds)):
            raise ValueError(f"bucket bounds must be finite and ascending: {buckets!r}")
        source = await self._messages()
        grouped = await self._fetch(
            'SELECT kind, "trigger", channel, status, transport, '
            "CASE WHEN status = 'failed' THEN error_code END AS error_code, COUNT(*) AS n "
            f"FROM {source} GROUP BY 1, 2, 3, 4, 5, 6"
        )
        counts = tuple(
            MessageCount(
                kind=row["kind"],
                trigger=row["trigger"],
                channel=row["channel"],
                status=row["status"],
                transport=row["transport"],
                error_code=row["error_code"],
                count=int(row["n"]),
            )
            for row in grouped
        )
        per_bound = "".join(
            f", SUM(CASE WHEN seconds <= {bound!r} THEN 1 ELSE 0 END) AS le{index}"
            for index, bound in enumerate(bounds)
        )
        delta = self._seconds_between("sent_at", "decided_at")
        histograms = await self._fetch(
            f"SELECT channel, COUNT(*) AS n, SUM(seconds) AS total{per_bound} FROM ("
            "SELECT channel, CASE WHEN delta < 0 THEN 0 ELSE delta END AS seconds FROM ("
            f"SELECT channel, {delta} AS delta FROM {source} "
            "WHERE status = 'sent' AND COALESCE(kind, 'message') = 'message' "
            "AND sent_at IS NOT NULL AND decided_at IS NOT NULL) AS timed) AS clamped "
            "GROUP BY channel"
        )
        latency = tuple(
            LatencyHistogram(
                channel=row["channel"],
                buckets=bounds,
                cumulative=tuple(int(row[f"le{index}"]) for index in range(len(bounds))),
                count=int(row["n"]),
                sum=float(row["total"]),
            )
            for row in histograms
        )
        problems = await self._fetch(
            f"SELECT COUNT(*) AS n FROM {self.table}_shipments WHERE open_problem"
        )
        alerts: dict[str | None, int] = {}
        for found in counts:
            if found.kind == "alert" and found.status == "sent":
                alerts[found.trigger] = alerts.get(found.trigger, 0) + found.count
        return LedgerTotals(
            counts=counts,
            latency=latency,
            open_problems=int(problems[0]["n"]) if problems else 0,
            alerts=alerts,
        )

    async def purge_before(self, cutoff: datetime) -> Purged:
        self._writing()
        at = self._to_db_time(cutoff)
        t = self.table
        shipments = await self._fetch(
            f"DELETE FROM {t}_shipments WHERE updated_at < ? RETURNING shipment_key", at
        )
        tickets = await self._fetch(
            f"DELETE FROM {t}_inbound_tickets WHERE received_at < ? RETURNING ticket_id", at
        )
        visits = await self._fetch(
            f"DELETE FROM {t}_page_visits WHERE at < ? RETURNING page_token", at
        )
        return Purged(shipments=len(shipments), tickets=len(tickets), page_visits=len(visits))

    async def tickets(self, since: datetime | None = None) -> builtins.list[TicketRecord]:
        if since is None:
            rows = await self._fetch(
                f"SELECT * FROM {self.table}_inbound_tickets ORDER BY received_at, ticket_id"
            )
        else:
            rows = await self._fetch(
                f"SELECT * FROM {self.table}_inbound_tickets WHERE received_at >= ? "
                "ORDER BY received_at, ticket_id",
                self._to_db_time(since),
            )
        return [self._ticket(row) for row in rows]

    async def save_projection(
        self,
        projection: ShipmentProjection,
        page_token: str | None = None,
        *,
        only_if_absent: bool = False,
    ) -> bool:
        self._writing()
        document = projection.document
        on_conflict = _KEEP_EXISTING if only_if_absent else _NEWER_VERSION_WINS
        stored = await self._fetch(
            f"INSERT INTO {self.table}_shipments ({_PROJECTION_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            + on_conflict.format(table=self.table)
            + "RETURNING version",
            projection.shipment_key,
            document.workflow_id,
            document.tracking_number,
            page_token,
            projection.version,
            self._to_db_time(projection.updated_at),
            document.status.value,
            document.carrier,
            projection.open_problem,
            self._db_time(projection.registered_at),
            self._db_time(projection.delivered_at),
            projection.model_dump_json(),
        )
        return bool(stored)

    async def projection(self, tracking_number: str) -> ShipmentProjection | None:
        rows = await self._fetch(
            f"SELECT projection FROM {self.table}_shipments WHERE tracking_number = ? "
            "ORDER BY updated_at DESC LIMIT 1",
            tracking_number,
        )
        return ShipmentProjection.model_validate_json(rows[0]["projection"]) if rows else None

    async def projection_by_page(self, page_token: str) -> ShipmentProjection | None:
        rows = await self._fetch(
            f"SELECT projection FROM {self.table}_shipments WHERE page_token = ?", page_token
        )
        return ShipmentProjection.model_validate_json(rows[0]["projection"]) if rows else None

    async def projections(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> builtins.list[ShipmentProjection]:
        far = datetime(9999, 1, 1, tzinfo=UTC)
        rows = await self._fetch(
            f"SELECT projection FROM {self.table}_shipments "
            "WHERE COALESCE(registered_at, updated_at) >= ? "
            "AND COALESCE(registered_at, updated_at) < ? "
            "ORDER BY COALESCE(registered_at, updated_at), shipment_key",
            self._to_db_time(since or datetime(1970, 1, 1, tzinfo=UTC)),
            self._to_db_time(until or far),
        )
        return [ShipmentProjection.model_validate_json(row["projection"]) for row in rows]


_KEEP_EXISTING = "ON CONFLICT (shipment_key) DO NOTHING "
_NEWER_VERSION_WINS = (
    "ON CONFLICT (shipment_key) DO UPDATE SET workflow_id = excluded.workflow_id, "
    "page_token = excluded.page_token, version = excluded.version, "
    "updated_at = excluded.updated_at, status = excluded.status, "
    "carrier = excluded.carrier, open_problem = excluded.open_problem, "
    "registered_at = excluded.registered_at, delivered_at = excluded.delivered_at, "
    "projection = excluded.projection "
    "WHERE {table}_shipments.version <= excluded.version "
)
_PROJECTION_COLUMNS = (
    "shipment_key, workflow_id, tracking_number, page_token, version, updated_at, status, "
    "carrier, open_problem, registered_at, delivered_at, projection"
)


def _advances(current: MessageState, status: str, at: datetime) -> bool:
    """Whether a delivery status reported at `at` replaces the row's: a newer report does,
    except that a final status (delivered, bounced, ...) is not undone by a non-final one."""
    if current.delivery_status is None or current.delivery_status_at is None:
        return True
    if current.delivery_status in _FINAL_DELIVERY and status not in _FINAL_DELIVERY:
        return False
    if status in _FINAL_DELIVERY and current.delivery_status not in _FINAL_DELIVERY:
        return True
    return at >= current.delivery_status_at


def _statuses_sql() -> str:
    return ", ".join(f"'{status}'" for status in STATUSES)


def _schema(table: str, *, postgres: bool) -> builtins.list[str]:
    """The statements that create a fresh ledger (each idempotent)."""
    if postgres:
        seq, time = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "TIMESTAMPTZ"
    else:
        seq, time = "INTEGER PRIMARY KEY AUTOINCREMENT", "TEXT"
    added = ",\n    ".join(
        f"{name} {pg if postgres else lite}" for name, lite, pg in _ADDED_COLUMNS
    )
    return [
        f"""
CREATE TABLE IF NOT EXISTS {table} (
    seq {seq},
    idempotency_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ({_statuses_sql()})),
    owner TEXT,
    lease_until {time},
    attempts INTEGER NOT NULL DEFAULT 0,
    kind TEXT,
    tracking_number TEXT,
    order_id TEXT,
    "trigger" TEXT,
    exception TEXT,
    channel TEXT,
    recipient TEXT,
    subject TEXT,
    body TEXT,
    html TEXT,
    transport TEXT,
    provider_message_id TEXT,
    sent_at {time},
    {added}
)""",
        f"CREATE TABLE IF NOT EXISTS {table}_policies "
        "(digest TEXT PRIMARY KEY, body TEXT NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS {table}_feedback_seen "
        f"(dedupe_id TEXT PRIMARY KEY, seen_at {time} NOT NULL)",
        f"""
CREATE TABLE IF NOT EXISTS {table}_suppressions (
    merchant TEXT NOT NULL,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    reason TEXT NOT NULL,
    at {time} NOT NULL,
    event_at {time},
    PRIMARY KEY (merchant, channel, address, reason)
)""",
        *_ticket_schema(table, time, "BOOLEAN" if postgres else "INTEGER"),
        _projection_schema(table, time, "BOOLEAN" if postgres else "INTEGER"),
        f"CREATE TABLE IF NOT EXISTS {table}_page_visits "
        f"(page_token TEXT NOT NULL, message_key TEXT, at {time} NOT NULL, visit_hour BIGINT)",
        f"CREATE TABLE IF NOT EXISTS {table}_baseline (week_start TEXT PRIMARY KEY, "
        "shipments INTEGER NOT NULL, wismo_tickets INTEGER NOT NULL)",
    ]


def _projection_schema(table: str, time: str, boolean: str) -> str:
    """The read model: one row per shipment lifecycle (trackflow.projection), written by the
    workflow; the scalar columns are what lookups and analytics filter on."""
    return f"""
CREATE TABLE IF NOT EXISTS {table}_shipments (
    shipment_key TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    tracking_number TEXT NOT NULL,
    page_token TEXT,
    version INTEGER NOT NULL,
    updated_at {time} NOT NULL,
    status TEXT NOT NULL,
    carrier TEXT,
    open_problem {boolean} NOT NULL,
    registered_at {time},
    delivered_at {time},
    projection TEXT NOT NULL
)"""


def _ticket_schema(table: str, time: str, boolean: str) -> builtins.list[str]:
    """The inbound-ticket tables: email digest -> shipments (no email), and one anonymised
    row per ticket (no email, no text)."""
    return [
        f"""
CREATE TABLE IF NOT EXISTS {table}_customer_index (
    email_digest TEXT NOT NULL,
    tracking_number TEXT NOT NULL,
    order_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    registered_at {time} NOT NULL,
    tracking_url TEXT,
    PRIMARY KEY (email_digest, tracking_number, order_id)
)""",
        f"""
CREATE TABLE IF NOT EXISTS {table}_inbound_tickets (
    helpdesk TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    received_at {time} NOT NULL,
    created_at {time},
    tracking_number TEXT,
    intent TEXT NOT NULL,
    already_notified {boolean},
    language TEXT NOT NULL,
    rule TEXT,
    PRIMARY KEY (helpdesk, ticket_id)
)""",
    ]


def _indexes(table: str) -> builtins.list[str]:
    """Indexes, created once the table has every column (an old one: after the migration)."""
    return [
        f"CREATE INDEX IF NOT EXISTS {table}_sent_at ON {table} (sent_at, seq)",
        f"CREATE INDEX IF NOT EXISTS {table}_tracking ON {table} (tracking_number, sent_at, seq)",
        f"CREATE INDEX IF NOT EXISTS {table}_provider_id ON {table} (provider_message_id)",
        f"CREATE INDEX IF NOT EXISTS {table}_shipments_number "
        f"ON {table}_shipments (tracking_number, updated_at)",
        f"CREATE UNIQUE INDEX IF NOT EXISTS {table}_shipments_page "
        f"ON {table}_shipments (page_token)",
        f"CREATE INDEX IF NOT EXISTS {table}_shipments_registered "
        f"ON {table}_shipments (registered_at)",
        f"CREATE INDEX IF NOT EXISTS {table}_page_visits_at ON {table}_page_visits (at)",
        # One row per (token, message or none, hour); rows from before the column have no
        # hour and never collide.
        f"CREATE UNIQUE INDEX IF NOT EXISTS {table}_page_visits_once ON {table}_page_visits "
        "(page_token, COALESCE(message_key, ''), visit_hour)",
    ]


def _visit_hour(at: datetime) -> int:
    """The UTC hour `at` falls in, counted from the epoch: a page visit's dedupe bucket."""
    return int(at.timestamp()) // 3600


_SQLITE_BUSY_TIMEOUT_MS = 30_000
# A WAL reader never waits for a writer; this covers the rare moments it must (recovery).
_SQLITE_READ_BUSY_TIMEOUT_MS = 5_000


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL, waiting out another connection doing the same.

    SQLite answers a journal-mode change that meets a concurrent opener with an
    immediate "database is locked", without consulting the busy handler, so two
    processes opening a fresh ledger together need this retry.
    """
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_MS / 1000
    for pause in itertools.chain((0.001, 0.005, 0.02), itertools.repeat(0.05)):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)


def _create_sqlite_schema(conn: sqlite3.Connection, table: str) -> None:
    """Create the tables, or bring an earlier version's up to date, in one write transaction.

    SQLite cannot change a column's CHECK in place: a table from before the 'failed',
    'uncertain' and 'suppressed' statuses is copied into a new one (same rows, same seq)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _schema(table, postgres=False):
            conn.execute(statement)
        have = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, sqlite_type, _pg_type in _ADDED_COLUMNS:
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sqlite_type}")
        visits = {row["name"] for row in conn.execute(f"PRAGMA table_info({table}_page_visits)")}
        if "visit_hour" not in visits:
            conn.execute(f"ALTER TABLE {table}_page_visits ADD COLUMN visit_hour BIGINT")
        suppressions = f"{table}_suppressions"
        have = {row["name"] for row in conn.execute(f"PRAGMA table_info({suppressions})")}
        for name, sqlite_type, _pg_type in _ADDED_SUPPRESSION_COLUMNS:
            if name not in have:
                conn.execute(f"ALTER TABLE {suppressions} ADD COLUMN {name} {sqlite_type}")
        (created,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        if not all(f"'{status}'" in created for status in STATUSES):
            old = f"{table}_before_statuses"
            conn.execute(f"ALTER TABLE {table} RENAME TO {old}")
            conn.execute(_schema(table, postgres=False)[0])
            columns = ", ".join(
                f'"{row["name"]}"' for row in conn.execute(f"PRAGMA table_info({table})")
            )
            conn.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {old}")
            conn.execute(f"DROP TABLE {old}")
        for statement in _indexes(table):
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


# SQLite's primary result codes that say the file cannot be used now, not that the SQL is
# wrong (https://www.sqlite.org/rescode.html). A corrupt file is not one: no retry mends it.
_SQLITE_UNAVAILABLE = frozenset(
    {
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
    }
)


def _sqlite_unavailable(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _SQLITE_UNAVAILABLE


class SqliteLedger(_SqlLedger):
    """One sqlite3 connection, used from worker threads one call at a time."""

    def __init__(self, path: Path, table: str = DEFAULT_TABLE, *, read_only: bool = False) -> None:
        super().__init__(table, read_only)
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            uri = f"{self.path.absolute().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {_SQLITE_READ_BUSY_TIMEOUT_MS}")
            return conn
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # SQLite would create it 0644; its -wal and -shm files copy the database's mode.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
            _enable_wal(conn)
            _create_sqlite_schema(conn, self.table)
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self, sql: str, args: tuple[object, ...]) -> builtins.list[dict[str, Any]]:
        try:
            return self._run_connected(sql, args)
        except (OSError, sqlite3.Error) as error:
            if isinstance(error, OSError) or _sqlite_unavailable(error):
                raise LedgerUnavailable(f"SQLite ledger {self.path}: {error}") from error
            raise

    def _run_connected(self, sql: str, args: tuple[object, ...]) -> builtins.list[dict[str, Any]]:
        with self._lock:
            if self._conn is None:
                if self.read_only and not self.path.exists():
                    return []
                self._conn = self._connect()
            try:
                return [dict(row) for row in self._conn.execute(sql, args).fetchall()]
            except sqlite3.OperationalError as error:
                if self.read_only and str(error).startswith("no such table"):
                    return []
                raise

    async def _fetch(self, sql: str, *args: object) -> builtins.list[dict[str, Any]]:
        return await asyncio.to_thread(self._run, sql, args)

    async def _column_names(self) -> frozenset[str]:
        rows = await self._fetch(f"PRAGMA table_info({self.table})")
        return frozenset(str(row["name"]) for row in rows)

    def _null_of(self, sqlite_type: str, pg_type: str) -> str:
        return f"CAST(NULL AS {sqlite_type})"

    def _seconds_between(self, later: str, earlier: str) -> str:
        # julianday counts milliseconds: rounding keeps whole seconds whole
        return f"ROUND((julianday({later}) - julianday({earlier})) * 86400.0, 3)"

    def _to_db_time(self, value: datetime) -> object:
        return value.astimezone(UTC).isoformat(timespec="microseconds")

    def _from_db_time(self, value: Any) -> datetime:
        return datetime.fromisoformat(value)

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def close(self) -> None:
        await asyncio.to_thread(self._close)


# Connection refused, timed out or lost (OSError, class 08), the server shutting down or
# starting up or a statement cancelled (class 57), out of connections, memory or disk (53).
_POSTGRES_UNAVAILABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
)


class PostgresLedger(_SqlLedger):
    """An asyncpg pool, opened on first use; the schema is created under an advisory lock,
    unless read-only: then every transaction is read-only and nothing is created."""

    def __init__(
        self,
        dsn: str,
        table: str = DEFAULT_TABLE,
        max_connections: int = 10,
        *,
        read_only: bool = False,
    ) -> None:
        super().__init__(table, read_only)
        self.dsn = dsn
        self._max_connections = max_connections
        self._pool: Any = None
        self._lock = asyncio.Lock()

    async def _get_pool(self) -> Any:
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                read_only = {"default_transaction_read_only": "on"} if self.read_only else None
                pool = await asyncpg.create_pool(
                    self.dsn, min_size=1, max_size=self._max_connections, server_settings=read_only
                )
                try:
                    if not self.read_only:
                        await self._create_schema(pool)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
            return self._pool

    async def _create_schema(self, pool: Any) -> None:
        """Create the tables, or bring an earlier version's up to date (missing columns,
        the wider status check), under a lock so workers starting together take turns."""
        t = self.table
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", t)
            for statement in _schema(t, postgres=True):
                await conn.execute(statement)
            columns = await conn.fetch(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name IN ($1, $2)",
                t.lower(),
                f"{t}_page_visits".lower(),
            )
            have = {row["column_name"] for row in columns if row["table_name"] == t.lower()}
            for name, _sqlite_type, pg_type in _ADDED_COLUMNS:
                if name not in have:
                    await conn.execute(f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {name} {pg_type}")
            if not any(row["column_name"] == "visit_hour" for row in columns):
                await conn.execute(
                    f"ALTER TABLE {t}_page_visits ADD COLUMN IF NOT EXISTS visit_hour BIGINT"
                )
            have_suppression = {
                row["column_name"]
                for row in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = $1",
                    f"{t}_suppressions".lower(),
                )
            }
            for name, _sqlite_type, pg_type in _ADDED_SUPPRESSION_COLUMNS:
                if name not in have_suppression:
                    await conn.execute(
                        f"ALTER TABLE {t}_suppressions ADD COLUMN IF NOT EXISTS {name} {pg_type}"
                    )
            checks = await conn.fetch(
                "SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint "
                "WHERE conrelid = $1::regclass AND contype = 'c'",
                t,
            )
            for check in checks:
                definition = check["definition"]
                if "status" in definition and not all(s in definition for s in STATUSES):
                    name = check["conname"].replace('"', '""')
                    await conn.execute(f'ALTER TABLE {t} DROP CONSTRAINT "{name}"')
                    await conn.execute(
                        f'ALTER TABLE {t} ADD CONSTRAINT "{name}" '
                        f"CHECK (status IN ({_statuses_sql()}))"
                    )
            for statement in _indexes(t):
                await conn.execute(statement)

    async def _fetch(self, sql: str, *args: object) -> builtins.list[dict[str, Any]]:
        numbers = itertools.count(1)
        numbered = re.sub(r"\?", lambda _: f"${next(numbers)}", sql)
        try:
            pool = await self._get_pool()
            return [dict(row) for row in await pool.fetch(numbered, *args)]
        except asyncpg.UndefinedTableError:
            if self.read_only:
                return []
            raise
        except _POSTGRES_UNAVAILABLE as error:
            raise LedgerUnavailable(f"PostgreSQL ledger: {error!r}") from error

    async def _column_names(self) -> frozenset[str]:
        rows = await self._fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ?",
            self.table.lower(),
        )
        return frozenset(str(row["column_name"]) for row in rows)

    def _null_of(self, sqlite_type: str, pg_type: str) -> str:
        return f"CAST(NULL AS {pg_type})"

    def _seconds_between(self, later: str, earlier: str) -> str:
        return f"CAST(EXTRACT(EPOCH FROM ({later} - {earlier})) AS DOUBLE PRECISION)"

    def _to_db_time(self, value: datetime) -> object:
        return value

    def _from_db_time(self, value: Any) -> datetime:
        if not isinstance(value, datetime):
            raise TypeError(f"expected a timestamp, got {value!r}")
        return value.astimezone(UTC)

    async def close(self) -> None:
        async with self._lock:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None


def open_ledger(url: str, *, table: str = DEFAULT_TABLE, read_only: bool = False) -> Ledger:
    """`postgresql://...` / `postgres://...` -> PostgreSQL; `sqlite:///path` (SQLAlchemy
    style: three slashes then the path, so four for an absolute one) or a plain path ->
    SQLite. Nothing is opened until first use."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresLedger(url, table, read_only=read_only)
    if url.startswith("sqlite:"):
        if not url.startswith("sqlite:///") or url == "sqlite:///":
            raise ValueError(f"sqlite ledger url must be sqlite:///<path>, got {url!r}")
        return SqliteLedger(Path(url.removeprefix("sqlite:///")), table, read_only=read_only)
    if "://" in url:
        raise ValueError(f"unsupported ledger url: {url!r}")
    return SqliteLedger(Path(url), table, read_only=read_only)
