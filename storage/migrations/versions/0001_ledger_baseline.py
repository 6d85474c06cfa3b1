"""The ledger as it stood when the migrations began, and the adoption of any earlier one.

On a new database it creates every table. On a ledger an earlier version wrote (no version
table yet) it creates the tables that are missing, adds the columns added since the first
ledgers, widens the message status check to every status, and creates the indexes, so that
ledger upgrades in place with its rows.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = ("sending", "sent", "failed", "uncertain", "suppressed")
TIME = sa.TIMESTAMP(timezone=True).with_variant(sa.Text(), "sqlite")
BOOLEAN = sa.Boolean().with_variant(sa.Integer(), "sqlite")

# Columns added to the message table since the first ledgers, and to the others since theirs.
ADDED_MESSAGE_COLUMNS = (
    "claimed_at",
    "error_code",
    "error_detail",
    "delivery_status",
    "delivery_status_at",
    "delivered_at",
    "opened_at",
    "clicked_at",
    "decided_at",
    "held_until",
)
_ADDED_TIMES = frozenset(
    {
        "claimed_at",
        "delivery_status_at",
        "delivered_at",
        "opened_at",
        "clicked_at",
        "decided_at",
        "held_until",
    }
)


def _status_check() -> sa.CheckConstraint:
    return sa.CheckConstraint(f"status IN ({', '.join(repr(s) for s in STATUSES)})")


def _message_columns() -> list[sa.Column[Any]]:
    seq = sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        sa.Identity(always=True),
        primary_key=True,
    )
    return [
        seq,
        sa.Column("idempotency_key", sa.Text(), nullable=False, unique=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text()),
        sa.Column("lease_until", TIME),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        *(
            sa.Column(name, sa.Text(), quote=name == "trigger")
            for name in (
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
                "provider_message_id",
            )
        ),
        sa.Column("sent_at", TIME),
        *(
            sa.Column(name, TIME if name in _ADDED_TIMES else sa.Text())
            for name in ADDED_MESSAGE_COLUMNS
        ),
    ]


def _create_messages(table: str) -> None:
    op.create_table(
        table, *_message_columns(), _status_check(), if_not_exists=True, sqlite_autoincrement=True
    )


def _create_side_tables(prefix: str) -> None:
    op.create_table(
        f"{prefix}_policies",
        sa.Column("digest", sa.Text(), primary_key=True),
        sa.Column("body", sa.Text(), nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        f"{prefix}_feedback_seen",
        sa.Column("dedupe_id", sa.Text(), primary_key=True),
        sa.Column("seen_at", TIME, nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        f"{prefix}_suppressions",
        sa.Column("merchant", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("event_at", TIME),
        sa.PrimaryKeyConstraint("merchant", "channel", "address", "reason"),
        if_not_exists=True,
    )
    op.create_table(
        f"{prefix}_customer_index",
        sa.Column("email_digest", sa.Text(), nullable=False),
        sa.Column("tracking_number", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("workflow_id", sa.Text(), nullable=False),
        sa.Column("registered_at", TIME, nullable=False),
        sa.Column("tracking_url", sa.Text()),
        sa.PrimaryKeyConstraint("email_digest", "tracking_number", "order_id"),
        if_not_exists=True,
    )
    op.create_table(
        f"{prefix}_inbound_tickets",
        sa.Column("helpdesk", sa.Text(), nullable=False),
        sa.Column("ticket_id", sa.Text(), nullable=False),
        sa.Column("received_at", TIME, nullable=False),
        sa.Column("created_at", TIME),
        sa.Column("tracking_number", sa.Text()),
        sa.Column("intent", sa.Text(), nullable=False),
        sa.Column("already_notified", BOOLEAN),
        sa.Column("language", sa.Text(), nullable=False),
        sa.Column("rule", sa.Text()),
        sa.PrimaryKeyConstraint("helpdesk", "ticket_id"),
        if_not_exists=True,
    )
    # The read model: one row per shipment lifecycle (trackflow.projection), written by the
    # workflow; the scalar columns are what lookups and analytics filter on.
    op.create_table(
        f"{prefix}_shipments",
        sa.Column("shipment_key", sa.Text(), primary_key=True),
        sa.Column("workflow_id", sa.Text(), nullable=False),
        sa.Column("tracking_number", sa.Text(), nullable=False),
        sa.Column("page_token", sa.Text()),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("carrier", sa.Text()),
        sa.Column("open_problem", BOOLEAN, nullable=False),
        sa.Column("registered_at", TIME),
        sa.Column("delivered_at", TIME),
        sa.Column("projection", sa.Text(), nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        f"{prefix}_page_visits",
        sa.Column("page_token", sa.Text(), nullable=False),
        sa.Column("message_key", sa.Text()),
        sa.Column("at", TIME, nullable=False),
        sa.Column("visit_hour", sa.BigInteger()),
        if_not_exists=True,
    )
    op.create_table(
        f"{prefix}_baseline",
        sa.Column("week_start", sa.Text(), primary_key=True),
        sa.Column("shipments", sa.Integer(), nullable=False),
        sa.Column("wismo_tickets", sa.Integer(), nullable=False),
        if_not_exists=True,
    )


def _add_missing_columns(prefix: str) -> None:
    """Columns an earlier version's tables lack (the tables existed before this revision)."""
    inspector = sa.inspect(op.get_bind())
    added: dict[str, list[sa.Column[Any]]] = {
        prefix: [
            sa.Column(name, TIME if name in _ADDED_TIMES else sa.Text())
            for name in ADDED_MESSAGE_COLUMNS
        ],
        f"{prefix}_page_visits": [sa.Column("visit_hour", sa.BigInteger())],
        # The time of the newest event that asked for the suppression, which a lift must be
        # newer than. Rows from before it have none and count from `at`, when they were
        # recorded, which is no earlier than their event.
        f"{prefix}_suppressions": [sa.Column("event_at", TIME)],
    }
    for table, columns in added.items():
        have = {column["name"] for column in inspector.get_columns(table)}
        for column in columns:
            if column.name not in have:
                op.add_column(table, column)


def _widen_status_check(prefix: str) -> None:
    """A message table from before the 'failed', 'uncertain' and 'suppressed' statuses takes
    them. SQLite cannot change a CHECK in place: the table is copied into a new one (same
    rows, same seq)."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        created = bind.execute(
            sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
            {"name": prefix},
        ).scalar_one()
        if all(f"'{status}'" in created for status in STATUSES):
            return
        old = f"{prefix}_before_statuses"
        op.rename_table(prefix, old)
        _create_messages(prefix)
        columns = [column["name"] for column in sa.inspect(bind).get_columns(prefix)]
        source = sa.table(old, *map(sa.column, columns))
        target = sa.table(prefix, *map(sa.column, columns))
        bind.execute(
            sa.insert(target).from_select(columns, sa.select(*source.c)),
        )
        op.drop_table(old)
        return
    checks = bind.execute(
        sa.text(
            "SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint "
            "WHERE conrelid = CAST(:table AS regclass) AND contype = 'c'"
        ),
        {"table": prefix},
    ).all()
    for name, definition in checks:
        if "status" in definition and not all(s in definition for s in STATUSES):
            op.drop_constraint(name, prefix, type_="check")
            op.create_check_constraint(name, prefix, _status_check().sqltext)


def _create_indexes(prefix: str) -> None:
    """Created once the tables have every column (an earlier one: after the adoption)."""
    index = op.create_index
    index(f"{prefix}_sent_at", prefix, ["sent_at", "seq"], if_not_exists=True)
    index(f"{prefix}_tracking", prefix, ["tracking_number", "sent_at", "seq"], if_not_exists=True)
    index(f"{prefix}_provider_id", prefix, ["provider_message_id"], if_not_exists=True)
    shipments = f"{prefix}_shipments"
    index(f"{shipments}_number", shipments, ["tracking_number", "updated_at"], if_not_exists=True)
    index(f"{shipments}_page", shipments, ["page_token"], unique=True, if_not_exists=True)
    index(f"{shipments}_registered", shipments, ["registered_at"], if_not_exists=True)
    visits = f"{prefix}_page_visits"
    index(f"{visits}_at", visits, ["at"], if_not_exists=True)
    # One row per (token, message or none, hour); rows from before the hour column have no
    # hour and never collide.
    index(
        f"{visits}_once",
        visits,
        ["page_token", sa.text("COALESCE(message_key, '')"), "visit_hour"],
        unique=True,
        if_not_exists=True,
    )


def upgrade() -> None:
    prefix: str = op.get_context().opts["ledger_prefix"]
    _create_messages(prefix)
    _create_side_tables(prefix)
    _add_missing_columns(prefix)
    _widen_status_check(prefix)
    _create_indexes(prefix)


def downgrade() -> None:
    raise NotImplementedError("a ledger is not downgraded")
