"""The notification ledger against both backends: SQLite in tmp_path and a real PostgreSQL.

PostgreSQL comes from TRACKFLOW_TEST_POSTGRES_DSN; when it is unreachable the tests fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from activities.ledger import (
    Ledger,
    LedgerRecord,
    PostgresLedger,
    ReadOnlyLedgerError,
    SqliteLedger,
    open_ledger,
)
from tests.harness import clean_env, trackflow_cli

POSTGRES_DSN = os.environ.get(
    "TRACKFLOW_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
T0 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)

LedgerFactory = Callable[..., Ledger]


@pytest.fixture(params=["sqlite", "postgres"])
async def open_same(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LedgerFactory]:
    """Opens ledgers on one store, as separate processes (worker, CLI) would; a factory
    called with read_only=True opens one as the CLI does."""
    opened: list[Ledger] = []
    if request.param == "sqlite":
        url, table = f"sqlite:///{tmp_path / 'data' / 'ledger.sqlite3'}", "notification_ledger"
    else:
        url, table = POSTGRES_DSN, f"ledger_test_{uuid.uuid4().hex[:12]}"

    def factory(read_only: bool = False) -> Ledger:
        ledger = open_ledger(url, table=table, read_only=read_only)
        opened.append(ledger)
        return ledger

    try:
        yield factory
    finally:
        for ledger in opened:
            await ledger.close()
        if request.param == "postgres":
            conn = await asyncpg.connect(POSTGRES_DSN)
            try:
                await conn.execute(f"DROP TABLE IF EXISTS {table}")
            finally:
                await conn.close()


@pytest.fixture
def ledger(open_same: LedgerFactory) -> Ledger:
    return open_same()


def make_record(key: str = "shipment-1Z999:delivered:1:email", **changes: object) -> LedgerRecord:
    fields: dict[str, object] = {
        "idempotency_key": key,
        "tracking_number": "1Z999",
        "order_id": "5432109876543210987",
        "trigger": "delivered",
        "channel": "email",
        "to": "ana@example.com",
        "subject": "Delivered",
        "body": "Your order arrived.",
        "transport": "outbox",
        "sent_at": T0,
    }
    fields.update(changes)
    return LedgerRecord.model_validate(fields)


async def test_record_once_keeps_the_first_record(ledger: Ledger) -> None:
    first = make_record(body="first")
    stored, created = await ledger.record_once(first)
    assert created and stored == first

    again, created = await ledger.record_once(make_record(body="second", sent_at=T0 + timedelta(1)))
    assert not created
    assert again == first
    assert await ledger.get(first.idempotency_key) == first
    assert await ledger.list() == [first]


async def test_get_unknown_key(ledger: Ledger) -> None:
    assert await ledger.get("nope") is None


async def test_concurrent_record_once_creates_exactly_once(ledger: Ledger) -> None:
    records = [make_record(body=f"attempt {i}") for i in range(20)]
    results = await asyncio.gather(*(ledger.record_once(r) for r in records))

    assert sum(created for _, created in results) == 1
    winner = next(r for r, created in results if created)
    assert all(stored == winner for stored, _ in results)
    assert await ledger.list() == [winner]


async def test_two_ledgers_on_one_store_race_and_see_each_other(open_same: LedgerFactory) -> None:
    worker, cli = open_same(), open_same()
    records = [make_record(body=f"attempt {i}") for i in range(20)]
    results = await asyncio.gather(
        *((worker if i % 2 else cli).record_once(r) for i, r in enumerate(records))
    )
    assert sum(created for _, created in results) == 1

    other = make_record("shipment-1Z999:in_transit:1:email", trigger="in_transit")
    await worker.record_once(other)
    assert await cli.get(other.idempotency_key) == other
    assert {r.idempotency_key for r in await cli.list()} == {
        records[0].idempotency_key,
        other.idempotency_key,
    }


def test_processes_opening_a_fresh_sqlite_ledger_together_all_get_in(tmp_path: Path) -> None:
    """Switching a new file to WAL fails at once, busy handler or not, when another opener races."""
    failures: list[BaseException] = []

    def open_and_query(ledger: SqliteLedger) -> None:
        try:
            ledger._run("SELECT count(*) FROM notification_ledger", ())
        except BaseException as error:
            failures.append(error)

    for attempt in range(40):
        path = tmp_path / f"race-{attempt}" / "ledger.sqlite3"
        ledgers = [SqliteLedger(path) for _ in range(4)]
        threads = [threading.Thread(target=open_and_query, args=(ledger,)) for ledger in ledgers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for ledger in ledgers:
            ledger._close()

    assert failures == []


async def test_list_orders_by_sent_at_then_insertion_and_filters(ledger: Ledger) -> None:
    late = make_record("a:late", sent_at=T0 + timedelta(hours=2))
    tie_1 = make_record("z:tie-1", sent_at=T0)
    tie_2 = make_record("b:tie-2", sent_at=T0)
    other = make_record("c:other", tracking_number="9400TRACK", sent_at=T0 + timedelta(hours=1))
    for record in (late, tie_1, tie_2, other):
        await ledger.record_once(record)

    assert await ledger.list() == [tie_1, tie_2, other, late]
    assert await ledger.list("1Z999") == [tie_1, tie_2, late]
    assert await ledger.list("9400TRACK") == [other]
    assert await ledger.list("UNKNOWN") == []


async def test_values_round_trip(ledger: Ledger) -> None:
    record = make_record(
        kind="alert",
        order_id=str(2**63 - 1),
        exception="weather_delay",
        channel="sms",
        to="+15025550123",
        subject=None,
        body="Ça arrive bientôt 📦 — 配達中\nline two",
        html="<p>Ça 📦</p>",
        provider_message_id="SM123",
        sent_at=datetime(2026, 11, 20, 9, 30, 15, 123456, tzinfo=UTC),
    )
    await ledger.record_once(record)
    stored = await ledger.get(record.idempotency_key)
    assert stored == record
    assert stored is not None and stored.order_id == "9223372036854775807"
    assert stored.sent_at.tzinfo is not None and stored.sent_at.utcoffset() == timedelta(0)


def test_sent_at_is_normalized_to_utc() -> None:
    local = datetime.fromisoformat("2026-11-20T09:00:00-05:00")
    assert make_record(sent_at=local).sent_at == datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="time zone"):
        make_record(sent_at=datetime(2026, 11, 20, 14, 0))


def test_open_ledger_urls(tmp_path: Path) -> None:
    relative = open_ledger("sqlite:///.trackflow/ledger.sqlite3")
    assert isinstance(relative, SqliteLedger) and relative.path == Path(".trackflow/ledger.sqlite3")
    absolute = open_ledger(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    assert isinstance(absolute, SqliteLedger) and absolute.path == tmp_path / "x.sqlite3"
    plain = open_ledger(str(tmp_path / "y.sqlite3"))
    assert isinstance(plain, SqliteLedger) and plain.path == tmp_path / "y.sqlite3"
    assert isinstance(open_ledger("postgres://u@h/db"), PostgresLedger)
    assert isinstance(open_ledger("postgresql://u@h/db"), PostgresLedger)
    for bad in ("mysql://h/db", "sqlite://x.db", "sqlite:///"):
        with pytest.raises(ValueError):
            open_ledger(bad)
    with pytest.raises(ValueError, match="table"):
        open_ledger("sqlite:///x.db", table="x; DROP TABLE y")


async def test_outbox_command_reads_while_another_process_holds_a_write_transaction(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    await ledger.record_once(make_record())
    await ledger.close()
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM notification_ledger")
        shown = await asyncio.to_thread(
            trackflow_cli, "outbox", "--json", "--data-dir", str(tmp_path), env=clean_env()
        )
    finally:
        writer.close()

    assert shown.returncode == 0, shown.stderr
    assert [r["idempotency_key"] for r in json.loads(shown.stdout)] == [
        make_record().idempotency_key
    ]


def test_outbox_command_without_a_ledger_shows_nothing_and_creates_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "never-started"
    listed = trackflow_cli("outbox", "--data-dir", str(data_dir), env=clean_env())
    as_json = trackflow_cli("outbox", "--json", "--data-dir", str(data_dir), env=clean_env())

    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "", "")
    assert (as_json.returncode, json.loads(as_json.stdout)) == (0, [])
    assert not data_dir.exists()


async def test_read_only_ledger_creates_nothing_and_refuses_writes(
    open_same: LedgerFactory, tmp_path: Path
) -> None:
    reader = open_same(read_only=True)
    assert await reader.list() == []
    assert await reader.get("nope") is None
    with pytest.raises(ReadOnlyLedgerError):
        await reader.record_once(make_record())
    assert not (tmp_path / "data").exists()

    record = make_record()
    await open_same().record_once(record)
    assert await reader.list() == [record]
    assert await open_same(read_only=True).get(record.idempotency_key) == record


@asynccontextmanager
async def _transaction_in_progress(ledger: Ledger) -> AsyncIterator[None]:
    """Another connection deleting every row, not committed yet; on PostgreSQL it also holds
    the lock under which writers create the schema."""
    if isinstance(ledger, SqliteLedger):
        writer = sqlite3.connect(ledger.path, isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")
            writer.execute(f"DELETE FROM {ledger.table}")
            yield
        finally:
            writer.close()
        return
    assert isinstance(ledger, PostgresLedger)
    conn = await asyncpg.connect(POSTGRES_DSN)
    transaction = conn.transaction()
    try:
        await transaction.start()
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", ledger.table)
        await conn.execute(f"DELETE FROM {ledger.table}")
        yield
    finally:
        await transaction.rollback()
        await conn.close()


async def test_read_only_ledger_reads_while_a_writer_holds_a_transaction(
    open_same: LedgerFactory,
) -> None:
    writer = open_same()
    record = make_record()
    await writer.record_once(record)
    async with _transaction_in_progress(writer):
        reader = open_same(read_only=True)
        assert await asyncio.wait_for(reader.list(), timeout=10) == [record]


def test_sqlite_ledger_files_are_private(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        ledger = SqliteLedger(tmp_path / "data" / "ledger.sqlite3")
        asyncio.run(ledger.record_once(make_record()))
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "data").iterdir()}
        asyncio.run(ledger.close())
    finally:
        os.umask(umask)

    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    assert modes == {
        "ledger.sqlite3": 0o600,
        "ledger.sqlite3-wal": 0o600,
        "ledger.sqlite3-shm": 0o600,
    }
