"""The notification ledger: the durable record that makes every message go out exactly once.

One row per idempotency key, holding a complete `LedgerRecord`. `record_once` inserts a
new key atomically, so concurrent senders of the same key agree on a single stored record.
(The table keeps its `status`, `owner`, `lease_until` and `attempts` columns, so ledgers
written by earlier versions and by this one stay interchangeable; every row is 'sent'.)

Two backends share the SQL: SQLite (embedded default, stdlib sqlite3 run in a thread,
WAL so a worker and the CLI can share the file) and PostgreSQL via asyncpg for several
workers. Opened `read_only` (the CLI), a ledger creates nothing, not even a missing
file or table (it then reads as empty), and never waits for a writer's transaction.
"""

from __future__ import annotations

import asyncio
import builtins
import itertools
import os
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import asyncpg
from pydantic import BaseModel, ConfigDict, field_validator

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


class ReadOnlyLedgerError(RuntimeError):
    """A write on a ledger opened read-only."""


class LedgerRecord(BaseModel):
    """One message (or alert, or helpdesk ticket) that went out."""

    model_config = ConfigDict(frozen=True)

    idempotency_key: str
    kind: Literal["message", "alert", "helpdesk"] = "message"
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

    @field_validator("sent_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("sent_at needs a time zone")
        return value.astimezone(UTC)


class Ledger(Protocol):
    async def record_once(self, record: LedgerRecord) -> tuple[LedgerRecord, bool]:
        """Store the record unless its key is already sent; return the stored record and
        whether this call stored it."""
        ...

    async def get(self, idempotency_key: str) -> LedgerRecord | None: ...

    async def list(self, tracking_number: str | None = None) -> builtins.list[LedgerRecord]:
        """Sent records, oldest first (sent_at, then insertion order)."""
        ...

    async def save_policy(self, digest: str, body: str) -> None:
        """Keep a tracking policy by digest, for workers started later (a changed file)."""

    async def stored_policies(self) -> dict[str, str]: ...

    async def close(self) -> None: ...


class _SqlLedger(ABC):
    """The ledger logic in SQL common to SQLite and PostgreSQL (written with `?` markers)."""

    def __init__(self, table: str, read_only: bool) -> None:
        if not _TABLE_NAME.match(table):
            raise ValueError(f"invalid ledger table name: {table!r}")
        self.table = table
        self.read_only = read_only

    def _writing(self) -> None:
        if self.read_only:
            raise ReadOnlyLedgerError(f"ledger table {self.table} was opened read-only")

    @abstractmethod
    async def _fetch(self, sql: str, *args: object) -> builtins.list[dict[str, Any]]: ...

    @abstractmethod
    def _to_db_time(self, value: datetime) -> object: ...

    @abstractmethod
    def _from_db_time(self, value: Any) -> datetime: ...

    async def record_once(self, record: LedgerRecord) -> tuple[LedgerRecord, bool]:
        self._writing()
        t = self.table
        columns = ", ".join(_RECORD_COLUMNS)
        markers = ", ".join("?" for _ in _RECORD_COLUMNS)
        created = await self._fetch(
            f"INSERT INTO {t} (idempotency_key, status, {columns}) VALUES (?, 'sent', {markers}) "
            "ON CONFLICT (idempotency_key) DO NOTHING RETURNING seq",
            record.idempotency_key,
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
        if created:
            return record, True
        stored = await self.get(record.idempotency_key)
        if stored is None:
            raise RuntimeError(f"ledger row for {record.idempotency_key!r} vanished")
        return stored, False

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

    def _record(self, row: dict[str, Any]) -> LedgerRecord:
        return LedgerRecord(
            idempotency_key=row["idempotency_key"],
            kind=row["kind"],
            tracking_number=row["tracking_number"],
            order_id=row["order_id"],
            trigger=row["trigger"],
            exception=row["exception"],
            channel=row["channel"],
            to=row["recipient"],
            subject=row["subject"],
            body=row["body"],
            html=row["html"],
            transport=row["transport"],
            provider_message_id=row["provider_message_id"],
            sent_at=self._from_db_time(row["sent_at"]),
        )


def _schema(table: str, *, postgres: bool) -> str:
    if postgres:
        seq, time = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "TIMESTAMPTZ"
    else:
        seq, time = "INTEGER PRIMARY KEY AUTOINCREMENT", "TEXT"
    return f"""
CREATE TABLE IF NOT EXISTS {table} (
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
CREATE INDEX IF NOT EXISTS {table}_sent_at ON {table} (sent_at, seq);
CREATE INDEX IF NOT EXISTS {table}_tracking ON {table} (tracking_number, sent_at, seq);
CREATE TABLE IF NOT EXISTS {table}_policies (digest TEXT PRIMARY KEY, body TEXT NOT NULL);
"""


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
            conn.executescript(f"BEGIN IMMEDIATE; {_schema(self.table, postgres=False)} COMMIT;")
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self, sql: str, args: tuple[object, ...]) -> builtins.list[dict[str, Any]]:
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
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.table)
            await conn.execute(_schema(self.table, postgres=True))

    async def _fetch(self, sql: str, *args: object) -> builtins.list[dict[str, Any]]:
        pool = await self._get_pool()
        numbers = itertools.count(1)
        numbered = re.sub(r"\?", lambda _: f"${next(numbers)}", sql)
        try:
            return [dict(row) for row in await pool.fetch(numbered, *args)]
        except asyncpg.UndefinedTableError:
            if self.read_only:
                return []
            raise

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
