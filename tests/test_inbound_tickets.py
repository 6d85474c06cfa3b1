"""Inbound helpdesk tickets end to end, on the real dev server: a signed Gorgias or Zendesk
webhook starts InboundTicketWorkflow (answered 202), whose triage_ticket activity classifies
the ticket, finds the requester's shipment through the customer index, asks its workflow for
the live status, tags and annotates the ticket in the Gorgias double over HTTP, and records
the anonymised row; plus the webhooks' refusals and the ledger's ticket tables on SQLite and
PostgreSQL."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.client import Client
from temporalio.worker import Worker

from activities.helpdesks import annotator_for
from activities.tickets import TicketActivities, index_customer, index_shipment, note_key
from starters.api import create_app, webhooks_helpdesk
from starters.api.models import ShipmentIn
from starters.api.webhooks_helpdesk import zendesk_signature
from starters.simulators.gorgias import GorgiasDouble, create_gorgias_app
from starters.simulators.providers.server import serving
from starters.simulators.zendesk import ZendeskDouble, create_zendesk_app
from storage import CustomerShipment, Ledger, TicketRecord, open_ledger
from tests.api_support import TOKEN, api_settings, event_body, shipment_body, tracking_number
from tests.factories import ANY_TIME_POLICY, make_shipment
from tests.harness import drop_ledger_tables, eventually, free_port, outbox, running_worker, sent
from trackflow.contracts import integrations_queue
from trackflow.settings import Settings
from trackflow.tickets import TicketTriage, customer_digest, index_keys, workflow_id_for_ticket
from workers.runtime import connect
from workers.worker import sandbox_runner
from workflows.inbound_ticket import InboundTicketWorkflow

GORGIAS_SECRET = "gorgias-shared-secret"
ZENDESK_SECRET = "zendesk-signing-secret"
GORGIAS_USER = "api@shop.example"
GORGIAS_KEY = "gorgias-key"
ZENDESK_AGENT = "agent@shop.example"
ZENDESK_TOKEN = "zendesk-token"
POSTGRES_DSN = os.environ.get(
    "TRACKFLOW_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


@dataclass
class Stack:
    api: httpx.AsyncClient  # the /v1 API: shipments (main task queue)
    webhooks: httpx.AsyncClient  # the helpdesk webhooks (tickets' own task queue)
    settings: Settings  # the webhooks' and the ticket workers'
    gorgias_url: str
    zendesk_url: str

    async def register(self, email: str) -> str:
        """A shipment registered through the API, then indexed as the registration routes
        do (activities.tickets.index_shipment)."""
        number = tracking_number()
        body = shipment_body(number)
        body["customer"]["email"] = email
        answer = await self.api.post("/v1/shipments", json=body)
        assert answer.status_code == 202, answer.text
        ledger = open_ledger(self.settings.resolved_ledger_url)
        try:
            await index_shipment(
                ledger,
                self.settings,
                ShipmentIn.model_validate(body),
                answer.json()["workflow_id"],
            )
        finally:
            await ledger.close()
        return number

    def seed_ticket(self, email: str, subject: str, message: str) -> int:
        answer = httpx.post(
            f"{self.gorgias_url}/_double/tickets",
            json={"customer_email": email, "subject": subject, "message": message},
        )
        answer.raise_for_status()
        return int(answer.json()["id"])

    async def ticket(self, ticket_id: int) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            tickets = (await http.get(f"{self.gorgias_url}/_double/tickets")).json()
        ticket: dict[str, Any] = next(t for t in tickets if t["id"] == ticket_id)
        return ticket

    async def zendesk_ticket(self, ticket_id: int) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            tickets = (await http.get(f"{self.zendesk_url}/_double/tickets")).json()
        ticket: dict[str, Any] = next(t for t in tickets if t["id"] == ticket_id)
        return ticket

    async def ticket_row(self, helpdesk: str, ticket_id: str) -> TicketRecord | None:
        ledger = open_ledger(self.settings.resolved_ledger_url, read_only=True)
        try:
            return await ledger.ticket(helpdesk, ticket_id)
        finally:
            await ledger.close()


def internal_notes(ticket: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in ticket["messages"] if m["channel"] == "internal-note"]


def gorgias_body(ticket_id: int | str, email: str, subject: str, message: str) -> dict[str, Any]:
    """What the documented Gorgias HTTP-integration template renders to."""
    return {
        "ticket_id": str(ticket_id),
        "subject": subject,
        "customer_email": email,
        "message": message,
        "created_datetime": datetime.now(UTC).replace(tzinfo=None).isoformat(),
    }


def zendesk_headers(
    body: bytes, secret: str = ZENDESK_SECRET, *, at: datetime | None = None
) -> dict[str, str]:
    """As Zendesk signs a webhook: when it posts (or `at`), ISO 8601 in UTC."""
    timestamp = (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "X-Zendesk-Webhook-Signature": zendesk_signature(body, timestamp, secret),
        "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


def helpdesk_app(settings: Settings) -> FastAPI:
    app = create_app(settings, lambda: connect(settings), ANY_TIME_POLICY)
    if not any(getattr(r, "path", None) == "/webhooks/gorgias" for r in app.routes):
        app.include_router(webhooks_helpdesk.router)  # until app.py mounts it
    return app


@asynccontextmanager
async def ticket_workers(client: Client, settings: Settings) -> AsyncIterator[None]:
    """InboundTicketWorkflow on the settings' task queue, triage_ticket on its integrations
    queue, the Gorgias annotator from activities.helpdesks."""
    ledger = open_ledger(settings.resolved_ledger_url)
    tickets = TicketActivities(
        ledger, client, settings, lambda helpdesk: annotator_for(settings, helpdesk)
    )
    try:
        async with (
            Worker(
                client,
                task_queue=settings.task_queue,
                workflows=[InboundTicketWorkflow],
                workflow_runner=sandbox_runner(),
            ),
            Worker(
                client,
                task_queue=integrations_queue(settings.task_queue),
                activities=[tickets.triage_ticket],
            ),
        ):
            yield
    finally:
        await ledger.close()


@dataclass
class Doubles:
    gorgias: GorgiasDouble
    zendesk: ZendeskDouble
    url: str  # both mounted under it: /gorgias and /zendesk


@pytest.fixture
def doubles() -> Iterator[Doubles]:
    # Ticket ids unique across tests: a ticket's workflow id is taken for good on the server.
    first_id = uuid.uuid4().int % 10**9 + 10**9
    gorgias = GorgiasDouble(api_key=GORGIAS_KEY, _ids=itertools.count(first_id))
    zendesk = ZendeskDouble(api_token=ZENDESK_TOKEN, _ids=itertools.count(first_id))
    root = FastAPI()
    root.mount("/gorgias", create_gorgias_app(gorgias))
    root.mount("/zendesk", create_zendesk_app(zendesk))
    with serving(root, port=free_port()) as url:
        yield Doubles(gorgias, zendesk, url)


@pytest.fixture
async def stack(
    client: Client,
    temporal_address: str,
    task_queue: str,
    tmp_path: Path,
    doubles: Doubles,
) -> AsyncIterator[Stack]:
    """Shipments on `task_queue` (the main worker); tickets on their own queue, so this test
    does not depend on the main worker listing InboundTicketWorkflow."""
    settings = api_settings(
        temporal_address,
        f"{task_queue}-tickets",
        tmp_path,
        gorgias_webhook_secret=GORGIAS_SECRET,
        zendesk_webhook_secret=ZENDESK_SECRET,
        gorgias_base_url=f"{doubles.url}/gorgias",
        gorgias_username=GORGIAS_USER,
        gorgias_api_key=GORGIAS_KEY,
        zendesk_base_url=f"{doubles.url}/zendesk",
        zendesk_email=ZENDESK_AGENT,
        zendesk_api_token=ZENDESK_TOKEN,
    )
    shipments = api_settings(temporal_address, task_queue, tmp_path)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(running_worker(client, task_queue, tmp_path))
        await stack.enter_async_context(ticket_workers(client, settings))
        api = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(
                    app=create_app(shipments, lambda: connect(shipments), ANY_TIME_POLICY)
                ),
                base_url="http://trackflow",
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        )
        webhooks = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=helpdesk_app(settings)),
                base_url="http://trackflow",
            )
        )
        yield Stack(api, webhooks, settings, f"{doubles.url}/gorgias", f"{doubles.url}/zendesk")


def new_email() -> str:
    return f"ada.{uuid.uuid4().hex[:8]}@example.com"


async def triage_result(client: Client, helpdesk: str, ticket_id: str) -> TicketTriage:
    handle = client.get_workflow_handle(
        workflow_id_for_ticket(helpdesk, ticket_id), result_type=TicketTriage
    )
    result: TicketTriage = await handle.result()
    return result


def anonymised_tables(data_dir: Path) -> list[tuple[Any, ...]]:
    """Every row of the two ticket tables, straight from the SQLite file."""
    conn = sqlite3.connect(data_dir / "ledger.sqlite3")
    try:
        return [
            *conn.execute("SELECT * FROM notification_ledger_inbound_tickets").fetchall(),
            *conn.execute("SELECT * FROM notification_ledger_customer_index").fetchall(),
        ]
    finally:
        conn.close()


# --- end to end ---------------------------------------------------------------------------------


async def test_a_wismo_ticket_of_a_notified_customer_is_tagged_and_annotated_once(
    stack: Stack, client: Client
) -> None:
    email = new_email()
    number = await stack.register(email)
    event = await stack.api.post("/v1/events", json=event_body(number, "in_transit"))
    assert event.status_code == 202, event.text
    await eventually(
        lambda: outbox(stack.settings.data_dir, number),
        lambda records: ("in_transit", "email") in sent(records),
        what="the in-transit email",
    )
    ticket_id = stack.seed_ticket(email, "Where is my order?", "Hi, where is my package?")
    body = gorgias_body(ticket_id, email.upper(), "Where is my order?", "Hi, where's my package?")

    answer = await stack.webhooks.post(
        "/webhooks/gorgias", json=body, headers={"X-Trackflow-Secret": GORGIAS_SECRET}
    )
    assert answer.status_code == 202, answer.text
    assert answer.json() == {
        "workflow_id": f"ticket-gorgias-{ticket_id}",
        "ticket_id": str(ticket_id),
        "repeated": False,
    }

    tagged = await eventually(
        lambda: stack.ticket(ticket_id),
        lambda t: {"wismo", "already_notified"} <= set(t["tags"]) and bool(internal_notes(t)),
        what="the ticket tagged and annotated",
    )
    [note] = internal_notes(tagged)
    text = note["body_text"]
    assert f"order 1001 · UPS {number}" in text
    assert "Live status: in transit" in text
    assert "- in transit by email" in text
    assert "Already notified: yes" in text
    assert "Next expected:" in text
    assert "Tracking: https://example.com/track" in text
    assert f"trackflow:{note_key('gorgias', str(ticket_id))}" in text.splitlines()
    assert email not in text
    row = await eventually(
        lambda: stack.ticket_row("gorgias", str(ticket_id)),
        lambda r: r is not None,
        what="the ticket's row",
    )
    assert row is not None
    assert (row.tracking_number, row.intent, row.already_notified, row.language) == (
        number,
        "wismo",
        True,
        "en",
    )
    assert row.rule == "en:wismo:where is my order"
    result = await triage_result(client, "gorgias", str(ticket_id))
    assert (result.annotated, result.recorded, result.tags) == (
        True,
        True,
        ["wismo", "already_notified"],
    )

    # The same webhook again (Gorgias retries, or the ticket is updated): one row, one note.
    again = await stack.webhooks.post(
        "/webhooks/gorgias", json=body, headers={"X-Trackflow-Secret": GORGIAS_SECRET}
    )
    assert again.status_code == 202, again.text
    assert again.json()["repeated"] is True
    assert len(internal_notes(await stack.ticket(ticket_id))) == 1
    ledger = open_ledger(stack.settings.resolved_ledger_url, read_only=True)
    try:
        rows = [t for t in await ledger.tickets() if t.ticket_id == str(ticket_id)]
        note_rows = [r for r in await ledger.list(number) if r.kind == "helpdesk"]
    finally:
        await ledger.close()
    assert len(rows) == 1
    assert [r.idempotency_key for r in note_rows] == [note_key("gorgias", str(ticket_id))]
    # Anonymised: no address, no ticket text in the ticket tables.
    for values in anonymised_tables(stack.settings.data_dir):
        flat = " ".join(str(v) for v in values).lower()
        assert "@" not in flat and "package" not in flat


async def test_a_ticket_before_any_message_is_tagged_wismo_only(stack: Stack) -> None:
    email = new_email()
    number = await stack.register(email)
    ticket_id = stack.seed_ticket(email, "Pedido", "¿Dónde está mi pedido? No ha llegado.")
    body = gorgias_body(ticket_id, email, "Pedido", "¿Dónde está mi pedido? No ha llegado.")
    answer = await stack.webhooks.post(
        "/webhooks/gorgias", json=body, headers={"X-Trackflow-Secret": GORGIAS_SECRET}
    )
    assert answer.status_code == 202, answer.text
    tagged = await eventually(
        lambda: stack.ticket(ticket_id),
        lambda t: internal_notes(t) != [],
        what="the ticket annotated",
    )
    assert "wismo" in tagged["tags"] and "already_notified" not in tagged["tags"]
    assert "Already notified: no" in internal_notes(tagged)[0]["body_text"]
    row = await eventually(
        lambda: stack.ticket_row("gorgias", str(ticket_id)),
        lambda r: r is not None,
        what="the ticket's row",
    )
    assert row is not None
    assert (row.tracking_number, row.already_notified, row.language) == (number, False, "es")


async def test_zendesk_tickets_of_an_unknown_requester_and_a_non_wismo_one_are_recorded(
    stack: Stack, client: Client
) -> None:
    unknown_id, refund_id = (str(uuid.uuid4().int % 10**12) for _ in range(2))
    unknown = {
        "ticket_id": unknown_id,
        "subject": "Where is my order?",
        "requester_email": new_email(),  # no shipment registered with it
        "description": "I still haven't received my order.",
        "created_at": "2026-11-20T17:18:10Z",
    }
    raw = as_json(unknown)
    answer = await stack.webhooks.post(
        "/webhooks/zendesk", content=raw, headers=zendesk_headers(raw)
    )
    assert answer.status_code == 202, answer.text
    row = await eventually(
        lambda: stack.ticket_row("zendesk", unknown_id),
        lambda r: r is not None,
        what="the unknown requester's row",
    )
    assert row is not None
    assert (row.tracking_number, row.intent, row.already_notified) == (None, "wismo", None)
    assert row.created_at == datetime(2026, 11, 20, 17, 18, 10, tzinfo=UTC)
    result = await triage_result(client, "zendesk", unknown_id)
    assert (result.annotated, result.tags) == (False, [])

    email = new_email()
    number = await stack.register(email)
    refund = {
        "ticket_id": refund_id,
        "subject": "Rückerstattung",
        "requester_email": email,
        "description": "Ich möchte meine Bestellung stornieren und mein Geld zurück.",
        "created_at": "2026-11-20T17:20:00Z",
    }
    raw = as_json(refund)
    answer = await stack.webhooks.post(
        "/webhooks/zendesk", content=raw, headers=zendesk_headers(raw)
    )
    assert answer.status_code == 202, answer.text
    row = await eventually(
        lambda: stack.ticket_row("zendesk", refund_id),
        lambda r: r is not None,
        what="the refund ticket's row",
    )
    assert row is not None
    assert (row.tracking_number, row.intent, row.language) == (number, "other", "de")
    assert row.already_notified is False  # known shipment, nothing sent yet


async def test_a_zendesk_wismo_ticket_gets_the_tag_and_a_private_comment(stack: Stack) -> None:
    email = new_email()
    number = await stack.register(email)
    async with httpx.AsyncClient() as http:
        seeded = await http.post(
            f"{stack.zendesk_url}/_double/tickets",
            json={"requester_email": email, "subject": "Commande", "description": "Bonjour"},
        )
    ticket_id = int(seeded.json()["id"])
    raw = as_json(
        {
            "ticket_id": str(ticket_id),
            "subject": "Où est ma commande ?",
            "requester_email": email,
            "description": "Bonjour, je n'ai toujours pas reçu mon colis. Merci",
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    answer = await stack.webhooks.post(
        "/webhooks/zendesk", content=raw, headers=zendesk_headers(raw)
    )
    assert answer.status_code == 202, answer.text
    ticket = await eventually(
        lambda: stack.zendesk_ticket(ticket_id),
        lambda t: any(not c["public"] for c in t["comments"]),
        what="the private comment",
    )
    assert "wismo" in ticket["tags"] and "already_notified" not in ticket["tags"]
    [private] = [c for c in ticket["comments"] if not c["public"]]
    assert f"UPS {number}" in private["body"] and "Live status: pending" in private["body"]
    row = await eventually(
        lambda: stack.ticket_row("zendesk", str(ticket_id)),
        lambda r: r is not None,
        what="the ticket's row",
    )
    assert row is not None
    assert (row.tracking_number, row.intent, row.language) == (number, "wismo", "fr")


async def test_a_helpdesk_that_is_down_is_retried_and_annotated_once(stack: Stack) -> None:
    email = new_email()
    await stack.register(email)
    ticket_id = stack.seed_ticket(email, "Where is my order?", "No tracking update for a week.")
    async with httpx.AsyncClient() as http:
        await http.post(f"{stack.gorgias_url}/_double/script", json={"down": True})
        body = gorgias_body(ticket_id, email, "Where is my order?", "No update for a week.")
        answer = await stack.webhooks.post(
            "/webhooks/gorgias", json=body, headers={"X-Trackflow-Secret": GORGIAS_SECRET}
        )
        assert answer.status_code == 202, answer.text  # the helpdesk's outage is not the caller's

        async def refused_calls() -> int:
            calls = (await http.get(f"{stack.gorgias_url}/_double/calls")).json()
            return sum(1 for c in calls if f"/tickets/{ticket_id}/" in c["path"])

        await eventually(refused_calls, lambda n: n >= 2, what="two attempts while down")
        row = await stack.ticket_row("gorgias", str(ticket_id))  # recorded before the call
        assert row is not None and row.intent == "wismo"
        await http.post(f"{stack.gorgias_url}/_double/script", json={"down": False})
    tagged = await eventually(
        lambda: stack.ticket(ticket_id),
        lambda t: bool(internal_notes(t)),
        what="the ticket annotated once the helpdesk is back",
    )
    assert len(internal_notes(tagged)) == 1 and "wismo" in tagged["tags"]


# --- refusals (no worker needed) -------------------------------------------------------------


@pytest.fixture
async def webhooks(
    temporal_address: str, task_queue: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    settings = api_settings(
        temporal_address,
        task_queue,
        tmp_path,
        gorgias_webhook_secret=GORGIAS_SECRET,
        zendesk_webhook_secret=ZENDESK_SECRET,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=helpdesk_app(settings)), base_url="http://trackflow"
    ) as http:
        yield http


async def test_a_wrong_secret_or_signature_is_401(webhooks: httpx.AsyncClient) -> None:
    body = gorgias_body(1, "ada@example.com", "Where is my order?", "Where is it?")
    for headers, params in (
        ({}, {}),
        ({"X-Trackflow-Secret": "guess"}, {}),
        ({}, {"secret": "guess"}),
        ({}, {"secret": GORGIAS_SECRET}),  # the secret is accepted in the header only
    ):
        answer = await webhooks.post("/webhooks/gorgias", json=body, headers=headers, params=params)
        assert answer.status_code == 401, answer.text
        assert "X-Trackflow-Secret" in answer.json()["detail"]
    raw = as_json({"ticket_id": "1", "subject": "Where is my order?"})
    for headers in (
        {},
        zendesk_headers(raw, secret="another-secret"),
        {**zendesk_headers(raw), "X-Zendesk-Webhook-Signature-Timestamp": "2020-01-01T00:00:00Z"},
        {"X-Zendesk-Webhook-Signature": zendesk_headers(raw)["X-Zendesk-Webhook-Signature"]},
        # signed right, but more than ten minutes away from now: a replay, or a wrong clock
        zendesk_headers(raw, at=datetime.now(UTC) - timedelta(minutes=11)),
        zendesk_headers(raw, at=datetime.now(UTC) + timedelta(minutes=11)),
    ):
        answer = await webhooks.post("/webhooks/zendesk", content=raw, headers=headers)
        assert answer.status_code == 401, answer.text
        assert "X-Zendesk-Webhook-Signature" in answer.json()["detail"]
    tampered = raw.replace(b"Where", b"Whence")
    answer = await webhooks.post(
        "/webhooks/zendesk", content=tampered, headers=zendesk_headers(raw)
    )
    assert answer.status_code == 401


async def test_a_body_that_is_not_a_ticket_is_refused_with_a_reason(
    webhooks: httpx.AsyncClient,
) -> None:
    secret = {"X-Trackflow-Secret": GORGIAS_SECRET}
    cases: list[tuple[bytes, int, str]] = [
        (b"not json", 422, "not valid JSON"),
        (b"[1, 2]", 422, "JSON object"),
        (as_json({"subject": "Where is my order?"}), 422, "ticket id is missing"),
        (as_json({"ticket_id": "../../etc"}), 422, "ticket id must be"),
        (as_json({"ticket_id": "x" * 65}), 422, "ticket id must be"),
    ]
    for raw, status, reason in cases:
        answer = await webhooks.post("/webhooks/gorgias", content=raw, headers=secret)
        assert answer.status_code == status, (raw, answer.text)
        assert reason in answer.json()["detail"], answer.text
        signed = await webhooks.post("/webhooks/zendesk", content=raw, headers=zendesk_headers(raw))
        assert signed.status_code == status, (raw, signed.text)
        assert reason in signed.json()["detail"], signed.text


async def test_a_zendesk_event_that_is_not_a_new_ticket_is_ignored(
    webhooks: httpx.AsyncClient,
) -> None:
    raw = as_json(
        {
            "type": "zen:event-type:ticket.status_changed",
            "detail": {"id": "35436"},
            "subject": "zen:ticket:35436",
        }
    )
    answer = await webhooks.post("/webhooks/zendesk", content=raw, headers=zendesk_headers(raw))
    assert answer.status_code == 200, answer.text
    assert "is not a new ticket" in answer.json()["ignored"]


_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
_KEYS = st.sampled_from(
    [
        "ticket_id", "id", "subject", "title", "customer_email", "requester_email", "email",
        "message", "body", "description", "created_at", "created_datetime", "ticket",
        "customer", "requester", "messages", "type", "detail", "time",
    ]
)  # fmt: skip
_TICKETISH = st.dictionaries(_KEYS, _JSON | st.sampled_from(["zen:event-type:ticket.created"]))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=_TICKETISH | _JSON)
async def test_any_signed_body_is_answered_without_a_5xx(
    webhooks: httpx.AsyncClient, payload: Any
) -> None:
    """Started (202), ignored (200) or refused with a reason (4xx); never a server error."""
    raw = as_json(payload)
    secret = {"X-Trackflow-Secret": GORGIAS_SECRET, "Content-Type": "application/json"}
    for answer in (
        await webhooks.post("/webhooks/gorgias", content=raw, headers=secret),
        await webhooks.post("/webhooks/zendesk", content=raw, headers=zendesk_headers(raw)),
    ):
        assert answer.status_code in (200, 202) or 400 <= answer.status_code < 500, answer.text
        if answer.status_code >= 400:
            assert answer.json()["detail"]


async def test_an_unconfigured_secret_is_503(
    temporal_address: str, task_queue: str, tmp_path: Path
) -> None:
    settings = api_settings(temporal_address, task_queue, tmp_path)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=helpdesk_app(settings)), base_url="http://trackflow"
    ) as http:
        gorgias = await http.post("/webhooks/gorgias", json={"ticket_id": "1"})
        zendesk = await http.post("/webhooks/zendesk", json={"ticket_id": "1"})
    assert (gorgias.status_code, zendesk.status_code) == (503, 503)
    assert "GORGIAS_WEBHOOK_SECRET" in gorgias.json()["detail"]
    assert "ZENDESK_WEBHOOK_SECRET" in zendesk.json()["detail"]


# --- the ledger's ticket tables, on both backends ------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    if request.param == "sqlite":
        url, table = f"sqlite:///{tmp_path / 'ledger.sqlite3'}", "notification_ledger"
    else:
        url, table = POSTGRES_DSN, f"ledger_test_{uuid.uuid4().hex[:12]}"
    opened = open_ledger(url, table=table)
    try:
        yield opened
    finally:
        await opened.close()
        if request.param == "postgres":
            await drop_ledger_tables(POSTGRES_DSN, table)


T0 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)


async def test_the_customer_index_finds_the_most_recent_shipment(ledger: Ledger) -> None:
    key = index_keys(Settings(unsubscribe_secret="s"))[0]
    digest = customer_digest("ada@example.com", key)

    def shipment(number: str, at: datetime) -> CustomerShipment:
        return CustomerShipment(
            email_digest=digest,
            tracking_number=number,
            order_id="1001",
            workflow_id=f"shipment-{number}",
            registered_at=at,
        )

    assert await ledger.index_customer(shipment("1ZOLD", T0))
    assert await ledger.index_customer(shipment("1ZNEW", T0 + timedelta(days=2)))
    assert not await ledger.index_customer(shipment("1ZOLD", T0 + timedelta(days=9)))
    found = await ledger.customer_shipments([digest, "0" * 64])
    assert [s.tracking_number for s in found] == ["1ZNEW", "1ZOLD"]
    assert found[1].registered_at == T0  # the first registration's time is kept
    assert await ledger.customer_shipments(["f" * 64]) == []
    assert await ledger.customer_shipments([]) == []


async def test_a_registration_is_indexed_by_its_email_digest_only(ledger: Ledger) -> None:
    settings = Settings(unsubscribe_secret="s")
    shipment = make_shipment(email="Ada@Example.com", tracking_url="https://t.example/1Z9")
    assert await index_shipment(ledger, settings, shipment, "shipment-1Z9")
    assert not await index_shipment(ledger, settings, shipment, "shipment-1Z9")
    assert not await index_shipment(ledger, settings, make_shipment(email=None), "shipment-x")
    assert not await index_customer(
        ledger, settings, email=" ", tracking_number="1Z9", order_id="1", workflow_id="w"
    )
    [found] = await ledger.customer_shipments(
        [customer_digest("ada@example.com", k) for k in index_keys(settings)]
    )
    assert (found.tracking_number, found.workflow_id, found.tracking_url) == (
        shipment.tracking_number,
        "shipment-1Z9",
        "https://t.example/1Z9",
    )
    assert "@" not in found.email_digest


async def test_a_ticket_row_is_stored_once(ledger: Ledger) -> None:
    row = TicketRecord(
        helpdesk="gorgias",
        ticket_id="123",
        received_at=T0,
        created_at=T0 - timedelta(seconds=3),
        tracking_number="1Z999",
        intent="wismo",
        already_notified=True,
        language="en",
        rule="en:wismo:where is my order",
    )
    assert await ledger.record_ticket(row) == (row, True)
    stored, created = await ledger.record_ticket(
        row.model_copy(update={"already_notified": False, "received_at": T0 + timedelta(1)})
    )
    assert (stored, created) == (row, False)
    unknown = TicketRecord(
        helpdesk="zendesk", ticket_id="123", received_at=T0 + timedelta(hours=1),
        intent="other", language="unknown",
    )  # fmt: skip
    assert (await ledger.record_ticket(unknown))[1]
    assert await ledger.ticket("zendesk", "123") == unknown
    assert [t.helpdesk for t in await ledger.tickets()] == ["gorgias", "zendesk"]
    assert await ledger.tickets(since=T0 + timedelta(minutes=1)) == [unknown]
    assert await ledger.ticket("gorgias", "999") is None


def as_json(value: Any) -> bytes:
    return json.dumps(value).encode()
