"""Alembic's environment for the ledger. storage.migrate runs it with the connection (already
in the transaction that holds the ledger's lock) and the ledger's table prefix."""

from alembic import context

if context.is_offline_mode():
    raise SystemExit("the ledger's migrations run online, when a writer opens the ledger")

prefix = context.config.attributes["prefix"]
context.configure(
    connection=context.config.attributes["connection"],
    version_table=f"{prefix}_alembic_version",
    ledger_prefix=prefix,
)
with context.begin_transaction():
    context.run_migrations()
