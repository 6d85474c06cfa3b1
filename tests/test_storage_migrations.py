"""The storage layer's migrations: a ledger the code before storage/ wrote (a dump of one,
tests/fixtures/ledger_before_storage) upgrades in place on SQLite and PostgreSQL, keeps its
rows and takes new ones; a new ledger has the same schema; both stand at the newest revision.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import inspect

from storage import BaselineWeek, Ledger, LedgerRecord, open_ledger
from storage.migrate import current, head, version_table
from tests.harness import drop_ledger_tables
from tests.test_ledger import POSTGRES_DSN

FIXTURES = Path(__file__).parent / "fixtures" / "ledger_before_storage"
CAPTURED_PREFIX = "capturedledger"
T0 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
SENT_KEY = "1Z999/5432109876543210987:delivered:0:email"
FAILED_KEY = "1Z999/5432109876543210987:in_transit:0:sms"


@dataclass
class Store:
    """Where a test's ledgers live: a URL and a table prefix of their own."""

    backend: str
    url: str
    table: str
    path: Path | None = None

    def open(self, *, read_only: bool = False) -> Ledger:
        return open_ledger(self.url, table=self.table, read_only=read_only)

    async def load_dump(self) -> None:
        """Write the captured ledger under this store's prefix, as the earlier code left it."""
        name = "sqlite.sql" if self.backend == "sqlite" else "postgresql.sql"
        script = (FIXTURES / name).read_text().replace(CAPTURED_PREFIX, self.table)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path)
            try:
                conn.executescript(script)
            finally:
                conn.close()
            return
        pg = await asyncpg.connect(POSTGRES_DSN)
        try:
            await pg.execute(script)
        finally:
            await pg.close()

    async def schema(self) -> dict[str, Any]:
        """Every table of the ledger: columns (name, type, nullable) and indexes."""
        ledger = self.open()
        try:
            return await ledger.db.run(_describe, self.table)
        finally:
            await ledger.close()

    async def revision(self) -> str | None:
        ledger = self.open()
        try:
            return await ledger.db.run(current, self.table)
        finally:
            await ledger.close()


def _describe(connection: Any, prefix: str) -> dict[str, Any]:
    inspector = inspect(connection)
    tables = sorted(
        name
        for name in inspector.get_table_names()
        if name == prefix or (name.startswith(f"{prefix}_") and name != version_table(prefix))
    )
    described: dict[str, Any] = {}
    for name in tables:
        key = inspector.get_pk_constraint(name)["constrained_columns"]
        described[name] = {
            # SQLite lets a primary key column without NOT NULL hold NULL (the earlier code
            # wrote none); the new tables say NOT NULL. No row differs, so neither counts.
            "columns": [
                (c["name"], str(c["type"]), c["nullable"] and c["name"] not in key)
                for c in inspector.get_columns(name)
            ],
            "primary_key": key,
            "indexes": _indexes(connection, inspector, name),
        }
    return described


def _indexes(connection: Any, inspector: Any, table: str) -> list[tuple[str, ...]]:
    if connection.dialect.name == "sqlite":  # its reflection skips expression indexes
        found = connection.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
            "AND sql IS NOT NULL",
            (table,),
        )
        return sorted(
            (name, " ".join(sql.replace("IF NOT EXISTS ", "").replace('"', "").split()))
            for name, sql in found
        )
    return sorted(
        (i["name"], repr(i.get("expressions") or i["column_names"]), repr(bool(i["unique"])))
        for i in inspector.get_indexes(table)
    )


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        path = tmp_path / "data" / "ledger.sqlite3"
        yield Store("sqlite", f"sqlite:///{path}", "notification_ledger", path)
        return
    table = f"ledger_test_{uuid.uuid4().hex[:12]}"
    try:
        yield Store("postgres", POSTGRES_DSN, table)
    finally:
        await drop_ledger_tables(POSTGRES_DSN, table)


async def test_a_ledger_the_earlier_code_wrote_upgrades_in_place(store: Store) -> None:
    await store.load_dump()
    assert await store.revision() is None  # written before the migrations

    reader = store.open(read_only=True)  # the CLI reads it as it is, migrating nothing
    try:
        assert [r.idempotency_key for r in await reader.list()] == ["alert-1", SENT_KEY]
    finally:
        await reader.close()
    assert await store.revision() is None

    ledger = store.open()
    try:
        # Its rows survive...
        assert [(s.idempotency_key, s.status) for s in await ledger.states()] == [
            ("alert-1", "sent"),
            (SENT_KEY, "sent"),
            (FAILED_KEY, "failed"),
            ("pending-key", "sending"),
        ]
        sent = await ledger.state(SENT_KEY)
        assert sent is not None
        assert (sent.provider_message_id, sent.delivery_status, sent.delivered_at) == (
            "SG-1",
            "delivered",
            T0 + timedelta(minutes=1),
        )
        assert sent.decided_at == T0 - timedelta(minutes=5)
        failed = await ledger.state(FAILED_KEY)
        assert failed is not None and (failed.error_code, failed.error_detail) == (
            "21610",
            "unsubscribed",
        )
        assert await ledger.key_for_provider_id("SG-1") == SENT_KEY
        assert await ledger.feedback_seen("evt-1")
        assert await ledger.suppressed("acme", "sms", "+1 502 555 0123") == "sms_stop"
        assert await ledger.stored_policies() == {"digest-1": '{"name": "captured"}'}
        [indexed] = await ledger.customer_shipments(["d1"])
        assert (indexed.tracking_number, indexed.registered_at) == ("1Z999", T0)
        ticket = await ledger.ticket("gorgias", "T-1")
        assert ticket is not None and ticket.already_notified is True
        projection = await ledger.projection_by_page("tok-captured")
        assert projection is not None and projection.version == 3
        assert [(v.page_token, v.at) for v in await ledger.page_visits()] == [
            ("tok-captured", T0 + timedelta(hours=1))
        ]
        assert await ledger.baseline() == [
            BaselineWeek(week_start=date(2026, 9, 7), shipments=100, wismo_tickets=9)
        ]

        # ...and it takes new ones, under its constraints as before.
        assert not await ledger.record_page_visit(
            "tok-captured", SENT_KEY, T0 + timedelta(hours=1, minutes=20)
        )  # the same hour's click again
        claim = await ledger.claim("new-key", "me", timedelta(seconds=30))
        assert claim.ours
        record = LedgerRecord(
            idempotency_key="new-key",
            tracking_number="1Z999",
            order_id="5432109876543210987",
            trigger="delivered",
            channel="sms",
            to="+15025550123",
            body="Delivered.",
            transport="twilio",
            provider_message_id="SM-2",
            sent_at=T0 + timedelta(days=1),
        )
        assert await ledger.record_sent("new-key", "me", record)
        assert await ledger.record_feedback("new-key", "delivered", T0 + timedelta(days=1))
        assert not (await ledger.claim("pending-key", "me", timedelta(seconds=30), now=T0)).ours
        assert [r.idempotency_key for r in await ledger.list()] == [
            "alert-1",
            SENT_KEY,
            "new-key",
        ]
        totals = await ledger.message_figures((1.0, 60.0))
        assert sum(c.count for c in totals.counts) == 5
    finally:
        await ledger.close()
    assert await store.revision() == head()


async def test_a_new_ledger_has_the_schema_the_earlier_code_made(
    store: Store, tmp_path: Path
) -> None:
    await store.load_dump()
    ledger = store.open()
    try:
        await ledger.ping()  # a writer's first use upgrades it
    finally:
        await ledger.close()
    upgraded = await store.schema()

    if store.backend == "sqlite":
        path = tmp_path / "fresh" / "ledger.sqlite3"
        fresh = Store("sqlite", f"sqlite:///{path}", store.table, path)
    else:
        fresh = Store("postgres", POSTGRES_DSN, f"{store.table}_new")
    try:
        new = fresh.open()
        try:
            await new.ping()
        finally:
            await new.close()
        assert await fresh.revision() == head()
        created = await fresh.schema()
    finally:
        if store.backend == "postgres":
            await drop_ledger_tables(POSTGRES_DSN, fresh.table)

    def renamed(schema: dict[str, Any], prefix: str) -> str:
        return repr(schema).replace(prefix, "<prefix>")

    assert renamed(created, fresh.table) == renamed(upgraded, store.table)
    assert len(created) == 9
