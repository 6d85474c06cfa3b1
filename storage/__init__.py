"""The storage layer: trackflow's tables on SQLAlchemy Core (SQLite or PostgreSQL), their
Alembic migrations, one repository per concern, and the `Ledger` that holds them."""

from storage.consent import normalize_address
from storage.errors import LedgerUnavailable, ReadOnlyLedgerError
from storage.ledger import (
    DEFAULT_TABLE,
    SQLITE_FILE_NAME,
    Ledger,
    PostgresLedger,
    SqliteLedger,
    open_ledger,
)
from storage.models import (
    BaselineWeek,
    Claim,
    ClaimState,
    CustomerShipment,
    LatencyHistogram,
    LedgerRecord,
    LedgerTotals,
    MessageCount,
    MessageState,
    PageVisit,
    Purged,
    Suppression,
    TicketRecord,
)

__all__ = [
    "DEFAULT_TABLE",
    "SQLITE_FILE_NAME",
    "BaselineWeek",
    "Claim",
    "ClaimState",
    "CustomerShipment",
    "LatencyHistogram",
    "Ledger",
    "LedgerRecord",
    "LedgerTotals",
    "LedgerUnavailable",
    "MessageCount",
    "MessageState",
    "PageVisit",
    "PostgresLedger",
    "Purged",
    "ReadOnlyLedgerError",
    "SqliteLedger",
    "Suppression",
    "TicketRecord",
    "normalize_address",
    "open_ledger",
]
