"""One ledger's database, SQLite or PostgreSQL, through a pooled SQLAlchemy engine, with the
rules every repository shares.

* A writer brings the schema to the newest migration on first use (storage.migrate); a
  reader (the CLI, `read_only`) creates nothing, not even a missing file or table (it then
  reads as empty), and never waits for a writer's transaction.
* Statements run in autocommit, one transaction each, as a repository writes them
  (`INSERT ... ON CONFLICT ... RETURNING` and `UPDATE ... WHERE <version>` keep them atomic).
* A database that cannot be reached or used right now raises `LedgerUnavailable` (the API
  answers 503); an error in the SQL is raised as it is.

SQLite: the standard library's driver on one connection, each statement one trip to a worker
thread (aiosqlite's adapter costs four), WAL so a worker and the CLI can share the file, a
30 s busy timeout, the file and its directory private. PostgreSQL: asyncpg, a pool of
`max_connections`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import asyncpg
from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    Table,
    create_engine,
    inspect,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, NoSuchTableError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql import Executable

from storage.errors import LedgerUnavailable, ReadOnlyLedgerError
from storage.migrate import upgrade_postgres, upgrade_sqlite
from storage.tables import valid_prefix

Insert = sqlite.Insert | postgresql.Insert
T = TypeVar("T")

_SQLITE_BUSY_TIMEOUT_MS = 30_000
# A WAL reader never waits for a writer; this covers the rare moments it must (recovery).
_SQLITE_READ_BUSY_TIMEOUT_MS = 5_000

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

# Connection refused, timed out or lost (OSError, class 08), the server shutting down or
# starting up or a statement cancelled (class 57), out of connections, memory or disk (53).
_POSTGRES_UNAVAILABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.InterfaceError,
)


def _causes(error: BaseException) -> list[BaseException]:
    """The error and what it was raised from, outermost first."""
    chain: list[BaseException] = []
    seen: BaseException | None = error
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return chain


def _execute(
    connection: Connection, statement: Executable, params: Mapping[str, Any] | None
) -> list[RowMapping]:
    result = connection.execute(statement, params)
    return list(result.mappings().all()) if result.returns_rows else []


def _column_names(connection: Connection, table: str) -> frozenset[str]:
    try:
        found = inspect(connection).get_columns(table)
    except NoSuchTableError:
        return frozenset()
    return frozenset(str(column["name"]) for column in found)


class Database(ABC):
    """What the repositories of one ledger share: the engine, the table prefix, read-only."""

    dialect: Literal["sqlite", "postgresql"]

    def __init__(self, prefix: str, read_only: bool) -> None:
        self.prefix = valid_prefix(prefix)
        self.read_only = read_only
        self._migrated = read_only  # a reader migrates nothing
        self._lock = asyncio.Lock()

    @abstractmethod
    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """Run `work(connection, *args)` on a pooled connection (autocommit)."""

    @abstractmethod
    async def _upgrade(self) -> None:
        """Bring the schema to the newest migration (storage.migrate)."""

    @abstractmethod
    def _unavailable(self, error: BaseException) -> bool:
        """Whether the error says the database cannot be used now (not a wrong statement)."""

    @abstractmethod
    def _missing_table(self, error: BaseException) -> bool: ...

    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    async def close(self) -> None: ...

    def _absent(self) -> bool:
        """Whether a reader finds no database at all (it then reads nothing, creates nothing)."""
        return False

    def writing(self) -> None:
        if self.read_only:
            raise ReadOnlyLedgerError(f"ledger table {self.prefix} was opened read-only")

    def insert(self, table: Table) -> Insert:
        """The dialect's INSERT, which has ON CONFLICT."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    async def _ready(self) -> None:
        if self._migrated:
            return
        async with self._lock:
            if not self._migrated:
                await self._upgrade()
                self._migrated = True

    async def rows(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> list[RowMapping]:
        """Run one statement (with `params` for its bind parameters: a statement built once
        and run with them costs a quarter of one built for each call) in its own
        transaction; the rows it returns (none for a reader whose table does not exist)."""
        if self.read_only and self._absent():
            return []
        try:
            await self._ready()
            return await self.run(_execute, statement, params)
        except (OSError, DBAPIError, asyncpg.PostgresError, sqlite3.Error) as error:
            if self.read_only and self._missing_table(error):
                return []
            if self._unavailable(error):
                raise LedgerUnavailable(f"{self.describe()}: {error!r}") from error
            raise

    async def ping(self) -> None:
        await self.rows(select(literal(1)))

    async def columns(self, table: str) -> frozenset[str]:
        """The table's columns (none when there is no table)."""
        if self.read_only and self._absent():
            return frozenset()
        try:
            return await self.run(_column_names, table)
        except (OSError, DBAPIError, asyncpg.PostgresError, sqlite3.Error) as error:
            if self._unavailable(error):
                raise LedgerUnavailable(f"{self.describe()}: {error!r}") from error
            raise


class SqliteDatabase(Database):
    """SQLite through the standard library's driver, one call to a worker thread per
    statement (the file takes one writer at a time anyway: one pooled connection)."""

    dialect: Literal["sqlite", "postgresql"] = "sqlite"

    def __init__(self, path: Path, prefix: str, read_only: bool) -> None:
        super().__init__(prefix, read_only)
        self.path = path
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()

    def describe(self) -> str:
        return f"SQLite ledger {self.path}"

    def _absent(self) -> bool:
        return not self.path.exists()

    @property
    def engine(self) -> Engine:
        with self._engine_lock:
            if self._engine is None:
                # No reset on return (autocommit: nothing to roll back).
                self._engine = create_engine(
                    "sqlite://",
                    creator=self._connect,
                    isolation_level="AUTOCOMMIT",
                    poolclass=QueuePool,  # the URL names no file: say it is one
                    pool_size=1,
                    max_overflow=0,
                    pool_timeout=_SQLITE_BUSY_TIMEOUT_MS / 1000,
                    pool_reset_on_return=None,
                )
            return self._engine

    def _on_connection(self, work: Callable[..., T], *args: Any) -> T:
        with self.engine.connect() as connection:
            return work(connection, *args)

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(self._on_connection, work, *args)

    async def _upgrade(self) -> None:
        await self.run(upgrade_sqlite, self.prefix)

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            uri = f"{self.path.absolute().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {_SQLITE_READ_BUSY_TIMEOUT_MS}")
            return conn
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # SQLite would create it 0644; its -wal and -shm files copy the database's mode.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
            _enable_wal(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _sqlite_error(self, error: BaseException) -> sqlite3.Error | None:
        return next((e for e in _causes(error) if isinstance(e, sqlite3.Error)), None)

    def _unavailable(self, error: BaseException) -> bool:
        if any(isinstance(e, OSError) for e in _causes(error)):
            return True
        found = self._sqlite_error(error)
        code = getattr(found, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _SQLITE_UNAVAILABLE

    def _missing_table(self, error: BaseException) -> bool:
        found = self._sqlite_error(error)
        return isinstance(found, sqlite3.OperationalError) and str(found).startswith(
            "no such table"
        )

    async def close(self) -> None:
        def dispose() -> None:
            with self._engine_lock:
                if self._engine is not None:
                    self._engine.dispose()
                    self._engine = None

        await asyncio.to_thread(dispose)


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


class PostgresDatabase(Database):
    """PostgreSQL through asyncpg, a pool of `max_connections`."""

    dialect: Literal["sqlite", "postgresql"] = "postgresql"

    def __init__(self, dsn: str, prefix: str, read_only: bool, max_connections: int) -> None:
        super().__init__(prefix, read_only)
        self.dsn = dsn
        self._max_connections = max_connections
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = self._create_engine()
        return self._engine

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        async with self.engine.connect() as connection:
            return await connection.run_sync(work, *args)

    async def _upgrade(self) -> None:
        await upgrade_postgres(self.engine, self.prefix)

    async def close(self) -> None:
        async with self._lock:
            if self._engine is not None:
                await self._engine.dispose()
                self._engine = None

    def describe(self) -> str:
        return "PostgreSQL ledger"

    def _create_engine(self) -> AsyncEngine:
        return create_async_engine(
            "postgresql+asyncpg://",
            async_creator=self._connect,
            isolation_level="AUTOCOMMIT",
            pool_size=self._max_connections,
            max_overflow=0,
            pool_reset_on_return=None,
        )

    async def _connect(self) -> asyncpg.Connection:
        # asyncpg reads the DSN itself (its query's unknown parameters, such as
        # search_path, become server settings).
        read_only = {"default_transaction_read_only": "on"} if self.read_only else None
        connection: asyncpg.Connection = await asyncpg.connect(self.dsn, server_settings=read_only)
        return connection

    def _unavailable(self, error: BaseException) -> bool:
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return True
        return any(isinstance(e, _POSTGRES_UNAVAILABLE) for e in _causes(error))

    def _missing_table(self, error: BaseException) -> bool:
        return any(isinstance(e, asyncpg.UndefinedTableError) for e in _causes(error))
