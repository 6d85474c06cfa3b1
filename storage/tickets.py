"""Tickets and the customer index: a keyed digest of a customer's email (never the email;
trackflow.tickets) mapped to the shipments registered with it, and one anonymised row per
inbound helpdesk ticket (helpdesk, ticket id, times, shipment, intent, already_notified,
language: no email, no text) for the WISMO analytics."""

from __future__ import annotations

import builtins
from datetime import datetime

from sqlalchemy import RowMapping, delete, select

from storage.engine import Database
from storage.models import CustomerShipment, TicketRecord
from storage.tables import Tables


def _ticket(row: RowMapping) -> TicketRecord:
    notified = row["already_notified"]
    return TicketRecord(
        helpdesk=row["helpdesk"],
        ticket_id=row["ticket_id"],
        received_at=row["received_at"],
        created_at=row["created_at"],
        tracking_number=row["tracking_number"],
        intent=row["intent"],
        already_notified=None if notified is None else bool(notified),
        language=row["language"],
        rule=row["rule"],
    )


class Tickets:
    """The one owner of the customer-index and inbound-ticket tables."""

    def __init__(self, db: Database, tables: Tables) -> None:
        self.db = db
        self.index = tables.customer_index
        self.inbound = tables.inbound_tickets

    async def index_customer(self, shipment: CustomerShipment) -> bool:
        """Remember that the email digest has this shipment; False when it was known."""
        self.db.writing()
        t = self.index
        inserted = await self.db.rows(
            self.db.insert(t)
            .values(shipment.model_dump())
            .on_conflict_do_nothing(
                index_elements=[t.c.email_digest, t.c.tracking_number, t.c.order_id]
            )
            .returning(t.c.email_digest)
        )
        return bool(inserted)

    async def customer_shipments(
        self, email_digests: builtins.list[str]
    ) -> builtins.list[CustomerShipment]:
        """The shipments of any of the digests, the most recently registered first."""
        if not email_digests:
            return []
        t = self.index
        rows = await self.db.rows(
            select(t)
            .where(t.c.email_digest.in_(email_digests))
            .order_by(t.c.registered_at.desc(), t.c.tracking_number)
        )
        return [CustomerShipment.model_validate(dict(row)) for row in rows]

    async def record_ticket(self, ticket: TicketRecord) -> tuple[TicketRecord, bool]:
        """Store the ticket's row once per (helpdesk, ticket id); return the stored row and
        whether this call stored it."""
        self.db.writing()
        t = self.inbound
        inserted = await self.db.rows(
            self.db.insert(t)
            .values(ticket.model_dump())
            .on_conflict_do_nothing(index_elements=[t.c.helpdesk, t.c.ticket_id])
            .returning(t.c.ticket_id)
        )
        if inserted:
            return ticket, True
        stored = await self.ticket(ticket.helpdesk, ticket.ticket_id)
        if stored is None:
            raise RuntimeError(f"ticket row {ticket.helpdesk}/{ticket.ticket_id} vanished")
        return stored, False

    async def ticket(self, helpdesk: str, ticket_id: str) -> TicketRecord | None:
        t = self.inbound
        rows = await self.db.rows(
            select(t).where(t.c.helpdesk == helpdesk, t.c.ticket_id == ticket_id)
        )
        return _ticket(rows[0]) if rows else None

    async def tickets(self, since: datetime | None = None) -> builtins.list[TicketRecord]:
        """Inbound ticket rows received at or after `since`, oldest first."""
        t = self.inbound
        query = select(t).order_by(t.c.received_at, t.c.ticket_id)
        if since is not None:
            query = query.where(t.c.received_at >= since)
        return [_ticket(row) for row in await self.db.rows(query)]

    async def purge_before(self, cutoff: datetime) -> int:
        """Delete ticket rows received before `cutoff`; how many."""
        self.db.writing()
        t = self.inbound
        deleted = await self.db.rows(
            delete(t).where(t.c.received_at < cutoff).returning(t.c.ticket_id)
        )
        return len(deleted)
