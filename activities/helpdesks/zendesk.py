"""Zendesk: tag the customer's unsolved tickets and add a private comment, over REST (httpx).

Basic auth ``{email}/token:{api_token}`` (an agent's email and an API token from Admin
Center > Apps and integrations > Zendesk API). The base URL is the account's
(``https://<subdomain>.zendesk.com``), or a double's, path prefix allowed.

1. ``GET /api/v2/search.json?query=type:ticket requester:<email> status<solved``: the
   requester's new, open, pending and on-hold tickets (``{"results": [...], "next_page"}``).
   None: recorded, not an error. Solved and closed tickets are left alone.
2. ``GET /api/v2/tickets/{id}/comments.json``: is our comment there already (its marker line
   ``trackflow:<idempotency key>``)? Those tickets were tagged by the same update.
3. ``PUT /api/v2/tickets/update_many.json?ids=1,2`` with ``{"ticket": {"additional_tags":
   [...], "comment": {"body": note, "public": false}}}`` for the others (100 ids a call):
   Zendesk answers a ``job_status`` and applies it in the background. ``additional_tags`` adds
   to the ticket's tags, never replaces them.

``update_many`` is applied by a background job, within seconds; a retry of the activity comes
after its timeout, by when the comment (and its marker) is on the ticket, so a crash between
the call and the ledger write does not comment twice.

429 (``Retry-After``), 5xx and timeouts are retried by Temporal; 401, 403, 422 and other 4xx
are a permanent refusal, recorded as ``zendesk-refused``; a ticket gone (404) is skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from activities.helpdesk import (
    NO_EMAIL,
    NO_OPEN_TICKET,
    Refused,
    Tagged,
    has_marker,
    marker_for,
    note_marker,
    outcome_detail,
    record_tagged,
    refused_error,
    send,
    with_marker,
)
from storage import Ledger, LedgerRecord
from trackflow.effects import TagHelpdesk

ZENDESK = "zendesk"
UPDATE_MANY_LIMIT = 100
MAX_PAGES = 20


def open_tickets_query(email: str) -> str:
    return f"type:ticket requester:{email} status<solved"


class ZendeskHelpdesk:
    """Tags a requester's unsolved Zendesk tickets with a private comment, then records it."""

    name = ZENDESK

    def __init__(
        self,
        ledger: Ledger | None,
        *,
        base_url: str,
        email: str,
        api_token: str,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._ledger = ledger
        self._base_url = base_url.rstrip("/") + "/"
        self._email = email
        self._api_token = api_token
        self._timeout_s = timeout_s
        self._transport = transport

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self._base_url,
            auth=httpx.BasicAuth(f"{self._email}/token", self._api_token),
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
            return Tagged(ZENDESK, detail=NO_EMAIL)
        marker = marker_for(tag.idempotency_key)
        note = with_marker(tag.note, marker)
        gone: list[str] = []
        noted_before: list[str] = []
        to_update: list[str] = []
        updated: list[str] = []
        jobs: list[str] = []
        async with self._client() as client:
            try:
                tickets = [
                    t
                    async for t in self._pages(
                        client,
                        "api/v2/search.json",
                        "results",
                        query=open_tickets_query(tag.customer_email),
                    )
                    if t.get("result_type", "ticket") == "ticket"
                ]
                if not tickets:
                    return Tagged(ZENDESK, detail=NO_OPEN_TICKET)
                for ticket in tickets:
                    ticket_id = str(ticket["id"])
                    try:
                        noted = await self._noted(client, ticket_id, marker)
                    except Refused as refused:
                        if refused.status != 404:
                            raise
                        gone.append(ticket_id)
                        continue
                    (noted_before if noted else to_update).append(ticket_id)
                for start in range(0, len(to_update), UPDATE_MANY_LIMIT):
                    ids = to_update[start : start + UPDATE_MANY_LIMIT]
                    answer = await send(
                        client,
                        ZENDESK,
                        "PUT",
                        "api/v2/tickets/update_many.json",
                        params={"ids": ",".join(ids)},
                        json={
                            "ticket": {
                                "additional_tags": tag.all_tags,
                                "comment": {"body": note, "public": False},
                            }
                        },
                    )
                    job = (answer.json().get("job_status") or {}).get("id")
                    if job:
                        jobs.append(str(job))
                    updated.extend(ids)
            except Refused as refused:
                return Tagged(ZENDESK, tuple(noted_before + updated), refused=str(refused))
        touched = tuple(noted_before + updated)
        detail = outcome_detail(gone=gone, noted_before=noted_before)
        if jobs:
            detail = "; ".join(filter(None, [detail, f"job {', '.join(jobs)}"]))
        if not touched:
            return Tagged(ZENDESK, refused=f"every open ticket is gone: {detail}")
        return Tagged(ZENDESK, touched, detail=detail)

    async def annotate_ticket(self, ticket_id: str, tags: list[str], note: str) -> None:
        """Tag one ticket and add the note as a private comment, once per note (its marker
        line, or its text). Raises a retryable ApplicationError when Zendesk is unavailable,
        a non-retryable one when it refuses."""
        marker = note_marker(note)
        async with self._client() as client:
            try:
                update: dict[str, Any] = {"additional_tags": tags}
                if not await self._noted(client, ticket_id, marker):
                    update["comment"] = {"body": with_marker(note, marker), "public": False}
                elif not tags:
                    return
                await send(
                    client,
                    ZENDESK,
                    "PUT",
                    f"api/v2/tickets/{ticket_id}.json",
                    json={"ticket": update},
                )
            except Refused as refused:
                raise refused_error(ZENDESK, refused) from None

    async def _noted(self, client: httpx.AsyncClient, ticket_id: str, marker: str) -> bool:
        async for comment in self._pages(
            client, f"api/v2/tickets/{ticket_id}/comments.json", "comments"
        ):
            if any(has_marker(comment.get(field), marker) for field in ("body", "plain_body")):
                return True
        return False

    @staticmethod
    async def _pages(
        client: httpx.AsyncClient, path: str, key: str, **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        url: str | None = path
        query: dict[str, Any] | None = params or None
        for _ in range(MAX_PAGES):
            if url is None:
                return
            page = (await send(client, ZENDESK, "GET", url, params=query)).json()
            for item in page.get(key) or []:
                yield item
            url, query = page.get("next_page"), None  # next_page carries the query
