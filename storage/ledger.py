"""The notification ledger: the durable record that makes every message go out exactly once,
and what trackflow keeps beside it. A `Ledger` is one database (SQLite, the embedded default,
or PostgreSQL for several workers) seen through one repository per concern:

* `messages`: messages and claims (storage.messages)
* `consent`: provider feedback applied and the suppression list (storage.consent)
* `read_model`: the shipments' read model and tracking-page visits (storage.read_model)
* `tickets`: inbound tickets and the customer index (storage.tickets)
* `baselines`: the weeks before trackflow (storage.baseline)
* `policies`: tracking policies by digest (storage.policies)

Its methods are those repositories' under the names callers have always used, plus the few
that span two of them (feedback, figures, the retention purge). Opened `read_only` (the CLI),
a ledger creates nothing, not even a missing file or table (it then reads as empty), and
never waits for a writer's transaction.
"""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta
from pathlib import Path

from storage.baseline import Baseline
from storage.consent import Consent
from storage.engine import Database, PostgresDatabase, SqliteDatabase
from storage.messages import Messages
from storage.models import (
    BaselineWeek,
    Claim,
    CustomerShipment,
    LedgerRecord,
    LedgerTotals,
    MessageState,
    PageVisit,
    Purged,
    Suppression,
    TicketRecord,
)
from storage.policies import Policies
from storage.read_model import ReadModel
from storage.tables import Tables
from storage.tickets import Tickets
from trackflow.shipment_state import ShipmentProjection

DEFAULT_TABLE = "notification_ledger"
SQLITE_FILE_NAME = "ledger.sqlite3"


class Ledger:
    """One ledger: its repositories over one database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        tables = Tables(db.prefix)
        self.messages = Messages(db, tables)
        self.consent = Consent(db, tables)
        self.read_model = ReadModel(db, tables)
        self.inbound_tickets = Tickets(db, tables)
        self.baselines = Baseline(db, tables)
        self.policies = Policies(db, tables)

    @property
    def table(self) -> str:
        return self.db.prefix

    @property
    def read_only(self) -> bool:
        return self.db.read_only

    async def ping(self) -> None:
        """Reach the database (raises `LedgerUnavailable` when it cannot)."""
        await self.db.ping()

    async def close(self) -> None:
        await self.db.close()

    # --- messages and claims -------------------------------------------------------------

    async def record_once(self, record: LedgerRecord) -> tuple[LedgerRecord, bool]:
        """Store the record unless its key is already sent; return the stored record and
        whether this call stored it."""
        return await self.messages.record_once(record)

    async def get(self, idempotency_key: str) -> LedgerRecord | None:
        return await self.messages.get(idempotency_key)

    async def list(self, tracking_number: str | None = None) -> builtins.list[LedgerRecord]:
        """Sent records, oldest first (sent_at, then insertion order)."""
        return await self.messages.list(tracking_number)

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
        return await self.messages.claim(idempotency_key, owner, lease, draft=draft, now=now)

    async def record_sent(self, idempotency_key: str, owner: str, record: LedgerRecord) -> bool:
        """The provider took it: the row becomes 'sent' with the record's transport,
        provider id and time. False when the row was not 'sending' or 'uncertain'."""
        return await self.messages.record_sent(idempotency_key, owner, record)

    async def record_failed(
        self,
        idempotency_key: str,
        code: str,
        detail: str,
        *,
        at: datetime | None = None,
        owner: str | None = None,
    ) -> bool:
        return await self.messages.record_failed(idempotency_key, code, detail, at=at, owner=owner)

    async def mark_uncertain(self, idempotency_key: str, *, owner: str | None = None) -> bool:
        return await self.messages.mark_uncertain(idempotency_key, owner=owner)

    async def mark_suppressed(
        self, idempotency_key: str, reason: str, *, owner: str | None = None
    ) -> bool:
        return await self.messages.mark_suppressed(idempotency_key, reason, owner=owner)

    async def release(self, idempotency_key: str, owner: str, *, sent_nothing: bool) -> bool:
        """Give the lease up now: `sent_nothing` says the provider surely has nothing (the
        next claim sends at once), otherwise the next claim reconciles first."""
        return await self.messages.release(idempotency_key, owner, sent_nothing=sent_nothing)

    async def state(self, idempotency_key: str) -> MessageState | None:
        return await self.messages.state(idempotency_key)

    async def states(self, tracking_number: str | None = None) -> builtins.list[MessageState]:
        """Every row (any status, any kind), oldest first."""
        return await self.messages.states(tracking_number)

    async def key_for_provider_id(self, provider_message_id: str) -> str | None:
        return await self.messages.key_for_provider_id(provider_message_id)

    async def provider_id_for_key(self, idempotency_key: str) -> str | None:
        return await self.messages.provider_id_for_key(idempotency_key)

    # --- provider feedback and consent ---------------------------------------------------

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
        self.db.writing()
        current = await self.messages.state(key)
        if current is None:
            return False
        if dedupe_id is not None and not await self.consent.remember_feedback(dedupe_id):
            return False
        await self.messages.apply_feedback(current, status, at, error_code, provider_message_id)
        return True

    async def feedback_seen(self, dedupe_id: str) -> bool:
        return await self.consent.feedback_seen(dedupe_id)

    async def remember_feedback(self, dedupe_id: str) -> bool:
        """Note a feedback event as applied; False when it was noted before."""
        return await self.consent.remember_feedback(dedupe_id)

    async def suppress(
        self, merchant: str, channel: str, address: str, reason: str, at: datetime | None = None
    ) -> bool:
        """Put the address on the merchant's list for the channel, asked for by an event at
        `at` (default: now); False if already there for that reason (a newer event then
        becomes the one a lift must be newer than)."""
        return await self.consent.suppress(merchant, channel, address, reason, at)

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
        return await self.consent.unsuppress(merchant, channel, address, reason, at)

    async def suppressions(self, merchant: str) -> builtins.list[Suppression]:
        """The merchant's whole suppression list, oldest first."""
        return await self.consent.suppressions(merchant)

    async def suppressed(self, merchant: str, channel: str, address: str) -> str | None:
        """Why the address must not be contacted on the channel, or None."""
        return await self.consent.suppressed(merchant, channel, address)

    # --- stored policies -----------------------------------------------------------------

    async def save_policy(self, digest: str, body: str) -> None:
        """Keep a tracking policy by digest, for workers started later (a changed file)."""
        await self.policies.save(digest, body)

    async def stored_policies(self) -> dict[str, str]:
        return await self.policies.stored()

    # --- tickets and the customer index --------------------------------------------------

    async def index_customer(self, shipment: CustomerShipment) -> bool:
        """Remember that the email digest has this shipment; False when it was known."""
        return await self.inbound_tickets.index_customer(shipment)

    async def customer_shipments(
        self, email_digests: builtins.list[str]
    ) -> builtins.list[CustomerShipment]:
        """The shipments of any of the digests, the most recently registered first."""
        return await self.inbound_tickets.customer_shipments(email_digests)

    async def record_ticket(self, ticket: TicketRecord) -> tuple[TicketRecord, bool]:
        """Store the ticket's row once per (helpdesk, ticket id); return the stored row and
        whether this call stored it."""
        return await self.inbound_tickets.record_ticket(ticket)

    async def ticket(self, helpdesk: str, ticket_id: str) -> TicketRecord | None:
        return await self.inbound_tickets.ticket(helpdesk, ticket_id)

    async def tickets(self, since: datetime | None = None) -> builtins.list[TicketRecord]:
        """Inbound ticket rows received at or after `since`, oldest first."""
        return await self.inbound_tickets.tickets(since)

    # --- the read model and page visits --------------------------------------------------

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
        return await self.read_model.save_projection(
            projection, page_token, only_if_absent=only_if_absent
        )

    async def projection(self, tracking_number: str) -> ShipmentProjection | None:
        """The latest lifecycle's row for a tracking number."""
        return await self.read_model.projection(tracking_number)

    async def projection_by_page(self, page_token: str) -> ShipmentProjection | None:
        return await self.read_model.projection_by_page(page_token)

    async def projections(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> builtins.list[ShipmentProjection]:
        """Rows of shipments registered in [since, until), oldest first."""
        return await self.read_model.projections(since, until)

    async def record_page_visit(
        self, page_token: str, message_key: str | None, at: datetime
    ) -> bool:
        """Record a view of the page unless it was recorded in the same UTC hour already
        or the page has its cap of visits (storage.read_model); whether it was recorded."""
        return await self.read_model.record_page_visit(page_token, message_key, at)

    async def page_visits(self, since: datetime | None = None) -> builtins.list[PageVisit]:
        return await self.read_model.page_visits(since)

    # --- the baseline --------------------------------------------------------------------

    async def save_baseline(self, weeks: builtins.list[BaselineWeek]) -> None:
        """Store the imported weeks (a week imported again is replaced)."""
        await self.baselines.save(weeks)

    async def baseline(self) -> builtins.list[BaselineWeek]:
        return await self.baselines.weeks()

    # --- across repositories -------------------------------------------------------------

    async def message_figures(self, buckets: tuple[float, ...]) -> LedgerTotals:
        """Row counts by kind, trigger, channel, status, transport and (failed rows) error
        code; per channel the send-latency histogram with these bucket bounds (seconds,
        ascending); open-problem shipments; sent alerts by kind. Aggregated by the database."""
        latency = await self.messages.latency(buckets)
        counts = await self.messages.counts()
        alerts: dict[str | None, int] = {}
        for found in counts:
            if found.kind == "alert" and found.status == "sent":
                alerts[found.trigger] = alerts.get(found.trigger, 0) + found.count
        return LedgerTotals(
            counts=counts,
            latency=latency,
            open_problems=await self.read_model.open_problems(),
            alerts=alerts,
        )

    async def purge_before(self, cutoff: datetime) -> Purged:
        """Delete read-model rows not updated since `cutoff`, inbound ticket records and page
        visits older than it (the retention setting)."""
        self.db.writing()
        shipments, visits = await self.read_model.purge_before(cutoff)
        tickets = await self.inbound_tickets.purge_before(cutoff)
        return Purged(shipments=shipments, tickets=tickets, page_visits=visits)


class SqliteLedger(Ledger):
    """A ledger in a SQLite file."""

    def __init__(self, path: Path, table: str = DEFAULT_TABLE, *, read_only: bool = False) -> None:
        super().__init__(SqliteDatabase(path, table, read_only))
        self.path = path


class PostgresLedger(Ledger):
    """A ledger on PostgreSQL, through a pool of `max_connections`."""

    def __init__(
        self,
        dsn: str,
        table: str = DEFAULT_TABLE,
        max_connections: int = 10,
        *,
        read_only: bool = False,
    ) -> None:
        super().__init__(PostgresDatabase(dsn, table, read_only, max_connections))
        self.dsn = dsn


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
