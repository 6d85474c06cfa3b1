"""Bring a ledger's schema to the newest Alembic revision (storage/migrations), in place.

A writer calls `upgrade` when it opens the ledger. Writers opening one ledger together take
turns: on SQLite inside one `BEGIN IMMEDIATE` transaction, on PostgreSQL under a transaction
advisory lock keyed by the table prefix, both around the whole upgrade. Each ledger (table
prefix) keeps its revision in its own `<prefix>_alembic_version` table. A ledger written
before the migrations existed has no such table: the first revision adopts it (it creates
what is missing and adds the columns added since), so every existing ledger upgrades in place.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"


def version_table(prefix: str) -> str:
    return f"{prefix}_alembic_version"


@cache
def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config)


def head() -> str:
    found = _scripts().get_current_head()
    if found is None:
        raise RuntimeError("storage/migrations has no revision")
    return found


def current(connection: Connection, prefix: str) -> str | None:
    """The ledger's revision: None for a new ledger or one from before the migrations."""
    context = MigrationContext.configure(connection, opts={"version_table": version_table(prefix)})
    return context.get_current_revision()


def _upgrade_locked(connection: Connection, prefix: str) -> None:
    if current(connection, prefix) == head():
        return
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes.update(connection=connection, prefix=prefix)
    command.upgrade(config, "head")


def upgrade_sqlite(connection: Connection, prefix: str) -> None:
    """Upgrade the SQLite ledger under `prefix` to the newest revision (nothing when it is
    there). The connection is in autocommit: this transaction is ours to open and close."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        _upgrade_locked(connection, prefix)
    except BaseException:
        connection.exec_driver_sql("ROLLBACK")
        raise
    connection.exec_driver_sql("COMMIT")


def _upgrade_postgres_locked(connection: Connection, prefix: str) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:prefix))"), {"prefix": prefix})
    _upgrade_locked(connection, prefix)


async def upgrade_postgres(engine: AsyncEngine, prefix: str) -> None:
    """Upgrade the PostgreSQL ledger under `prefix` to the newest revision (nothing when it
    is there), in one transaction."""
    async with engine.connect() as connection:
        transactional = await connection.execution_options(isolation_level="READ COMMITTED")
        async with transactional.begin():
            await transactional.run_sync(_upgrade_postgres_locked, prefix)
