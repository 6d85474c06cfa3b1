"""The ledger's tables as SQLAlchemy Core sees them, under one prefix (the ledger's name).

Each table has one owner, the repository that writes it:

==============================  ===============================================
table                           owner
==============================  ===============================================
``<prefix>``                    storage.messages (messages and claims)
``<prefix>_feedback_seen``      storage.consent (provider feedback applied)
``<prefix>_suppressions``       storage.consent (the addresses not to contact)
``<prefix>_shipments``          storage.read_model (one row per lifecycle)
``<prefix>_page_visits``        storage.read_model (tracking-page views)
``<prefix>_customer_index``     storage.tickets (email digest -> shipments)
``<prefix>_inbound_tickets``    storage.tickets (anonymised ticket rows)
``<prefix>_baseline``           storage.baseline (weeks before trackflow)
``<prefix>_policies``           storage.policies (tracking policies by digest)
==============================  ===============================================

The tables are created and changed by the Alembic migrations (storage/migrations), not from
these definitions: these say what the queries read and write.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Dialect,
    Integer,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.types import TypeDecorator, TypeEngine

_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class UtcTime(TypeDecorator[datetime]):
    """An aware time in UTC: TIMESTAMPTZ on PostgreSQL; on SQLite ISO 8601 text with
    microseconds and +00:00, which sorts as the times do."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(TIMESTAMP(timezone=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return value.astimezone(UTC).isoformat(timespec="microseconds")

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        return datetime.fromisoformat(value)


def valid_prefix(prefix: str) -> str:
    if not _PREFIX.match(prefix):
        raise ValueError(f"invalid ledger table name: {prefix!r}")
    return prefix


class Tables:
    """Every table of one ledger."""

    def __init__(self, prefix: str) -> None:
        self.prefix = valid_prefix(prefix)
        self.metadata = metadata = MetaData()
        self.messages = Table(
            prefix,
            metadata,
            Column("seq", BigInteger, primary_key=True),
            Column("idempotency_key", Text, nullable=False, unique=True),
            Column("status", Text, nullable=False),
            Column("owner", Text),
            Column("lease_until", UtcTime),
            Column("attempts", Integer, nullable=False),
            Column("kind", Text),
            Column("tracking_number", Text),
            Column("order_id", Text),
            Column("trigger", Text, quote=True),
            Column("exception", Text),
            Column("channel", Text),
            Column("recipient", Text),
            Column("subject", Text),
            Column("body", Text),
            Column("html", Text),
            Column("transport", Text),
            Column("provider_message_id", Text),
            Column("sent_at", UtcTime),
            Column("claimed_at", UtcTime),
            Column("error_code", Text),
            Column("error_detail", Text),
            Column("delivery_status", Text),
            Column("delivery_status_at", UtcTime),
            Column("delivered_at", UtcTime),
            Column("opened_at", UtcTime),
            Column("clicked_at", UtcTime),
            Column("decided_at", UtcTime),
            Column("held_until", UtcTime),
        )
        self.feedback_seen = Table(
            f"{prefix}_feedback_seen",
            metadata,
            Column("dedupe_id", Text, primary_key=True),
            Column("seen_at", UtcTime, nullable=False),
        )
        self.suppressions = Table(
            f"{prefix}_suppressions",
            metadata,
            Column("merchant", Text, primary_key=True),
            Column("channel", Text, primary_key=True),
            Column("address", Text, primary_key=True),
            Column("reason", Text, primary_key=True),
            Column("at", UtcTime, nullable=False),
            Column("event_at", UtcTime),
        )
        self.shipments = Table(
            f"{prefix}_shipments",
            metadata,
            Column("shipment_key", Text, primary_key=True),
            Column("workflow_id", Text, nullable=False),
            Column("tracking_number", Text, nullable=False),
            Column("page_token", Text),
            Column("version", Integer, nullable=False),
            Column("updated_at", UtcTime, nullable=False),
            Column("status", Text, nullable=False),
            Column("carrier", Text),
            Column("open_problem", Boolean, nullable=False),
            Column("registered_at", UtcTime),
            Column("delivered_at", UtcTime),
            Column("projection", Text, nullable=False),
        )
        self.page_visits = Table(
            f"{prefix}_page_visits",
            metadata,
            Column("page_token", Text, nullable=False),
            Column("message_key", Text),
            Column("at", UtcTime, nullable=False),
            Column("visit_hour", BigInteger),
        )
        self.customer_index = Table(
            f"{prefix}_customer_index",
            metadata,
            Column("email_digest", Text, primary_key=True),
            Column("tracking_number", Text, primary_key=True),
            Column("order_id", Text, primary_key=True),
            Column("workflow_id", Text, nullable=False),
            Column("registered_at", UtcTime, nullable=False),
            Column("tracking_url", Text),
        )
        self.inbound_tickets = Table(
            f"{prefix}_inbound_tickets",
            metadata,
            Column("helpdesk", Text, primary_key=True),
            Column("ticket_id", Text, primary_key=True),
            Column("received_at", UtcTime, nullable=False),
            Column("created_at", UtcTime),
            Column("tracking_number", Text),
            Column("intent", Text, nullable=False),
            Column("already_notified", Boolean),
            Column("language", Text, nullable=False),
            Column("rule", Text),
        )
        self.baseline = Table(
            f"{prefix}_baseline",
            metadata,
            Column("week_start", Text, primary_key=True),
            Column("shipments", Integer, nullable=False),
            Column("wismo_tickets", Integer, nullable=False),
        )
        self.policies = Table(
            f"{prefix}_policies",
            metadata,
            Column("digest", Text, primary_key=True),
            Column("body", Text, nullable=False),
        )
