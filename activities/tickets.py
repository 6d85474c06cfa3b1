"""The inbound-ticket activity: "the ticket that arrives anyway".

`triage_ticket` (on the integrations task queue, contracts.integrations_queue) takes a new
helpdesk ticket and:

1. classifies it (trackflow.intent: where-is-my-order or not);
2. finds the requester's most recently registered shipment through the customer index
   (a keyed digest of the email, trackflow.tickets; `index_customer` writes it when a
   shipment is registered);
3. asks the shipment's workflow for its live state (`contracts.QUERY_STATE`) and decides
   `already_notified`: a message about the current status went out before the ticket;
4. records the anonymised ticket row (no email, no text), once per ticket id, before any
   helpdesk call: a helpdesk that is down delays the note, never the row;
5. when the ticket is WISMO and the shipment is known, tags it (`wismo`, and
   `already_notified` when so) with a private note for the agent, through the helpdesk's
   `TicketAnnotator`, once per ticket: the ledger row `ticket:<helpdesk>:<id>:note`, and the
   note's `trackflow:ticket:<helpdesk>:<id>:note` marker line, by which the helpdesk client
   does not post it twice after a crash between its answer and that row (tags are a set).

A helpdesk that is not configured (no annotator) leaves the ticket untouched; the row is
still recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.exactly_once import perform_once
from storage import CustomerShipment, Ledger, LedgerRecord, TicketRecord
from trackflow.carriers import courier_tracking_url
from trackflow.contracts import QUERY_STATE
from trackflow.intent import Intent, classify
from trackflow.links import web_link
from trackflow.models import Shipment
from trackflow.settings import Settings
from trackflow.shipment_state import ShipmentView
from trackflow.tickets import (
    InboundTicket,
    TicketTriage,
    agent_note,
    already_notified,
    customer_digest,
    customer_digests,
    index_keys,
    ticket_tags,
)

TRIAGE_TICKET = "triage_ticket"
NOTE_KIND = "helpdesk"
NOTE_MARKER_PREFIX = "trackflow:"  # activities.helpdesk MARKER_PREFIX: one note per marker


class TicketAnnotator(Protocol):
    """Adds tags and a private (internal) note to one ticket of a helpdesk
    (activities.helpdesks `annotator_for(settings, helpdesk)`)."""

    async def annotate_ticket(self, ticket_id: str, tags: list[str], note: str) -> object: ...


AnnotatorFor = Callable[[str], TicketAnnotator | None]
"""The annotator of a helpdesk ("gorgias", "zendesk"), or None when it is not configured."""


def note_key(helpdesk: str, ticket_id: str) -> str:
    return f"ticket:{helpdesk}:{ticket_id}:note"


async def index_customer(
    ledger: Ledger,
    settings: Settings,
    *,
    email: str | None,
    tracking_number: str,
    order_id: str,
    workflow_id: str,
    tracking_url: str | None = None,
    registered_at: datetime | None = None,
) -> bool:
    """Remember the shipment under the customer's email digest (the writing key of
    `trackflow.tickets.index_keys`), so a ticket from that address finds it. No email: no-op.
    Idempotent; False when it was indexed already."""
    if not email or not email.strip():
        return False
    return await ledger.index_customer(
        CustomerShipment(
            email_digest=customer_digest(email, index_keys(settings)[0]),
            tracking_number=tracking_number,
            order_id=order_id,
            workflow_id=workflow_id,
            registered_at=registered_at or datetime.now(UTC),
            tracking_url=tracking_url,
        )
    )


async def index_shipment(
    ledger: Ledger, settings: Settings, shipment: Shipment, workflow_id: str
) -> bool:
    """`index_customer` for a registered shipment: the hook the registration routes call
    once `register_shipment` has answered (a shipment without an email is not indexed)."""
    return await index_customer(
        ledger,
        settings,
        email=shipment.customer.email,
        tracking_number=shipment.tracking_number,
        order_id=shipment.order_id,
        workflow_id=workflow_id,
        tracking_url=shipment.tracking_url,
    )


class TicketActivities:
    def __init__(
        self, ledger: Ledger, client: Client, settings: Settings, annotators: AnnotatorFor
    ) -> None:
        self._ledger = ledger
        self._client = client
        self._keys = index_keys(settings)
        self._annotators = annotators

    async def _shipment(self, email: str | None) -> CustomerShipment | None:
        if not email or not email.strip():
            return None
        found = await self._ledger.customer_shipments(customer_digests(email, self._keys))
        return found[0] if found else None

    async def _view(self, shipment: CustomerShipment) -> ShipmentView | None:
        """The shipment's live state; None once its workflow is gone (retention)."""
        handle = self._client.get_workflow_handle(shipment.workflow_id)
        try:
            view: ShipmentView = await handle.query(QUERY_STATE, result_type=ShipmentView)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        return view

    @activity.defn(name=TRIAGE_TICKET)
    async def triage_ticket(self, ticket: InboundTicket) -> TicketTriage:
        intent = classify(ticket.subject, ticket.body)
        created_at = ticket.created_at or ticket.received_at
        shipment = await self._shipment(ticket.requester_email)
        view = await self._view(shipment) if shipment else None
        notified = already_notified(view, created_at) if view else None
        _stored, recorded = await self._ledger.record_ticket(
            TicketRecord(
                helpdesk=ticket.helpdesk,
                ticket_id=ticket.ticket_id,
                received_at=ticket.received_at,
                created_at=ticket.created_at,
                tracking_number=shipment.tracking_number if shipment else None,
                intent=intent.intent.value,
                already_notified=notified,
                language=intent.language,
                rule=intent.rule,
            )
        )
        tags: list[str] = []
        annotated = False
        annotator = self._annotators(ticket.helpdesk)
        if intent.intent == Intent.WISMO and shipment and view and annotator:
            tags = ticket_tags(notified)
            note = agent_note(
                view,
                ticket_created_at=created_at,
                notified=bool(notified),
                tracking_url=web_link(shipment.tracking_url)
                or courier_tracking_url(view.carrier, view.tracking_number),
            )
            # The marker line makes the helpdesk post this ticket's note once, even when a
            # crash comes between its answer and the ledger row.
            note += f"\n\n{NOTE_MARKER_PREFIX}{note_key(ticket.helpdesk, ticket.ticket_id)}"
            await self._annotate_once(annotator, ticket, shipment, tags, note)
            annotated = True
        activity.logger.info(
            "ticket %s/%s: %s (%s), shipment %s, already notified %s, annotated %s",
            ticket.helpdesk,
            ticket.ticket_id,
            intent.intent.value,
            intent.language,
            "known" if shipment else "unknown",
            notified,
            annotated,
        )
        return TicketTriage(
            helpdesk=ticket.helpdesk,
            ticket_id=ticket.ticket_id,
            intent=intent.intent,
            language=intent.language,
            rule=intent.rule,
            tracking_number=shipment.tracking_number if shipment else None,
            already_notified=notified,
            annotated=annotated,
            tags=tags,
            recorded=recorded,
        )

    async def _annotate_once(
        self,
        annotator: TicketAnnotator,
        ticket: InboundTicket,
        shipment: CustomerShipment,
        tags: list[str],
        note: str,
    ) -> None:
        key = note_key(ticket.helpdesk, ticket.ticket_id)

        async def annotate() -> LedgerRecord:
            await annotator.annotate_ticket(ticket.ticket_id, tags, note)
            record, _created = await self._ledger.record_once(
                LedgerRecord(
                    idempotency_key=key,
                    kind=NOTE_KIND,
                    tracking_number=shipment.tracking_number,
                    order_id=shipment.order_id,
                    trigger=tags[0],
                    channel="helpdesk",
                    to=f"{ticket.helpdesk}:ticket:{ticket.ticket_id}",
                    subject="tags " + ",".join(tags),
                    body=note,
                    transport=ticket.helpdesk,
                    provider_message_id=ticket.ticket_id,
                    sent_at=datetime.now(UTC),
                )
            )
            return record

        await perform_once(self._ledger, key, NOTE_KIND, annotate)
