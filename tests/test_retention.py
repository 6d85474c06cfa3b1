"""TRACKFLOW_RETENTION_DAYS: analytics rows older than the setting are purged, newer kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from activities.retention import purge_expired
from storage import TicketRecord, open_ledger
from tests.factories import ANY_TIME_POLICY, make_shipment
from trackflow.projection import project
from trackflow.settings import Settings
from trackflow.shipment_state import Phase, ShipmentProjection, ShipmentState

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _row(number: str, updated: datetime) -> ShipmentProjection:
    state = ShipmentState(phase=Phase.DELIVERED, started_at=updated - timedelta(days=3))
    return project(state, make_shipment(tracking_number=number), ANY_TIME_POLICY, updated, 1)


def _ticket(ticket_id: str, received: datetime) -> TicketRecord:
    return TicketRecord(
        helpdesk="gorgias",
        ticket_id=ticket_id,
        received_at=received,
        intent="wismo",
        language="en",
    )


async def test_rows_older_than_the_retention_setting_are_purged(tmp_path: Path) -> None:
    settings = Settings.from_env({"TRACKFLOW_RETENTION_DAYS": "30"})
    ledger = open_ledger(str(tmp_path / "ledger.sqlite3"))
    try:
        old, recent = NOW - timedelta(days=31), NOW - timedelta(days=29)
        await ledger.save_projection(_row("1ZOLD0000000000001", old), "old-page")
        await ledger.save_projection(_row("1ZNEW0000000000001", recent), "new-page")
        await ledger.record_ticket(_ticket("1", old))
        await ledger.record_ticket(_ticket("2", recent))
        await ledger.record_page_visit("old-page", None, old)
        await ledger.record_page_visit("new-page", None, recent)

        purged = await purge_expired(ledger, settings, NOW)

        assert (purged.shipments, purged.tickets, purged.page_visits) == (1, 1, 1)
        assert await ledger.projection("1ZOLD0000000000001") is None
        assert await ledger.projection("1ZNEW0000000000001") is not None
        assert [t.ticket_id for t in await ledger.tickets()] == ["2"]
        assert [v.page_token for v in await ledger.page_visits()] == ["new-page"]
        again = await purge_expired(ledger, settings, NOW)
        assert (again.shipments, again.tickets, again.page_visits) == (0, 0, 0)
    finally:
        await ledger.close()
