"""Gorgias: tag the customer's open tickets and add an internal note, over its REST API.

HTTP Basic with the API user's email and an API key (Settings > REST API). The base URL is
the account's (``https://<domain>.gorgias.com``), or a double's, path prefix allowed.

1. ``GET /api/customers?email=...`` (cursor-paginated: ``{"data": [...], "meta":
   {"next_cursor": ...}}``): the customer(s) with that email. None: recorded, not an error.
2. ``GET /api/tickets?customer_id=...``: their tickets; only ``status == "open"`` ones are
   touched (closed tickets keep their history as it is).
3. ``POST /api/tickets/{id}/tags`` ``{"names": [...]}``: adds the tags (a set union).
4. ``GET /api/tickets/{id}/messages``: is our note there already (its marker line
   ``trackflow:<idempotency key>``)? If not, ``POST /api/tickets/{id}/messages`` with
   ``channel``/``via`` ``internal-note``, ``from_agent: true``, ``sender`` the API user,
   ``body_text`` and ``body_html``. Internal notes never reach the customer.

429 (``Retry-After``), 5xx and timeouts are retried by Temporal; 401, 403, 422 and other 4xx
are a permanent refusal, recorded as ``gorgias-refused``; a ticket that is gone (404) between
the listing and the tagging is skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from activities.helpdesk import (
    NO_CUSTOMER,
    NO_EMAIL,
    NO_OPEN_TICKET,
    Refused,
    Tagged,
    has_marker,
    marker_for,
    note_html,
    note_marker,
    outcome_detail,
    record_tagged,
    refused_error,
    send,
    with_marker,
)
from storage import Ledger, LedgerRecord
from trackflow.effects import TagHelpdesk

GORGIAS = "gorgias"
OPEN = "open"
PAGE_LIMIT = 100
MAX_PAGES = 20  # a customer with more than 2,000 tickets or notes is not a real one


class GorgiasHelpdesk:
    """Tags a customer's open Gorgias tickets and notes them, then records it in the ledger."""

    name = GORGIAS

    def __init__(
        self,
        ledger: Ledger | None,
        *,
        base_url: str,
        username: str,
        api_key: str,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._ledger = ledger
        self._base_url = base_url.rstrip("/") + "/"
        self._username = username
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._transport = transport

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self._base_url,
            auth=httpx.BasicAuth(self._username, self._api_key),
            timeout=self._timeout_s,
            headers={"Accept": "application/json"},
            transport=self._transport,
        )

    async def tag_customer(self, tag: TagHelpdesk) -> LedgerRecord:
        if self._ledger is None:
            raise RuntimeError("tagging a customer records it: this client has no ledger")
        return await record_tagged(self._ledger, tag, [await self.apply(tag)])

    async def apply(self, tag: TagHelpdesk) -> Tagged:
        if not tag.customer_email:
            return Tagged(GORGIAS, detail=NO_EMAIL)
        marker = marker_for(tag.idempotency_key)
        note = with_marker(tag.note, marker)
        touched: list[str] = []
        gone: list[str] = []
        noted_before: list[str] = []
        async with self._client() as client:
            try:
                customers = [
                    c async for c in self._pages(client, "api/customers", email=tag.customer_email)
                ]
                if not customers:
                    return Tagged(GORGIAS, detail=NO_CUSTOMER)
                tickets = [
                    t
                    for customer in customers
                    async for t in self._pages(client, "api/tickets", customer_id=customer["id"])
                    if t.get("status") == OPEN
                ]
                if not tickets:
                    return Tagged(GORGIAS, detail=NO_OPEN_TICKET)
                for ticket in tickets:
                    ticket_id = str(ticket["id"])
                    try:
                        noted = await self._annotate(client, ticket_id, tag.all_tags, note, marker)
                    except Refused as refused:
                        if refused.status != 404:
                            raise
                        gone.append(ticket_id)
                        continue
                    touched.append(ticket_id)
                    if not noted:
                        noted_before.append(ticket_id)
            except Refused as refused:
                return Tagged(GORGIAS, tuple(touched), refused=str(refused))
        detail = outcome_detail(gone=gone, noted_before=noted_before)
        if not touched:
            return Tagged(GORGIAS, refused=f"every open ticket is gone: {detail}")
        return Tagged(GORGIAS, tuple(touched), detail=detail)

    async def annotate_ticket(self, ticket_id: str, tags: list[str], note: str) -> None:
        """Tag one ticket and add the note, once per note (its marker line, or its text).
        Raises a retryable ApplicationError when Gorgias is unavailable, a non-retryable
        one when it refuses."""
        marker = note_marker(note)
        async with self._client() as client:
            try:
                await self._annotate(client, ticket_id, tags, with_marker(note, marker), marker)
            except Refused as refused:
                raise refused_error(GORGIAS, refused) from None

    async def _annotate(
        self, client: httpx.AsyncClient, ticket_id: str, tags: list[str], note: str, marker: str
    ) -> bool:
        """Adds the tags, then the note unless it is there already; True if it posted it."""
        if tags:
            await send(
                client, GORGIAS, "POST", f"api/tickets/{ticket_id}/tags", json={"names": tags}
            )
        async for message in self._pages(client, f"api/tickets/{ticket_id}/messages"):
            if has_marker(message.get("body_text"), marker) or has_marker(
                message.get("body_html"), marker
            ):
                return False
        await send(
            client,
            GORGIAS,
            "POST",
            f"api/tickets/{ticket_id}/messages",
            json={
                "channel": "internal-note",
                "via": "internal-note",
                "from_agent": True,
                "sender": {"email": self._username},
                "source": {"type": "internal-note", "from": {"address": self._username}},
                "body_text": note,
                "body_html": note_html(note),
            },
        )
        return True

    @staticmethod
    async def _pages(
        client: httpx.AsyncClient, path: str, **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            query = {**params, "limit": PAGE_LIMIT, **({"cursor": cursor} if cursor else {})}
            page = (await send(client, GORGIAS, "GET", path, params=query)).json()
            for item in page.get("data") or []:
                yield item
            cursor = (page.get("meta") or {}).get("next_cursor")
            if not cursor:
                return
