"""Messages and claims: the ledger's message table, one row per idempotency key.

Alerts and helpdesk tags are stored whole by `record_once`, which inserts a new key
atomically, so concurrent writers of one key agree on a single record. Customer messages go
through a claim first, because providers take no idempotency key:

* `claim` inserts a 'sending' row with an owner and a lease (`lease_until`), or takes over a
  'sending' row whose lease expired (or that its owner released); it tells the caller what it
  found: sent, failed, uncertain, suppressed, or claimed by someone else until when.
* `record_sent` stores the provider's receipt (`provider_message_id`), `record_failed` a
  permanent refusal with the provider's code, `mark_uncertain` a message nobody can say was
  sent or not, `mark_suppressed` one the customer's consent ruled out.
* `apply_feedback` keeps the provider's delivery status, opened and clicked times and error
  code on the row.

`get` and `list` show only 'sent' rows (the outbox); `state` and `states` show every row with
its status and feedback (the shipment view). Opened read-only on a table an earlier version
wrote (only a writer migrates), the columns added since read as empty.
"""

from __future__ import annotations

import builtins
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    FromClause,
    RowMapping,
    Select,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    null,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import TIMESTAMP

from storage.engine import Database
from storage.models import (
    Claim,
    ClaimState,
    LatencyHistogram,
    LedgerRecord,
    MessageCount,
    MessageState,
)
from storage.tables import Tables, UtcTime

# Feedback statuses about engagement, not delivery: they never replace the delivery status.
_ENGAGEMENT = frozenset({"opened", "clicked", "spam_report", "unsubscribed", "resubscribed"})
# Delivery statuses a provider reports last: a late "sent" or "queued" does not undo them.
_FINAL_DELIVERY = frozenset(
    {"delivered", "undelivered", "failed", "canceled", "bounced", "dropped"}
)
# Columns a claim stores before the provider answers (a draft's whom, what and how).
_DRAFT_FIELDS = (
    "kind",
    "tracking_number",
    "order_id",
    "trigger",
    "exception",
    "channel",
    "recipient",
    "subject",
    "body",
    "html",
    "transport",
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def _record_values(record: LedgerRecord) -> dict[str, Any]:
    return {
        "kind": record.kind,
        "tracking_number": record.tracking_number,
        "order_id": record.order_id,
        "trigger": record.trigger,
        "exception": record.exception,
        "channel": record.channel,
        "recipient": record.to,
        "subject": record.subject,
        "body": record.body,
        "html": record.html,
        "transport": record.transport,
        "provider_message_id": record.provider_message_id,
        "sent_at": record.sent_at,
    }


def _shared(row: RowMapping) -> dict[str, Any]:
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


def _record(row: RowMapping) -> LedgerRecord:
    return LedgerRecord(**_shared(row), body=row["body"], html=row["html"], sent_at=row["sent_at"])


def _state(row: RowMapping) -> MessageState:
    return MessageState(
        **_shared(row),
        status=row["status"],
        owner=row["owner"],
        lease_until=row["lease_until"],
        attempts=row["attempts"] or 0,
        claimed_at=row["claimed_at"],
        sent_at=row["sent_at"],
        error_code=row["error_code"],
        error_detail=row["error_detail"],
        delivery_status=row["delivery_status"],
        delivery_status_at=row["delivery_status_at"],
        delivered_at=row["delivered_at"],
        opened_at=row["opened_at"],
        clicked_at=row["clicked_at"],
        decided_at=row["decided_at"],
        held_until=row["held_until"],
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


class Messages:
    """The message table's one owner."""

    def __init__(self, db: Database, tables: Tables) -> None:
        self.db = db
        self.table = tables.messages
        # Whether the table has every column (a writer migrates it first; a reader learns
        # it by looking, on each read until they all exist: a writer may migrate meanwhile).
        self._complete = not db.read_only
        # The statements of the send path, built once and run with their parameters.
        t = self.table
        self._by_key = select(t).where(t.c.idempotency_key == bindparam("b_key"))
        self._sent_by_key = self._by_key.where(t.c.status == "sent")
        self._insert = (
            db.insert(t)
            .on_conflict_do_nothing(index_elements=[t.c.idempotency_key])
            .returning(*t.c)
        )
        self._take_over = (
            update(t)
            .where(
                t.c.idempotency_key == bindparam("b_key"),
                t.c.status == "sending",
                t.c.attempts == bindparam("b_attempts"),
            )
            .values(
                attempts=t.c.attempts + 1,
                claimed_at=func.coalesce(t.c.claimed_at, bindparam("b_at", type_=UtcTime())),
            )
            .returning(*t.c)
        )
        self._record_sent = (
            update(t)
            .where(
                t.c.idempotency_key == bindparam("b_key"),
                t.c.status.in_(("sending", "uncertain")),
            )
            .returning(t.c.seq)
        )
        settle = update(t).where(t.c.idempotency_key == bindparam("b_key"), t.c.status == "sending")
        self._settle_any = settle.returning(t.c.seq)
        self._settle_owned = settle.where(t.c.owner == bindparam("b_owner")).returning(t.c.seq)

    async def _source(self) -> FromClause:
        """What message-row reads select from: the table, or, read-only on a table an earlier
        version wrote, the table with every column it lacks read as NULL."""
        if self._complete:
            return self.table
        have = await self.db.columns(self.table.name)
        if not have:  # no table (yet): reads find nothing
            return self.table
        if have >= set(self.table.c.keys()):
            self._complete = True
            return self.table
        columns = [
            column if column.name in have else cast(null(), column.type).label(column.name)
            for column in self.table.c
        ]
        return select(*columns).subquery(self.table.name)

    async def _rows(self, query: Select[Any]) -> builtins.list[RowMapping]:
        return await self.db.rows(query)

    async def record_once(self, record: LedgerRecord) -> tuple[LedgerRecord, bool]:
        self.db.writing()
        created = await self.db.rows(
            self._insert,
            {"idempotency_key": record.idempotency_key, "status": "sent", **_record_values(record)},
        )
        if created:
            return record, True
        stored = await self.get(record.idempotency_key)
        if stored is None:
            raise RuntimeError(f"ledger row for {record.idempotency_key!r} vanished")
        return stored, False

    async def get(self, idempotency_key: str) -> LedgerRecord | None:
        s = await self._source()
        query = (
            self._sent_by_key
            if s is self.table
            else select(s).where(s.c.idempotency_key == bindparam("b_key"), s.c.status == "sent")
        )
        rows = await self.db.rows(query, {"b_key": idempotency_key})
        return _record(rows[0]) if rows else None

    async def list(self, tracking_number: str | None = None) -> builtins.list[LedgerRecord]:
        s = await self._source()
        query = select(s).where(s.c.status == "sent").order_by(s.c.sent_at, s.c.seq)
        if tracking_number is not None:
            query = query.where(s.c.tracking_number == tracking_number)
        return [_record(row) for row in await self._rows(query)]

    async def _row(self, idempotency_key: str) -> RowMapping | None:
        s = await self._source()
        query = (
            self._by_key
            if s is self.table
            else select(s).where(s.c.idempotency_key == bindparam("b_key"))
        )
        rows = await self.db.rows(query, {"b_key": idempotency_key})
        return rows[0] if rows else None

    async def state(self, idempotency_key: str) -> MessageState | None:
        row = await self._row(idempotency_key)
        return _state(row) if row else None

    async def states(self, tracking_number: str | None = None) -> builtins.list[MessageState]:
        source = await self._source()
        query = select(source).order_by(
            func.coalesce(source.c.sent_at, source.c.claimed_at), source.c.seq
        )
        if tracking_number is not None:
            query = query.where(source.c.tracking_number == tracking_number)
        return [_state(row) for row in await self._rows(query)]

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
        self.db.writing()
        if lease <= timedelta(0):
            raise ValueError("a claim's lease must be positive")
        if draft is not None and draft.idempotency_key != idempotency_key:
            raise ValueError("the draft's key differs from the key claimed")
        at = (now or utc_now()).astimezone(UTC)
        until = at + lease
        values: dict[str, Any] = {
            "idempotency_key": idempotency_key,
            "status": "sending",
            "owner": owner,
            "lease_until": until,
            "attempts": 1,
            "claimed_at": at,
        }
        if draft is None:
            values["kind"] = "message"
        else:
            drafted = _record_values(draft)
            values.update({name: drafted[name] for name in _DRAFT_FIELDS})
            values.update(decided_at=draft.decided_at, held_until=draft.held_until)
        while True:
            inserted = await self.db.rows(self._insert, values)
            if inserted:
                return Claim(True, ClaimState.NEW, _state(inserted[0]))
            row = await self._row(idempotency_key)
            if row is None:
                continue  # never deleted today; a manual DELETE raced us: insert again
            found = _state(row)
            if found.status != "sending":
                record = _record(row) if found.status == "sent" else None
                return Claim(False, ClaimState(found.status), found, record)
            if found.owner is not None and found.lease_until and found.lease_until > at:
                return Claim(False, ClaimState.LIVE, found)
            # Take it over, unless another claimer did since we read it (`attempts` is the
            # row's version: every claim bumps it).
            taken = await self.db.rows(
                self._take_over,
                {
                    "b_key": idempotency_key,
                    "b_attempts": row["attempts"],
                    "b_at": at,
                    "owner": owner,
                    "lease_until": until,
                },
            )
            if taken:
                state = ClaimState.RELEASED if found.owner is None else ClaimState.EXPIRED
                return Claim(True, state, _state(taken[0]))

    async def record_sent(self, idempotency_key: str, owner: str, record: LedgerRecord) -> bool:
        self.db.writing()
        if record.idempotency_key != idempotency_key:
            raise ValueError("the record's key differs from the key recorded")
        updated = await self.db.rows(
            self._record_sent,
            {
                "b_key": idempotency_key,
                "status": "sent",
                "owner": owner,
                "lease_until": None,
                **_record_values(record),
            },
        )
        return bool(updated)

    async def _settle(
        self, idempotency_key: str, status: str, owner: str | None, **sets: object
    ) -> bool:
        self.db.writing()
        params = {"b_key": idempotency_key, "status": status, "lease_until": None, **sets}
        if owner is None:
            return bool(await self.db.rows(self._settle_any, params))
        return bool(await self.db.rows(self._settle_owned, {**params, "b_owner": owner}))

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
            error_code=code,
            error_detail=detail,
            sent_at=at or utc_now(),
        )

    async def mark_uncertain(self, idempotency_key: str, *, owner: str | None = None) -> bool:
        return await self._settle(idempotency_key, "uncertain", owner)

    async def mark_suppressed(
        self, idempotency_key: str, reason: str, *, owner: str | None = None
    ) -> bool:
        return await self._settle(idempotency_key, "suppressed", owner, error_code=reason)

    async def release(self, idempotency_key: str, owner: str, *, sent_nothing: bool) -> bool:
        self.db.writing()
        t = self.table
        # Sent nothing: the next claim sends at once. Else keep the owner: the next claim
        # sees an expired lease and reconciles.
        sets: dict[str, Any] = (
            {"owner": None, "lease_until": None} if sent_nothing else {"lease_until": utc_now()}
        )
        updated = await self.db.rows(
            update(t)
            .where(
                t.c.idempotency_key == idempotency_key,
                t.c.status == "sending",
                t.c.owner == owner,
            )
            .values(**sets)
            .returning(t.c.seq)
        )
        return bool(updated)

    # --- provider feedback --------------------------------------------------------------

    async def apply_feedback(
        self,
        current: MessageState,
        status: str,
        at: datetime,
        error_code: str | None,
        provider_message_id: str | None,
    ) -> None:
        """Keep a provider's word on the row: its delivery status (unless it does not
        advance the row's), opened/clicked time (the first), error code, provider id."""
        self.db.writing()
        sets: dict[str, Any] = {}
        if status == "opened" and current.opened_at is None:
            sets["opened_at"] = at
        elif status == "clicked" and current.clicked_at is None:
            sets["clicked_at"] = at
        elif status not in _ENGAGEMENT and _advances(current, status, at):
            sets.update(delivery_status=status, delivery_status_at=at)
            if status == "delivered" and current.delivered_at is None:
                sets["delivered_at"] = at
        if error_code:
            sets["error_code"] = error_code
        if provider_message_id and current.provider_message_id is None:
            sets["provider_message_id"] = provider_message_id
        if sets:
            t = self.table
            await self.db.rows(
                update(t).where(t.c.idempotency_key == current.idempotency_key).values(**sets)
            )

    async def key_for_provider_id(self, provider_message_id: str) -> str | None:
        t = self.table
        rows = await self._rows(
            select(t.c.idempotency_key)
            .where(t.c.provider_message_id == provider_message_id)
            .order_by(t.c.seq)
            .limit(1)
        )
        return str(rows[0]["idempotency_key"]) if rows else None

    async def provider_id_for_key(self, idempotency_key: str) -> str | None:
        t = self.table
        rows = await self._rows(
            select(t.c.provider_message_id).where(t.c.idempotency_key == idempotency_key)
        )
        return rows[0]["provider_message_id"] if rows else None

    # --- figures --------------------------------------------------------------------------

    async def counts(self) -> tuple[MessageCount, ...]:
        """Rows by kind, trigger, channel, status, transport and (failed rows) error code."""
        s = await self._source()
        failed_code = case((s.c.status == "failed", s.c.error_code))
        grouped = await self._rows(
            select(
                s.c.kind,
                s.c.trigger,
                s.c.channel,
                s.c.status,
                s.c.transport,
                failed_code.label("error_code"),
                func.count().label("n"),
            )
            # By position: the CASE's bound 'failed' would differ from the select list's.
            .group_by(*(literal_column(str(position)) for position in range(1, 7)))
        )
        return tuple(
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

    def _seconds_between(self, later: ColumnElement[Any], earlier: ColumnElement[Any]) -> Any:
        if self.db.dialect == "postgresql":
            moment = TIMESTAMP(timezone=True)
            span = type_coerce(later, moment) - type_coerce(earlier, moment)
            return cast(func.extract("epoch", span), Float)
        # julianday counts milliseconds: rounding keeps whole seconds whole
        return func.round((func.julianday(later) - func.julianday(earlier)) * 86400.0, 3)

    async def latency(self, buckets: tuple[float, ...]) -> tuple[LatencyHistogram, ...]:
        """Per channel, the send-latency histogram with these bucket bounds (seconds,
        ascending) of sent customer messages that have both times."""
        bounds = tuple(float(bound) for bound in buckets)
        if not all(map(math.isfinite, bounds)) or list(bounds) != sorted(set(bounds)):
            raise ValueError(f"bucket bounds must be finite and ascending: {buckets!r}")
        s = await self._source()
        timed = (
            select(s.c.channel, self._seconds_between(s.c.sent_at, s.c.decided_at).label("delta"))
            .where(
                s.c.status == "sent",
                func.coalesce(s.c.kind, "message") == "message",
                s.c.sent_at.is_not(None),
                s.c.decided_at.is_not(None),
            )
            .subquery("timed")
        )
        clamped = select(
            timed.c.channel,
            case((timed.c.delta < 0, 0), else_=timed.c.delta).label("seconds"),
        ).subquery("clamped")
        per_bound = (
            func.sum(case((clamped.c.seconds <= bound, 1), else_=0)).label(f"le{index}")
            for index, bound in enumerate(bounds)
        )
        rows = await self._rows(
            select(
                clamped.c.channel,
                func.count().label("n"),
                func.sum(clamped.c.seconds).label("total"),
                *per_bound,
            ).group_by(clamped.c.channel)
        )
        return tuple(
            LatencyHistogram(
                channel=row["channel"],
                buckets=bounds,
                cumulative=tuple(int(row[f"le{index}"]) for index in range(len(bounds))),
                count=int(row["n"]),
                sum=float(row["total"]),
            )
            for row in rows
        )
