"""What the storage layer raises besides an error in its SQL."""

from __future__ import annotations


class ReadOnlyLedgerError(RuntimeError):
    """A write on a ledger opened read-only."""


class LedgerUnavailable(RuntimeError):
    """The ledger's database cannot be reached or used right now: a refused, timed-out or
    dropped connection, a server shutting down, starting or out of resources, a SQLite file
    that cannot be opened, locked past the busy timeout, read-only or on a full disk. A retry
    later can succeed, unlike an error in the SQL (which is raised as it is)."""
