"""Helpdesk webhooks: new tickets from Gorgias and Zendesk ("the ticket that arrives anyway").

Each verified ticket starts one `InboundTicketWorkflow` (id `ticket-<helpdesk>-<ticket id>`,
so a repeated webhook does not start it again) and is answered 202 once that start is durable;
the workflow classifies the ticket, finds the requester's shipment, tags and annotates the
ticket, and records it anonymised (activities.tickets). Bad secret or signature: 401; a body
that is not a ticket: 422 with the reason.

Gorgias (Settings -> HTTP integration, trigger "Ticket created", POST, JSON)
    Authenticated by a shared secret, `TRACKFLOW_GORGIAS_WEBHOOK_SECRET`, sent as the header
    `X-Trackflow-Secret` (the integration's headers; never in the URL, which proxies and
    access logs keep). Body template::

        {"ticket_id": "{{ticket.id}}", "subject": "{{ticket.subject}}",
         "customer_email": "{{ticket.customer.email}}",
         "message": "{{ticket.messages[0].body_text}}",
         "created_datetime": "{{ticket.created_datetime}}"}

    A ticket object (`{"ticket": {...}}` or the object itself: `id`, `subject`,
    `customer.email`, `messages[].body_text`, `created_datetime`) is read the same way.

Zendesk (Admin Center -> Webhooks, "Trigger or automation", POST, JSON, with a signing secret)
    Signed: `X-Zendesk-Webhook-Signature` is base64(HMAC-SHA256(secret, timestamp + body))
    with `X-Zendesk-Webhook-Signature-Timestamp`, which must be within 10 minutes of our
    clock (a captured request replayed later is refused); secret
    `TRACKFLOW_ZENDESK_WEBHOOK_SECRET`.
    A trigger "Ticket is Created" notifies the webhook with the body::

        {"ticket_id": "{{ticket.id}}", "subject": "{{ticket.title}}",
         "requester_email": "{{ticket.requester.email}}",
         "description": "{{ticket.description}}",
         "created_at": "{{ticket.created_at_with_timestamp}}"}

    Event-subscription webhooks (`zen:event-type:ticket.created`, whose `detail` has no
    requester email) are accepted too: such a ticket is recorded with no shipment. Other
    event types are answered 200 and ignored.

A signed replay only replays the same ticket, which its workflow id deduplicates.
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies below from
# annotations, so they must be evaluated where they stand.

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from starters.api.dependencies import Context, TemporalClient, configured
from starters.api.json_body import parse_json_object
from starters.api.metrics import CountedRoute, event_outcome
from starters.api.verified import Signature, verified_body
from trackflow.email_address import canonical_email
from trackflow.sources.signatures import fresh
from trackflow.tickets import Helpdesk, InboundTicket, workflow_id_for_ticket
from workflows.inbound_ticket import INBOUND_TICKET_WORKFLOW_NAME

router = APIRouter(route_class=CountedRoute)
TRIAGE_WITHIN = timedelta(days=2)  # past the activity's own day of retries: the run ends

Payload = dict[str, Any]
_TICKET_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_SUBJECT = 2_000
MAX_BODY = 20_000


# --- reading the bodies -----------------------------------------------------------------------


def _text(value: Any) -> str | None:
    """A template's rendering: a string (or number), blank meaning absent."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        text = str(value).strip()
        return text or None
    return None


def _first(*values: Any) -> str | None:
    for value in values:
        if (text := _text(value)) is not None:
            return text
    return None


def _object(value: Any) -> Payload:
    return value if isinstance(value, dict) else {}


def _ticket_id(value: str | None) -> str:
    if value is None:
        raise HTTPException(422, "ticket id is missing (ticket_id, or the ticket's id)")
    if not _TICKET_ID.match(value):
        raise HTTPException(422, "ticket id must be 1-64 letters, digits, '.', '_' or '-'")
    return value


def _email(value: str | None) -> str | None:
    """The requester's canonical address, or None (no address, or not one plain address):
    an unknown requester."""
    if value is None:
        return None
    try:
        return canonical_email(value)
    except ValueError:
        return None


def _time(value: str | None) -> datetime | None:
    """ISO 8601; naive means UTC (Gorgias' `created_datetime`). Unreadable: None."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value is not None else None


def _customer_message(messages: Any) -> str | None:
    """The first message the customer wrote (Gorgias' `messages[]`)."""
    if not isinstance(messages, list):
        return None
    for message in messages:
        message = _object(message)
        if message.get("from_agent") is True:
            continue
        if text := _first(message.get("body_text"), message.get("stripped_text")):
            return text
    return None


def _inbound(
    helpdesk: Helpdesk,
    ticket_id: str | None,
    email: str | None,
    subject: str | None,
    body: str | None,
    created_at: str | None,
) -> InboundTicket:
    try:
        return InboundTicket(
            helpdesk=helpdesk,
            ticket_id=_ticket_id(ticket_id),
            requester_email=_email(email),
            subject=_clip(subject, MAX_SUBJECT),
            body=_clip(body, MAX_BODY),
            created_at=_time(created_at),
            received_at=datetime.now(UTC),
        )
    except ValidationError as error:
        raise HTTPException(422, f"not a ticket: {error.errors()[0]['msg']}") from None


def parse_gorgias(payload: Payload) -> InboundTicket:
    ticket = _object(payload.get("ticket")) or payload
    customer = _object(ticket.get("customer"))
    return _inbound(
        "gorgias",
        _first(payload.get("ticket_id"), ticket.get("id")),
        _first(
            payload.get("customer_email"),
            payload.get("requester_email"),
            customer.get("email"),
            payload.get("email"),
        ),
        _first(payload.get("subject"), ticket.get("subject")),
        _first(
            payload.get("message"),
            payload.get("body"),
            payload.get("body_text"),
            _customer_message(ticket.get("messages")),
        ),
        _first(payload.get("created_datetime"), ticket.get("created_datetime")),
    )


ZENDESK_TICKET_CREATED = "zen:event-type:ticket.created"


def zendesk_ignored(payload: Payload) -> str | None:
    """Why an event-subscription webhook is not a new ticket (None: it is one, or a trigger's
    body)."""
    kind = payload.get("type")
    if (
        isinstance(kind, str)
        and kind.startswith("zen:event-type:")
        and kind != ZENDESK_TICKET_CREATED
    ):
        return f"event type {kind[:100]!r} is not a new ticket"
    return None


def parse_zendesk(payload: Payload) -> InboundTicket:
    if payload.get("type") == ZENDESK_TICKET_CREATED:
        detail = _object(payload.get("detail"))
        return _inbound(
            "zendesk",
            _first(detail.get("id")),
            _first(detail.get("requester_email")),
            _first(detail.get("subject")),
            _first(detail.get("description")),
            _first(detail.get("created_at"), payload.get("time")),
        )
    ticket = _object(payload.get("ticket")) or payload
    requester = _object(ticket.get("requester"))
    return _inbound(
        "zendesk",
        _first(payload.get("ticket_id"), ticket.get("id")),
        _first(
            payload.get("requester_email"),
            ticket.get("requester_email"),
            requester.get("email"),
            payload.get("email"),
        ),
        _first(payload.get("subject"), ticket.get("subject"), ticket.get("title")),
        _first(
            payload.get("description"),
            payload.get("body"),
            payload.get("message"),
            ticket.get("description"),
        ),
        _first(payload.get("created_at"), ticket.get("created_at")),
    )


# --- signatures -------------------------------------------------------------------------------


def gorgias_secret_matches(given: str | None, secret: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), secret.encode())


def zendesk_signature(body: bytes, timestamp: str, secret: str) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def zendesk_signature_matches(
    body: bytes, signature: str | None, timestamp: str | None, secret: str, *, now: datetime
) -> bool:
    if not signature or not timestamp or not fresh(timestamp, now):
        return False
    expected = zendesk_signature(body, timestamp, secret)
    return hmac.compare_digest(expected.encode(), signature.encode())


def _gorgias_signature(
    context: Context,
    x_trackflow_secret: Annotated[str | None, Header()] = None,
) -> Signature:
    expected = configured(context.settings.gorgias_webhook_secret, "GORGIAS_WEBHOOK_SECRET")
    return Signature(
        lambda _raw: gorgias_secret_matches(x_trackflow_secret, expected),
        "X-Trackflow-Secret is missing or wrong (the secret is accepted in that header only)",
    )


def _zendesk_signature(
    context: Context,
    x_zendesk_webhook_signature: Annotated[str | None, Header()] = None,
    x_zendesk_webhook_signature_timestamp: Annotated[str | None, Header()] = None,
) -> Signature:
    secret = configured(context.settings.zendesk_webhook_secret, "ZENDESK_WEBHOOK_SECRET")
    return Signature(
        lambda raw: zendesk_signature_matches(
            raw,
            x_zendesk_webhook_signature,
            x_zendesk_webhook_signature_timestamp,
            secret,
            now=datetime.now(UTC),
        ),
        "X-Zendesk-Webhook-Signature is missing or does not match the timestamp and body, or "
        "X-Zendesk-Webhook-Signature-Timestamp is more than 10 minutes away",
    )


# --- the routes -------------------------------------------------------------------------------


async def start_triage(client: Client, ticket: InboundTicket, task_queue: str) -> JSONResponse:
    """202 once the ticket's workflow has started, or had started before (a repeat)."""
    workflow_id = workflow_id_for_ticket(ticket.helpdesk, ticket.ticket_id)
    try:
        await client.start_workflow(
            INBOUND_TICKET_WORKFLOW_NAME,
            ticket,
            id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            execution_timeout=TRIAGE_WITHIN,
            static_summary=f"{ticket.helpdesk} ticket {ticket.ticket_id}",
        )
        repeated = False
    except WorkflowAlreadyStartedError:
        repeated = True
        event_outcome("duplicate")
    return JSONResponse(
        {"workflow_id": workflow_id, "ticket_id": ticket.ticket_id, "repeated": repeated},
        status_code=202,
    )


@router.post("/webhooks/gorgias", status_code=202)
async def gorgias_webhook(
    raw: Annotated[bytes, Depends(verified_body(_gorgias_signature))],
    context: Context,
    client: TemporalClient,
) -> JSONResponse:
    """A new Gorgias ticket (HTTP integration, "ticket created")."""
    ticket = parse_gorgias(parse_json_object(raw))
    return await start_triage(client, ticket, context.settings.task_queue)


@router.post("/webhooks/zendesk", status_code=202)
async def zendesk_webhook(
    raw: Annotated[bytes, Depends(verified_body(_zendesk_signature))],
    context: Context,
    client: TemporalClient,
) -> JSONResponse:
    """A new Zendesk ticket (a trigger's webhook, or the ticket.created event)."""
    payload = parse_json_object(raw)
    if reason := zendesk_ignored(payload):
        event_outcome("ignored")
        return JSONResponse({"ignored": reason}, status_code=200)
    ticket = parse_zendesk(payload)
    return await start_triage(client, ticket, context.settings.task_queue)
