"""How long analytics data is kept: `TRACKFLOW_RETENTION_DAYS` (400 by default, so a year can
be compared with the one before).

Every worker purges, when it starts and then once a day: read-model rows not updated for that
long (the shipment's page is gone long before: `TRACKFLOW_TRACKING_PAGE_DAYS`), inbound ticket
records and tracking-page visits older than that. A purge is one DELETE per table, harmless
when several workers run it. The message ledger itself is the exactly-once record and is
not purged here.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from storage import Ledger, Purged
from trackflow.settings import Settings

PURGE_EVERY = timedelta(days=1)
_log = logging.getLogger("trackflow.retention")


def retention_cutoff(settings: Settings, now: datetime) -> datetime:
    return now - timedelta(days=settings.retention_days)


async def purge_expired(ledger: Ledger, settings: Settings, now: datetime) -> Purged:
    purged = await ledger.purge_before(retention_cutoff(settings, now))
    if purged.shipments or purged.tickets or purged.page_visits:
        _log.info(
            "retention (%d days): purged %d shipment rows, %d ticket records, %d page visits",
            settings.retention_days,
            purged.shipments,
            purged.tickets,
            purged.page_visits,
        )
    return purged


async def purge_daily(ledger: Ledger, settings: Settings) -> None:
    """Purge now, then once a day, until cancelled (the worker's lifetime)."""
    while True:
        try:
            await purge_expired(ledger, settings, datetime.now(UTC))
        except Exception:  # a database hiccup must not stop the worker; tomorrow tries again
            _log.exception("retention purge failed")
        await asyncio.sleep(PURGE_EVERY.total_seconds())
