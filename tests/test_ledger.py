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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from storage import (
    BaselineWeek,
    ClaimState,
    Ledger,
    LedgerRecord,
    PostgresLedger,
    ReadOnlyLedgerError,
    SqliteLedger,
    open_ledger,
)
from tests.factories import ANY_TIME_POLICY, make_shipment
from tests.harness import clean_env, drop_ledger_tables, trackflow_cli
from trackflow.carriers.samples import random_tracking_number
from trackflow.limits import MAX_VISITS_PER_PAGE
from trackflow.projection import project
from trackflow.shipment_state import Phase, ShipmentProjection, ShipmentState

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
            await drop_ledger_tables(POSTGRES_DSN, table)


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
        async def query() -> None:
            try:
                await ledger.states()
            finally:
                await ledger.close()

        try:
            asyncio.run(query())
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


# --- claims: the lease every customer message is sent under --------------------------------

LEASE = timedelta(seconds=30)
KEY = "1Z999/5432109876543210987:delivered:0:sms"


async def test_a_claim_inserts_a_sending_row_and_only_one_of_racing_owners_gets_it(
    open_same: LedgerFactory,
) -> None:
    a, b = open_same(), open_same()
    claims = await asyncio.gather(
        *((a if i % 2 else b).claim(KEY, f"owner-{i}", LEASE, now=T0) for i in range(20))
    )

    ours = [c for c in claims if c.ours]
    assert len(ours) == 1 and ours[0].state is ClaimState.NEW
    winner = ours[0].owner
    assert all(c.state is ClaimState.LIVE and c.owner == winner for c in claims if not c.ours)
    assert all(c.lease_until == T0 + LEASE for c in claims)
    state = await a.state(KEY)
    assert state is not None
    assert (state.status, state.owner, state.attempts, state.claimed_at) == (
        "sending",
        winner,
        1,
        T0,
    )
    assert await a.get(KEY) is None and await a.list() == []  # not sent: not in the outbox


async def test_an_expired_claim_is_taken_over_by_one_claimer(open_same: LedgerFactory) -> None:
    ledger = open_same()
    await ledger.claim(KEY, "crashed", LEASE, now=T0)

    still_live = await ledger.claim(KEY, "early", LEASE, now=T0 + LEASE - timedelta(seconds=1))
    assert (still_live.ours, still_live.state, still_live.owner) == (
        False,
        ClaimState.LIVE,
        "crashed",
    )

    later = T0 + LEASE
    claims = await asyncio.gather(
        *(open_same().claim(KEY, f"retry-{i}", LEASE, now=later) for i in range(10))
    )
    taken = [c for c in claims if c.ours]
    assert len(taken) == 1 and taken[0].state is ClaimState.EXPIRED
    assert taken[0].claimed_at == T0  # reconciliation looks back to the first claim
    assert taken[0].lease_until == later + LEASE
    assert taken[0].row.attempts == 2
    assert all(c.state is ClaimState.LIVE for c in claims if not c.ours)
    # The crashed owner lost its lease: it cannot give it back or settle the row.
    assert not await ledger.release(KEY, "crashed", sent_nothing=True)
    assert not await ledger.mark_uncertain(KEY, owner="crashed")


async def test_a_sent_row_answers_every_later_claim(open_same: LedgerFactory) -> None:
    ledger = open_same()
    await ledger.claim(KEY, "me", LEASE, draft=make_record(KEY, transport="twilio"), now=T0)
    sent = make_record(KEY, transport="twilio", provider_message_id="SM1", sent_at=T0)
    assert await ledger.record_sent(KEY, "me", sent)

    for when in (T0, T0 + timedelta(days=1)):
        claim = await open_same().claim(KEY, "other", LEASE, now=when)
        assert (claim.ours, claim.state, claim.record) == (False, ClaimState.SENT, sent)
    assert await ledger.get(KEY) == sent
    assert await ledger.list() == [sent]
    assert not await ledger.record_sent(KEY, "other", sent)  # settled once


async def test_failed_uncertain_and_suppressed_rows_are_final_and_not_in_the_outbox(
    open_same: LedgerFactory,
) -> None:
    ledger = open_same()
    keys = {"failed": "k:failed", "uncertain": "k:uncertain", "suppressed": "k:suppressed"}
    for key in keys.values():
        await ledger.claim(key, "me", LEASE, draft=make_record(key, transport="twilio"), now=T0)
    assert await ledger.record_failed(keys["failed"], "21610", "unsubscribed", at=T0, owner="me")
    assert await ledger.mark_uncertain(keys["uncertain"], owner="me")
    assert await ledger.mark_suppressed(keys["suppressed"], "sms_stop", owner="me")

    for status, key in keys.items():
        claim = await ledger.claim(key, "retry", LEASE, now=T0 + timedelta(hours=1))
        assert (claim.ours, claim.state.value) == (False, status)
    failed = await ledger.state(keys["failed"])
    assert failed is not None
    assert (failed.status, failed.error_code, failed.error_detail, failed.to) == (
        "failed",
        "21610",
        "unsubscribed",
        "ana@example.com",
    )
    suppressed = await ledger.state(keys["suppressed"])
    assert suppressed is not None and suppressed.error_code == "sms_stop"
    assert await ledger.list() == []
    assert {s.status for s in await ledger.states("1Z999")} == set(keys)


async def test_a_released_claim_is_sent_again_without_reconciling(
    open_same: LedgerFactory,
) -> None:
    ledger = open_same()
    await ledger.claim(KEY, "first", LEASE, now=T0)
    assert await ledger.release(KEY, "first", sent_nothing=True)
    again = await ledger.claim(KEY, "second", LEASE, now=T0 + timedelta(seconds=1))
    assert (again.ours, again.state) == (True, ClaimState.RELEASED)

    # Given back without knowing: the next claimer, at once, must reconcile.
    assert await ledger.release(KEY, "second", sent_nothing=False)
    third = await ledger.claim(KEY, "third", LEASE)
    assert (third.ours, third.state) == (True, ClaimState.EXPIRED)


async def test_record_once_and_claims_share_the_table(open_same: LedgerFactory) -> None:
    ledger = open_same()
    alert = make_record("alert-key", kind="alert", channel="alert")
    await ledger.record_once(alert)
    claim = await ledger.claim("alert-key", "me", LEASE)
    assert (claim.ours, claim.state, claim.record) == (False, ClaimState.SENT, alert)


# --- provider feedback ---------------------------------------------------------------------


async def _sent_message(ledger: Ledger, key: str = KEY, provider_id: str = "SM1") -> None:
    await ledger.claim(key, "me", LEASE, draft=make_record(key), now=T0)
    await ledger.record_sent(
        key, "me", make_record(key, transport="twilio", provider_message_id=provider_id)
    )


async def test_feedback_keeps_delivery_status_times_and_error_code(ledger: Ledger) -> None:
    await _sent_message(ledger)
    t = [T0 + timedelta(minutes=m) for m in range(6)]
    assert await ledger.record_feedback(KEY, "queued", t[0], None)
    assert await ledger.record_feedback(KEY, "delivered", t[2], None)
    assert await ledger.record_feedback(KEY, "sent", t[1], None)  # late, out of order
    assert await ledger.record_feedback(KEY, "opened", t[3], None)
    assert await ledger.record_feedback(KEY, "opened", t[4], None)  # the first open counts
    assert await ledger.record_feedback(KEY, "clicked", t[5], None)

    state = await ledger.state(KEY)
    assert state is not None
    assert (state.delivery_status, state.delivery_status_at, state.delivered_at) == (
        "delivered",
        t[2],
        t[2],
    )
    assert (state.opened_at, state.clicked_at, state.error_code) == (t[3], t[5], None)

    assert await ledger.record_feedback(KEY, "undelivered", t[5], "30007")
    state = await ledger.state(KEY)
    assert state is not None
    assert (state.delivery_status, state.error_code) == ("undelivered", "30007")
    assert not await ledger.record_feedback("unknown-key", "delivered", t[0], None)


async def test_feedback_is_deduplicated_by_event_id(ledger: Ledger) -> None:
    await _sent_message(ledger)
    assert not await ledger.feedback_seen("evt-1")
    assert await ledger.record_feedback(KEY, "failed", T0, "30008", dedupe_id="evt-1")
    assert not await ledger.record_feedback(KEY, "delivered", T0, None, dedupe_id="evt-1")
    assert await ledger.feedback_seen("evt-1")
    state = await ledger.state(KEY)
    assert state is not None and (state.delivery_status, state.error_code) == ("failed", "30008")

    assert await ledger.remember_feedback("evt-2")
    assert not await ledger.remember_feedback("evt-2")


async def test_feedback_finds_its_message_by_provider_id_and_names_it_before_the_ledger_does(
    ledger: Ledger,
) -> None:
    await _sent_message(ledger, provider_id="SM-abc")
    assert await ledger.key_for_provider_id("SM-abc") == KEY
    assert await ledger.key_for_provider_id("SM-other") is None
    assert await ledger.provider_id_for_key(KEY) == "SM-abc"

    # A crash after the provider took it, before the ledger heard: its callback names it.
    crashed = "k:crashed"
    await ledger.claim(crashed, "dead", LEASE, draft=make_record(crashed), now=T0)
    assert await ledger.provider_id_for_key(crashed) is None
    assert await ledger.record_feedback(crashed, "sent", T0, None, provider_message_id="SM-x")
    claim = await ledger.claim(crashed, "retry", LEASE, now=T0 + LEASE)
    assert (claim.state, claim.provider_message_id) == (ClaimState.EXPIRED, "SM-x")


# --- suppression list ----------------------------------------------------------------------


async def test_suppression_is_per_merchant_channel_and_address(open_same: LedgerFactory) -> None:
    ledger, other_process = open_same(), open_same()
    assert await ledger.suppress("acme", "email", " Ana@Example.com ", "bounced", T0)
    assert not await ledger.suppress("acme", "email", "ana@example.com", "bounced", T0)

    assert await other_process.suppressed("acme", "email", "ANA@example.com") == "bounced"
    assert await other_process.suppressed("acme", "sms", "ana@example.com") is None
    assert await other_process.suppressed("globex", "email", "ana@example.com") is None

    await ledger.suppress("acme", "sms", "+1 502 555 0123", "sms_stop")
    assert await ledger.suppressed("acme", "sms", "+15025550123") == "sms_stop"
    assert await ledger.unsuppress("acme", "sms", "+15025550123")
    assert not await ledger.unsuppress("acme", "sms", "+15025550123")
    assert await ledger.suppressed("acme", "sms", "+15025550123") is None


async def test_an_address_suppressed_for_several_reasons_shows_the_strongest(
    ledger: Ledger,
) -> None:
    await ledger.suppress("acme", "email", "ana@example.com", "unsubscribed", T0)
    assert await ledger.suppressed("acme", "email", "ana@example.com") == "unsubscribed"
    await ledger.suppress("acme", "email", "ana@example.com", "bounced", T0)
    assert await ledger.suppressed("acme", "email", "ana@example.com") == "bounced"
    # A resubscribe lifts the unsubscription only: the bounce stays.
    assert await ledger.unsuppress("acme", "email", "ana@example.com", "unsubscribed")
    assert await ledger.suppressed("acme", "email", "ana@example.com") == "bounced"


async def test_a_lift_needs_an_event_newer_than_every_one_that_suppressed(ledger: Ledger) -> None:
    """Provider events arrive in any order: a late or replayed resubscribe older than the
    unsubscribe, or as old as it, lifts nothing; a newer unsubscribe moves the bar."""
    hour = timedelta(hours=1)
    assert await ledger.suppress("acme", "email", "ana@example.com", "unsubscribed", T0)
    for older in (datetime(2001, 1, 1, tzinfo=UTC), T0 - hour, T0):
        assert not await ledger.unsuppress(
            "acme", "email", "ana@example.com", "unsubscribed", older
        )
    assert await ledger.suppressed("acme", "email", "ana@example.com") == "unsubscribed"
    # already there: not added again, but a resubscribe must now be newer than T0 + 2h
    assert not await ledger.suppress(
        "acme", "email", "Ana@example.com", "unsubscribed", T0 + 2 * hour
    )
    # an older unsubscribe arriving late does not move the bar back
    assert not await ledger.suppress("acme", "email", "ana@example.com", "unsubscribed", T0)
    assert not await ledger.unsuppress(
        "acme", "email", "ana@example.com", "unsubscribed", T0 + hour
    )
    assert await ledger.suppressed("acme", "email", "ana@example.com") == "unsubscribed"
    [row] = await ledger.suppressions("acme")
    assert row.at == T0  # listed since the first suppression
    assert await ledger.unsuppress(
        "acme", "email", "ana@example.com", "unsubscribed", T0 + 3 * hour
    )
    assert await ledger.suppressed("acme", "email", "ana@example.com") is None


async def test_a_suppression_from_before_event_times_counts_from_when_it_was_recorded(
    open_same: LedgerFactory,
) -> None:
    """Rows written before the event time was kept have only `at`, when they were recorded,
    which is no earlier than their event: a lift must be newer than that."""
    first = open_same()
    assert isinstance(first, SqliteLedger | PostgresLedger)
    old_table = (
        f"CREATE TABLE {first.table}_suppressions (merchant TEXT NOT NULL, channel TEXT NOT NULL, "
        "address TEXT NOT NULL, reason TEXT NOT NULL, at {time} NOT NULL, "
        "PRIMARY KEY (merchant, channel, address, reason))"
    )
    row = (
        f"INSERT INTO {first.table}_suppressions VALUES "
        "('acme', 'email', 'ana@example.com', 'unsubscribed', '{at}')"
    )
    if isinstance(first, SqliteLedger):
        first.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(first.path)
        conn.execute(old_table.format(time="TEXT"))
        conn.execute(row.format(at=T0.isoformat(timespec="microseconds")))
        conn.commit()
        conn.close()
    else:
        pg = await asyncpg.connect(POSTGRES_DSN)
        try:
            await pg.execute(old_table.format(time="TIMESTAMPTZ"))
            await pg.execute(row.format(at=T0.isoformat()))
        finally:
            await pg.close()
    assert await first.suppressed("acme", "email", "ana@example.com") == "unsubscribed"
    minute = timedelta(minutes=1)
    assert not await first.unsuppress(
        "acme", "email", "ana@example.com", "unsubscribed", T0 - minute
    )
    assert await first.suppressed("acme", "email", "ana@example.com") == "unsubscribed"
    assert await first.unsuppress("acme", "email", "ana@example.com", "unsubscribed", T0 + minute)
    assert await first.suppressed("acme", "email", "ana@example.com") is None


async def test_read_only_ledger_reads_states_and_suppressions_of_nothing(
    open_same: LedgerFactory, tmp_path: Path
) -> None:
    reader = open_same(read_only=True)
    assert await reader.states() == []
    assert await reader.state(KEY) is None
    assert await reader.suppressed("acme", "email", "ana@example.com") is None
    assert not await reader.feedback_seen("evt")
    with pytest.raises(ReadOnlyLedgerError):
        await reader.claim(KEY, "me", LEASE)
    assert not (tmp_path / "data").exists()


# --- ledgers written before claims ---------------------------------------------------------

_OLD_TABLE = """
CREATE TABLE {table} (
    seq {seq},
    idempotency_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('sending', 'sent')),
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
    sent_at {time}
);
CREATE INDEX {table}_sent_at ON {table} (sent_at, seq);
CREATE INDEX {table}_tracking ON {table} (tracking_number, sent_at, seq);
CREATE TABLE {table}_policies (digest TEXT PRIMARY KEY, body TEXT NOT NULL);
"""
_OLD_ROW = (
    "INSERT INTO {table} (idempotency_key, status, kind, tracking_number, order_id, "
    '"trigger", channel, recipient, subject, body, transport, sent_at) VALUES '
    "('old-key', 'sent', 'message', '1Z999', '5432109876543210987', 'delivered', 'email', "
    "'ana@example.com', 'Delivered', 'Your order arrived.', 'outbox', {sent_at})"
)


async def test_a_ledger_from_before_claims_keeps_its_rows_and_takes_every_status(
    open_same: LedgerFactory, tmp_path: Path
) -> None:
    first = open_same()
    if isinstance(first, SqliteLedger):
        first.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(first.path)
        conn.executescript(
            _OLD_TABLE.format(
                table=first.table, seq="INTEGER PRIMARY KEY AUTOINCREMENT", time="TEXT"
            )
        )
        conn.execute(
            _OLD_ROW.format(table=first.table, sent_at=f"'{T0.isoformat(timespec='microseconds')}'")
        )
        conn.commit()
        conn.close()
    else:
        assert isinstance(first, PostgresLedger)
        pg = await asyncpg.connect(POSTGRES_DSN)
        try:
            await pg.execute(
                _OLD_TABLE.format(
                    table=first.table,
                    seq="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                    time="TIMESTAMPTZ",
                )
            )
            await pg.execute(_OLD_ROW.format(table=first.table, sent_at=f"'{T0.isoformat()}'"))
        finally:
            await pg.close()

    old = make_record("old-key")
    # Writers opening it together migrate it once.
    ledgers = [open_same() for _ in range(3)]
    got = await asyncio.gather(*(ledger.get("old-key") for ledger in ledgers))
    assert got == [old, old, old]
    ledger = ledgers[0]
    assert await ledger.list() == [old]
    await ledger.claim("new-key", "me", LEASE, draft=make_record("new-key"))
    assert await ledger.record_failed("new-key", "400", "bad address", owner="me")
    assert await ledger.record_feedback("old-key", "delivered", T0, None)
    state = await ledger.state("old-key")
    assert state is not None and state.delivered_at == T0
    assert [s.status for s in await ledger.states()] == ["sent", "failed"]
    await ledger.record_once(make_record("after-migration", sent_at=T0 + timedelta(1)))
    assert [r.idempotency_key for r in await open_same().list()] == ["old-key", "after-migration"]


# --- the read model ------------------------------------------------------------------------


def _projection(number: str, version: int, status: str, **extra: object) -> ShipmentProjection:
    shipment = make_shipment(tracking_number=number)
    state = ShipmentState(phase=Phase(status), started_at=datetime(2026, 11, 2, tzinfo=UTC))
    row = project(state, shipment, ANY_TIME_POLICY, datetime(2026, 11, 3, tzinfo=UTC), version)
    return row.model_copy(update=extra)


async def test_the_registrations_first_row_is_written_only_where_no_row_is(ledger: Ledger) -> None:
    """The API's foreseen row (version 1) never replaces the workflow's, and the workflow's
    first write replaces it."""
    number, late = (random_tracking_number("ups") for _ in range(2))
    assert await ledger.save_projection(_projection(number, 1, "pending"), only_if_absent=True)
    assert await ledger.save_projection(_projection(number, 1, "label_created"))
    assert await ledger.save_projection(_projection(late, 1, "in_transit"))
    assert not await ledger.save_projection(_projection(late, 1, "pending"), only_if_absent=True)
    rows = [await ledger.projection(n) for n in (number, late)]
    assert [r.document.status if r else None for r in rows] == ["label_created", "in_transit"]


async def test_a_projection_row_is_replaced_only_by_its_own_or_a_newer_version(
    ledger: Ledger,
) -> None:
    number = random_tracking_number("ups")
    assert await ledger.save_projection(_projection(number, 2, "in_transit"), "tok-" + number)
    assert not await ledger.save_projection(_projection(number, 1, "label_created"))
    stored = await ledger.projection(number)
    assert stored is not None and (stored.version, stored.document.status) == (2, "in_transit")
    assert await ledger.save_projection(_projection(number, 2, "delivered"), "tok-" + number)
    by_page = await ledger.projection_by_page("tok-" + number)
    assert by_page is not None and by_page.document.status == "delivered"
    assert await ledger.projection_by_page("tok-nobody") is None
    since = datetime(2026, 11, 1, tzinfo=UTC)
    registered = [p.tracking_number for p in await ledger.projections(since)]
    assert number in registered
    assert await ledger.projections(since, datetime(2026, 11, 2, tzinfo=UTC)) == []


async def test_a_claimed_message_keeps_when_it_was_decided_and_released(ledger: Ledger) -> None:
    draft = make_record(decided_at=T0 - timedelta(hours=9), held_until=T0 - timedelta(minutes=1))
    claim = await ledger.claim(draft.idempotency_key, "me", timedelta(seconds=30), draft=draft)
    assert claim.ours
    state = await ledger.state(draft.idempotency_key)
    assert state is not None
    assert (state.decided_at, state.held_until) == (draft.decided_at, draft.held_until)


async def test_baseline_weeks_page_visits_and_the_retention_purge(ledger: Ledger) -> None:
    monday = date(2026, 9, 7)
    await ledger.save_baseline([BaselineWeek(week_start=monday, shipments=100, wismo_tickets=9)])
    await ledger.save_baseline([BaselineWeek(week_start=monday, shipments=120, wismo_tickets=8)])
    assert await ledger.baseline() == [
        BaselineWeek(week_start=monday, shipments=120, wismo_tickets=8)
    ]

    token = "tok-" + uuid.uuid4().hex
    old, new = datetime(2025, 1, 5, tzinfo=UTC), datetime(2026, 11, 5, tzinfo=UTC)
    await ledger.record_page_visit(token, None, old)
    await ledger.record_page_visit(token, "1Z9/1001:in_transit:1:email", new)
    number = random_tracking_number("ups")
    stale = _projection(number, 1, "delivered", updated_at=old)
    assert await ledger.save_projection(stale)

    purged = await ledger.purge_before(datetime(2026, 1, 1, tzinfo=UTC))
    assert purged.shipments >= 1 and purged.page_visits >= 1
    assert await ledger.projection(number) is None
    visits = [v for v in await ledger.page_visits() if v.page_token == token]
    assert [(v.message_key, v.at) for v in visits] == [("1Z9/1001:in_transit:1:email", new)]


# --- tracking-page visits: one per (token, ref) per hour, a cap per token (issue 18, item 11) --


async def _visits(ledger: Ledger, token: str) -> list[tuple[str | None, datetime]]:
    return [(v.message_key, v.at) for v in await ledger.page_visits() if v.page_token == token]


async def test_a_page_visit_counts_once_per_token_ref_and_hour(ledger: Ledger) -> None:
    token, other = "tok-" + uuid.uuid4().hex, "tok-" + uuid.uuid4().hex
    click = "1Z9/1001:in_transit:1:email"
    for minute in (0, 1, 59):  # a reload, a shopper's second look, a scanner
        await ledger.record_page_visit(token, None, T0 + timedelta(minutes=minute))
        await ledger.record_page_visit(token, click, T0 + timedelta(minutes=minute))
    await ledger.record_page_visit(token, None, T0 + timedelta(hours=1))
    await ledger.record_page_visit(other, None, T0)

    assert await _visits(ledger, token) == [
        (None, T0),
        (click, T0),
        (None, T0 + timedelta(hours=1)),
    ]
    assert await _visits(ledger, other) == [(None, T0)]


async def test_a_page_keeps_at_most_its_cap_of_visits_but_each_messages_first_click(
    ledger: Ledger,
) -> None:
    token, other = "tok-" + uuid.uuid4().hex, "tok-" + uuid.uuid4().hex
    for hour in range(MAX_VISITS_PER_PAGE + 20):
        await ledger.record_page_visit(token, None, T0 + timedelta(hours=hour))
    later = T0 + timedelta(days=30)
    first, again = "1Z9/1001:delivered:1:email", later + timedelta(hours=1)
    await ledger.record_page_visit(token, first, later)  # a click the report counts
    await ledger.record_page_visit(token, first, again)  # over the cap, already counted
    await ledger.record_page_visit(other, None, later)  # another page has its own cap

    visits = await _visits(ledger, token)
    assert len(visits) == MAX_VISITS_PER_PAGE + 1
    assert visits[-1] == (first, later)
    assert await _visits(ledger, other) == [(None, later)]


async def test_visits_of_a_ledger_an_earlier_version_wrote_count_once_per_hour_too(
    open_same: LedgerFactory,
) -> None:
    """The visits table before issue 18 had no hour column: opening it as a writer adds it."""
    first = open_same()
    assert isinstance(first, SqliteLedger | PostgresLedger)
    old_table = (
        f"CREATE TABLE {first.table}_page_visits "
        "(page_token TEXT NOT NULL, message_key TEXT, at {time} NOT NULL)"
    )
    if isinstance(first, SqliteLedger):
        first.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(first.path)
        try:
            conn.execute(old_table.format(time="TEXT"))
            conn.execute(
                f"INSERT INTO {first.table}_page_visits VALUES ('tok', NULL, ?)",
                (T0.isoformat(timespec="microseconds"),),
            )
            conn.commit()
        finally:
            conn.close()
    else:
        pg = await asyncpg.connect(POSTGRES_DSN)
        try:
            await pg.execute(old_table.format(time="TIMESTAMPTZ"))
            await pg.execute(f"INSERT INTO {first.table}_page_visits VALUES ('tok', NULL, $1)", T0)
        finally:
            await pg.close()

    for minute in (5, 6):
        await first.record_page_visit("tok", None, T0 + timedelta(minutes=minute))

    assert await _visits(first, "tok") == [(None, T0), (None, T0 + timedelta(minutes=5))]


# --- read-only reads of a ledger an earlier version wrote -----------------------------------


async def _write_old_table(ledger: Ledger) -> None:
    """The ledger's table as the version before claims created it, with one sent row."""
    if isinstance(ledger, SqliteLedger):
        ledger.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(ledger.path)
        try:
            conn.executescript(
                _OLD_TABLE.format(
                    table=ledger.table, seq="INTEGER PRIMARY KEY AUTOINCREMENT", time="TEXT"
                )
            )
            sent_at = f"'{T0.isoformat(timespec='microseconds')}'"
            conn.execute(_OLD_ROW.format(table=ledger.table, sent_at=sent_at))
            conn.commit()
        finally:
            conn.close()
        return
    assert isinstance(ledger, PostgresLedger)
    pg = await asyncpg.connect(POSTGRES_DSN)
    try:
        await pg.execute(
            _OLD_TABLE.format(
                table=ledger.table,
                seq="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                time="TIMESTAMPTZ",
            )
        )
        await pg.execute(_OLD_ROW.format(table=ledger.table, sent_at=f"'{T0.isoformat()}'"))
    finally:
        await pg.close()


async def test_a_read_only_ledger_reads_a_table_an_earlier_version_wrote(
    open_same: LedgerFactory,
) -> None:
    """The CLI (read-only) migrates nothing: the columns added since read as empty, and once a
    writer has added them the same reader sees what they hold."""
    reader = open_same(read_only=True)
    await _write_old_table(reader)
    states = await reader.states()
    assert [(s.idempotency_key, s.status, s.sent_at, s.claimed_at) for s in states] == [
        ("old-key", "sent", T0, None)
    ]
    assert await reader.states("1Z999") == states
    assert await reader.state("old-key") == states[0]
    assert await reader.list() == [make_record("old-key")]

    writer = open_same()
    draft = make_record("new-key", sent_at=T0 + timedelta(1), decided_at=T0)
    await writer.claim("new-key", "me", LEASE, draft=draft, now=T0)
    after = await reader.states()
    assert [(s.idempotency_key, s.claimed_at, s.decided_at) for s in after] == [
        ("old-key", None, None),
        ("new-key", T0, T0),
    ]


# --- the scrape-time figures, aggregated in SQL ---------------------------------------------


async def _settled(ledger: Ledger, key: str, status: str, **changes: object) -> None:
    """A customer message claimed, then sent (at its sent_at), refused or suppressed."""
    record = make_record(key, **changes)
    assert (await ledger.claim(key, "me", LEASE, draft=record)).ours
    if status == "sent":
        assert await ledger.record_sent(key, "me", record)
    elif status == "failed":
        assert await ledger.record_failed(key, "21610", "unsubscribed", owner="me")
    else:
        assert await ledger.mark_suppressed(key, "unsubscribed", owner="me")


async def test_message_figures_count_group_and_time_the_rows(ledger: Ledger) -> None:
    decided = T0 - timedelta(hours=9)
    await _settled(ledger, "a", "sent", decided_at=T0 - timedelta(seconds=3))
    await _settled(ledger, "b", "sent", decided_at=decided)  # held overnight by quiet hours
    await _settled(ledger, "c", "sent", decided_at=T0 + timedelta(seconds=5))  # clock skew: 0
    await _settled(ledger, "d", "sent")  # decided_at unknown: no latency
    await _settled(ledger, "e", "sent", channel="sms", transport="twilio", decided_at=T0)
    await _settled(ledger, "f", "failed", channel="sms", transport="twilio")
    await _settled(ledger, "g", "suppressed", channel="sms", transport="twilio")
    for key, trigger in (("x", "lost"), ("y", "lost"), ("z", "pickup_gap")):
        alert = make_record(key, kind="alert", trigger=trigger, channel="alert", transport="ops")
        await ledger.record_once(alert)
    number = random_tracking_number("ups")
    await ledger.save_projection(_projection(number, 1, "exception", open_problem=True))
    await ledger.save_projection(_projection(number + "X", 1, "in_transit", open_problem=False))

    found = await ledger.message_figures((1.0, 5.0, 3600.0, 43200.0))

    assert {
        (c.kind, c.trigger, c.channel, c.status, c.transport, c.error_code): c.count
        for c in found.counts
    } == {
        ("message", "delivered", "email", "sent", "outbox", None): 4,
        ("message", "delivered", "sms", "sent", "twilio", None): 1,
        ("message", "delivered", "sms", "failed", "twilio", "21610"): 1,
        ("message", "delivered", "sms", "suppressed", "twilio", None): 1,
        ("alert", "lost", "alert", "sent", "ops", None): 2,
        ("alert", "pickup_gap", "alert", "sent", "ops", None): 1,
    }
    latency = {h.channel: h for h in found.latency}
    assert latency.keys() == {"email", "sms"}
    email = latency["email"]
    assert (email.cumulative, email.count, email.sum) == ((1, 2, 2, 3), 3, 3 + 9 * 3600)
    assert (latency["sms"].cumulative, latency["sms"].count) == ((1, 1, 1, 1), 1)
    assert latency["sms"].sum == 0
    assert found.open_problems == 1
    assert found.alerts == {"lost": 2, "pickup_gap": 1}
    with pytest.raises(ValueError):
        await ledger.message_figures((5.0, 1.0))


async def test_message_figures_of_a_read_only_ledger_an_earlier_version_wrote(
    open_same: LedgerFactory,
) -> None:
    reader = open_same(read_only=True)
    assert (await reader.message_figures((1.0,))).counts == ()
    await _write_old_table(reader)
    found = await reader.message_figures((1.0,))
    assert [(c.status, c.error_code, c.count) for c in found.counts] == [("sent", None, 1)]
    assert (found.latency, found.open_problems, found.alerts) == ((), 0, {})
