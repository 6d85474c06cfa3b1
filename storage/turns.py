"""Turns across processes on one PostgreSQL database: a turn holds a session advisory lock
(keyed by name) for its interval, so turns start at least that far apart whichever worker
takes them. A process that dies mid-turn loses its session, and the lock with it."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import asyncpg

from storage.errors import LedgerUnavailable


class PostgresTurns:
    def __init__(self, dsn: str, name: str, interval_s: float) -> None:
        self._dsn = dsn
        self._key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        self._interval = interval_s
        self._connection: Any = None
        self._lock = asyncio.Lock()  # one turn at a time per process, on one connection

    async def take(self) -> None:
        """Wait for the turn and hold it for the interval (raises `LedgerUnavailable` when
        the database cannot be reached)."""
        async with self._lock:
            try:
                if self._connection is None or self._connection.is_closed():
                    self._connection = await asyncpg.connect(self._dsn)
                connection = self._connection
                await connection.execute("SELECT pg_advisory_lock($1)", self._key)
                try:
                    await asyncio.sleep(self._interval)
                finally:
                    await connection.execute("SELECT pg_advisory_unlock($1)", self._key)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                self._connection = None
                raise LedgerUnavailable(f"{error!r}") from error
