"""A Zendesk double speaking the Support API trackflow uses (dev and tests only).

Routes are Zendesk's own paths, relative, so the app can be mounted under a prefix:

* ``GET /api/v2/search.json?query=...&page=&per_page=``: ``type:ticket``, ``requester:<email>``,
  ``status:<s>``, ``status<s`` / ``status>s`` (new < open < pending < hold < solved < closed)
  and ``tags:<t>`` terms; ``{"results", "facets", "next_page", "previous_page", "count"}``
* ``GET /api/v2/tickets/{id}.json``, ``GET /api/v2/tickets/{id}/comments.json`` (paginated
  the same way), ``PUT /api/v2/tickets/{id}.json`` ``{"ticket": {...}}`` (``tags`` replace,
  ``additional_tags`` / ``remove_tags`` add and remove, ``comment`` ``{body, html_body,
  public}``, ``status``): ``{"ticket", "audit"}``; a closed ticket is 422
* ``PUT /api/v2/tickets/update_many.json?ids=1,2`` ``{"ticket": {...}}``: 200 ``{"job_status":
  {"id", "url", "status": "queued", ...}}``; the double applies it at once and
  ``GET /api/v2/job_statuses/{id}.json`` answers it ``completed`` with a result per ticket
* Basic ``{email}/token:{api_token}``: without it (or with another token than the double's
  ``api_token`` when one is set) 401 ``{"error": "Couldn't authenticate you"}``; unknown ids
  404 ``{"error": "RecordNotFound", "description": "Not found"}``
* ``POST /_double/script`` ``{status: 429|500|..., count, retry_after, error, path, method}``:
  the next ``count`` matching calls answer that status (429 as Zendesk does: a text body and
  ``Retry-After``); ``{"down": true}``: 503 to every call until ``{"down": false}`` or a reset;
  ``{action: "stall", seconds, path, method}``: the next matching ticket update
  (``update_many`` or ``PUT /tickets/{id}.json``) is carried out and answered only after
  ``seconds`` (a caller killed meanwhile never hears back)
* ``POST /_double/tickets`` ``{requester_email, requester_name, subject, description, status,
  tags}``: seeds a requester (found or created) and a ticket
* ``GET /_double/tickets`` (with requester email, tags and comments), ``GET /_double/calls``,
  ``POST /_double/reset``
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import shlex
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

STATUSES = ["new", "open", "pending", "hold", "solved", "closed"]
COULD_NOT_AUTHENTICATE = {"error": "Couldn't authenticate you"}
NOT_FOUND = {"error": "RecordNotFound", "description": "Not found"}
RATE_LIMITED = (
    "Rate limit for ticket updates exceeded, please wait before updating this ticket again"
)
DEFAULT_PER_PAGE = 100


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class ZendeskDouble:
    api_token: str | None = None  # None: any `{email}/token` credentials are accepted
    users: list[dict[str, Any]] = field(default_factory=list)
    tickets: list[dict[str, Any]] = field(default_factory=list)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    script: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, str]] = field(default_factory=list)
    down: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(101))

    def next_id(self) -> int:
        return next(self._ids)

    def reset(self) -> None:
        for listing in (self.users, self.tickets, self.script, self.calls):
            listing.clear()
        self.comments.clear()
        self.jobs.clear()
        self.down = False

    def user(self, email: str, name: str | None = None, role: str = "end-user") -> dict[str, Any]:
        for user in self.users:
            if user["email"].lower() == email.lower():
                return user
        user_id = self.next_id()
        user = {
            "id": user_id,
            "url": f"/api/v2/users/{user_id}.json",
            "email": email,
            "name": name or email.split("@")[0],
            "role": role,
            "created_at": _now(),
        }
        self.users.append(user)
        return user

    def user_by_id(self, user_id: int) -> dict[str, Any] | None:
        return next((u for u in self.users if u["id"] == user_id), None)

    def ticket(self, ticket_id: int) -> dict[str, Any] | None:
        return next((t for t in self.tickets if t["id"] == ticket_id), None)

    def seed(self, body: dict[str, Any]) -> dict[str, Any]:
        requester = self.user(str(body["requester_email"]), body.get("requester_name"))
        ticket_id = self.next_id()
        description = str(body.get("description", "Hi, where is my order?"))
        ticket = {
            "id": ticket_id,
            "url": f"/api/v2/tickets/{ticket_id}.json",
            "external_id": None,
            "type": None,
            "subject": body.get("subject", "Where is my order?"),
            "raw_subject": body.get("subject", "Where is my order?"),
            "description": description,
            "priority": None,
            "status": body.get("status", "open"),
            "requester_id": requester["id"],
            "submitter_id": requester["id"],
            "assignee_id": None,
            "group_id": None,
            "tags": list(dict.fromkeys(body.get("tags", []))),
            "via": {"channel": "email"},
            "created_at": _now(),
            "updated_at": _now(),
        }
        self.tickets.append(ticket)
        self.comments[ticket_id] = []
        self.add_comment(ticket, {"body": description, "public": True}, requester)
        return ticket

    def add_comment(
        self, ticket: dict[str, Any], comment: dict[str, Any], author: dict[str, Any]
    ) -> dict[str, Any]:
        body = str(comment.get("body") or comment.get("html_body") or "")
        created = {
            "id": self.next_id(),
            "type": "Comment",
            "author_id": author["id"],
            "body": body,
            "html_body": comment.get("html_body") or f"<div><p>{body}</p></div>",
            "plain_body": body,
            "public": bool(comment.get("public", True)),
            "attachments": [],
            "audit_id": self.next_id(),
            "via": {"channel": "api"},
            "created_at": _now(),
        }
        self.comments.setdefault(ticket["id"], []).append(created)
        return created

    def update(
        self, ticket: dict[str, Any], changes: dict[str, Any], author: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Applies `changes`; the validation errors when a closed ticket is touched."""
        if ticket["status"] == "closed":
            return {"status": [{"description": "Status: closed prevents ticket update"}]}
        if "tags" in changes:
            ticket["tags"] = list(dict.fromkeys(changes["tags"]))
        for tag in changes.get("additional_tags") or []:
            if tag not in ticket["tags"]:
                ticket["tags"].append(tag)
        removed = set(changes.get("remove_tags") or [])
        ticket["tags"] = [t for t in ticket["tags"] if t not in removed]
        if changes.get("status") in STATUSES:
            ticket["status"] = changes["status"]
        if isinstance(changes.get("comment"), dict):
            self.add_comment(ticket, changes["comment"], author)
        ticket["updated_at"] = _now()
        return None


class _Answer(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _json_error(status: int, body: dict[str, Any]) -> _Answer:
    return _Answer(JSONResponse(body, status_code=status))


def _requester(credentials: str) -> tuple[str, str] | None:
    scheme, _, encoded = credentials.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, token = decoded.partition(":")
    email, slash, kind = username.rpartition("/")
    if not (sep and slash and kind == "token" and email and token):
        return None
    return email, token


def _matches(ticket: dict[str, Any], terms: list[str], double: ZendeskDouble) -> bool:
    for term in terms:
        if term == "type:ticket":
            continue
        if term.startswith("requester:"):
            requester = double.user_by_id(ticket["requester_id"])
            if requester is None or requester["email"].lower() != term[10:].strip('"').lower():
                return False
        elif term.startswith("tags:"):
            if term[5:] not in ticket["tags"]:
                return False
        elif term.startswith("status"):
            op, value = term[6], term[7:]
            if value not in STATUSES:
                return False
            have, want = STATUSES.index(ticket["status"]), STATUSES.index(value)
            if not {":": have == want, "<": have < want, ">": have > want}.get(op, False):
                return False
        else:  # free text: the subject or the description
            text = f"{ticket['subject']} {ticket['description']}".lower()
            if term.lower() not in text:
                return False
    return True


def _paginate(request: Request, items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    try:
        page = max(1, int(request.query_params.get("page", 1)))
        per_page = min(100, max(1, int(request.query_params.get("per_page", DEFAULT_PER_PAGE))))
    except ValueError:
        raise _json_error(
            400, {"error": "InvalidPaginationParameter", "description": "page must be a number"}
        ) from None
    start = (page - 1) * per_page

    def link(number: int) -> str:
        return str(request.url.include_query_params(page=number, per_page=per_page))

    return {
        key: items[start : start + per_page],
        "next_page": link(page + 1) if start + per_page < len(items) else None,
        "previous_page": link(page - 1) if page > 1 else None,
        "count": len(items),
    }


def create_zendesk_app(double: ZendeskDouble | None = None) -> FastAPI:
    state = double or ZendeskDouble()
    app = FastAPI(title="trackflow Zendesk double")
    app.state.double = state

    @app.exception_handler(_Answer)
    async def answer(_request: Request, exc: _Answer) -> Response:
        return exc.response

    async def gate(request: Request) -> dict[str, Any]:
        """Scripted failures first, then Basic `{email}/token`; answers the agent."""
        path = request.url.path
        state.calls.append({"method": request.method, "path": path})
        if state.down:
            raise _Answer(PlainTextResponse("Service Unavailable", status_code=503))
        for index, rule in enumerate(state.script):
            method = str(rule.get("method", request.method)).upper()
            if rule.get("path", "") in path and method == request.method:
                del state.script[index]
                if rule.get("action") == "stall":  # carried out, then answered late
                    request.state.stall = float(rule.get("seconds", 60))
                    break
                status = int(rule["status"])
                if status == 429:
                    raise _Answer(
                        PlainTextResponse(
                            rule.get("error", RATE_LIMITED),
                            status_code=429,
                            headers={"Retry-After": str(rule.get("retry_after", 1))},
                        )
                    )
                raise _json_error(status, {"error": rule.get("error", f"scripted {status}")})
        credentials = _requester(request.headers.get("authorization", ""))
        if credentials is None or (
            state.api_token is not None and credentials[1] != state.api_token
        ):
            raise _json_error(401, COULD_NOT_AUTHENTICATE)
        request.state.agent = state.user(credentials[0], role="agent")
        return dict(request.state.agent)

    api = APIRouter(prefix="/api/v2", dependencies=[Depends(gate)])

    def ticket_or_404(ticket_id: int) -> dict[str, Any]:
        ticket = state.ticket(ticket_id)
        if ticket is None:
            raise _json_error(404, NOT_FOUND)
        return ticket

    @api.get("/search.json")
    async def search(request: Request) -> dict[str, Any]:
        query = request.query_params.get("query", "")
        if not query.strip():
            raise _json_error(
                400, {"error": "InvalidSearchQuery", "description": "Query cannot be empty"}
            )
        try:
            terms = shlex.split(query)
        except ValueError:
            terms = query.split()
        found = [{**t, "result_type": "ticket"} for t in state.tickets if _matches(t, terms, state)]
        return {**_paginate(request, found, "results"), "facets": None}

    @api.put("/tickets/update_many.json")
    async def update_many(request: Request) -> dict[str, Any]:
        agent: dict[str, Any] = request.state.agent
        raw_ids = request.query_params.get("ids", "")
        try:
            ids = [int(i) for i in raw_ids.split(",") if i.strip()]
        except ValueError:
            ids = []
        if not ids or len(ids) > 100:
            raise _json_error(
                400,
                {"error": "InvalidValue", "description": "ids: 1 to 100 comma-separated ids"},
            )
        changes = (await _json(request)).get("ticket")
        if not isinstance(changes, dict):
            raise _json_error(
                400, {"error": "InvalidValue", "description": "ticket: an object is expected"}
            )
        results = []
        for index, ticket_id in enumerate(ids):
            ticket = state.ticket(ticket_id)
            problem = (
                state.update(ticket, changes, agent) if ticket is not None else "TicketNotFound"
            )
            results.append(
                {
                    "id": ticket_id,
                    "index": index,
                    "action": "update",
                    "success": True,
                    "status": "Updated",
                }
                if problem is None
                else {
                    "id": ticket_id,
                    "index": index,
                    "action": "update",
                    "success": False,
                    "error": "TicketNotFound" if ticket is None else "TicketUpdateFailed",
                    "details": str(problem),
                }
            )
        job_id = uuid.uuid4().hex
        base = str(request.url.replace(query="")).removesuffix("/tickets/update_many.json")
        url = f"{base}/job_statuses/{job_id}.json"
        state.jobs[job_id] = {
            "id": job_id,
            "url": url,
            "total": len(ids),
            "progress": len(ids),
            "status": "completed",
            "message": f"Completed at {_now()}",
            "results": results,
        }
        queued = {
            **state.jobs[job_id],
            "progress": None,
            "status": "queued",
            "message": None,
            "results": None,
        }
        await _stall(request)
        return {"job_status": queued}

    @api.get("/job_statuses/{job_id}.json")
    async def job_status(job_id: str) -> dict[str, Any]:
        job = state.jobs.get(job_id)
        if job is None:
            raise _json_error(404, NOT_FOUND)
        return {"job_status": job}

    @api.get("/tickets/{ticket_id}.json")
    async def get_ticket(ticket_id: int) -> dict[str, Any]:
        return {"ticket": ticket_or_404(ticket_id)}

    @api.put("/tickets/{ticket_id}.json")
    async def update_ticket(ticket_id: int, request: Request) -> dict[str, Any]:
        agent: dict[str, Any] = request.state.agent
        ticket = ticket_or_404(ticket_id)
        changes = (await _json(request)).get("ticket")
        if not isinstance(changes, dict):
            raise _json_error(
                400, {"error": "InvalidValue", "description": "ticket: an object is expected"}
            )
        problem = state.update(ticket, changes, agent)
        if problem is not None:
            raise _json_error(
                422,
                {
                    "error": "RecordInvalid",
                    "description": "Record validation errors",
                    "details": problem,
                },
            )
        audit = {
            "id": state.next_id(),
            "ticket_id": ticket_id,
            "author_id": agent["id"],
            "created_at": _now(),
            "events": [],
        }
        await _stall(request)
        return {"ticket": ticket, "audit": audit}

    @api.get("/tickets/{ticket_id}/comments.json")
    async def list_comments(ticket_id: int, request: Request) -> dict[str, Any]:
        ticket_or_404(ticket_id)
        return _paginate(request, state.comments.get(ticket_id, []), "comments")

    app.include_router(api)

    @app.post("/_double/tickets", status_code=201)
    async def seed_ticket(body: dict[str, Any]) -> dict[str, Any]:
        return state.seed(body)

    @app.get("/_double/tickets")
    async def tickets() -> list[dict[str, Any]]:
        listed = []
        for ticket in state.tickets:
            requester = state.user_by_id(ticket["requester_id"]) or {}
            listed.append(
                {
                    **ticket,
                    "requester_email": requester.get("email"),
                    "comments": state.comments.get(ticket["id"], []),
                }
            )
        return listed

    @app.get("/_double/calls")
    async def calls() -> list[dict[str, str]]:
        return state.calls

    @app.post("/_double/script")
    async def script(rule: dict[str, Any]) -> dict[str, Any]:
        if "down" in rule:
            state.down = bool(rule["down"])
        else:
            state.script.extend([rule] * int(rule.get("count", 1)))
        return {"scripted": len(state.script), "down": state.down}

    @app.post("/_double/reset")
    async def reset() -> dict[str, bool]:
        state.reset()
        return {"ok": True}

    return app


async def _stall(request: Request) -> None:
    """A scripted stall: the request was carried out, the answer comes late (or never, for a
    caller that is killed or gives up first)."""
    seconds = getattr(request.state, "stall", None)
    if seconds:
        await asyncio.sleep(seconds)


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _json_error(
            400, {"error": "InvalidJSON", "description": "The request body is not JSON"}
        ) from None
    if not isinstance(body, dict):
        raise _json_error(400, {"error": "InvalidJSON", "description": "An object is expected"})
    return body
