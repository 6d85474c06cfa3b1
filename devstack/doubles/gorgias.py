"""A Gorgias double speaking the REST API trackflow uses (dev and tests only).

Routes are Gorgias's own paths, relative, so the app can be mounted under a prefix:

* ``GET /api/customers?email=&limit=&cursor=``, ``GET /api/tickets?customer_id=&limit=&cursor=``,
  ``GET /api/tickets/{id}/messages``: cursor-paginated lists, ``{"data": [...], "meta":
  {"prev_cursor", "next_cursor"}, "object": "list", "uri"}``
* ``GET /api/tickets/{id}``: the ticket with its tags and messages
* ``POST /api/tickets/{id}/tags`` ``{"names": [...], "ids": [...]}``: adds tags (set union;
  unknown names create the tag), 201
* ``POST /api/tickets/{id}/messages``: creates a message, 201 with the message; an
  ``internal-note`` needs ``from_agent: true`` and a ``sender`` that is a user (the API user)
* HTTP Basic (username = the API user's email, password = the API key): without it, or with
  another key than the double's ``api_key`` when one is set, 401 ``{"error": {"msg": ...}}``;
  an unknown ticket is 404, an invalid message 400, both ``{"error": {"msg": ...}}``
* ``POST /_double/script`` ``{status: 429|500|..., count, retry_after, error, path, method}``:
  the next ``count`` calls (whose path contains ``path``, method ``method``, when given)
  answer that status (429 with ``Retry-After`` and ``X-Gorgias-Account-Api-Call-Limit``);
  ``{"down": true}``: every call answers 503 until ``{"down": false}`` or a reset;
  ``{action: "stall", seconds, path, method}``: the next matching tag or message POST is
  carried out and answered only after ``seconds`` (a caller killed meanwhile never hears back)
* ``POST /_double/tickets`` ``{customer_email, customer_name, subject, status, tags, message}``:
  seeds a customer (found or created by email) and a ticket with an incoming message
* ``GET /_double/tickets`` (tickets with tag names and messages), ``GET /_double/calls``,
  ``POST /_double/reset``
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

UNAUTHORIZED = (
    "401 Unauthorized: The server could not verify that you are authorized to access the URL "
    "requested. You either supplied the wrong credentials (e.g. a bad password), or your "
    "browser doesn't understand how to supply the credentials required."
)
NOT_FOUND = "404 Not Found: The requested resource was not found."
DEFAULT_LIMIT = 30
MAX_LIMIT = 100
CALL_LIMIT = 40


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class GorgiasDouble:
    api_key: str | None = None  # None: any Basic credentials are accepted
    users: list[dict[str, Any]] = field(default_factory=list)
    customers: list[dict[str, Any]] = field(default_factory=list)
    tickets: list[dict[str, Any]] = field(default_factory=list)
    tags: dict[str, int] = field(default_factory=dict)  # name -> id
    script: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, str]] = field(default_factory=list)
    down: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))

    def next_id(self) -> int:
        return next(self._ids)

    def reset(self) -> None:
        for listing in (self.users, self.customers, self.tickets, self.script, self.calls):
            listing.clear()
        self.tags.clear()
        self.down = False

    def user(self, email: str) -> dict[str, Any]:
        for user in self.users:
            if user["email"].lower() == email.lower():
                return user
        user = {"id": self.next_id(), "email": email, "name": email.split("@")[0], "role": "agent"}
        self.users.append(user)
        return user

    def customer(self, email: str, name: str | None = None) -> dict[str, Any]:
        for customer in self.customers:
            if customer["email"].lower() == email.lower():
                return customer
        customer_id = self.next_id()
        customer = {
            "id": customer_id,
            "email": email,
            "name": name or email.split("@")[0],
            "firstname": (name or "").split(" ")[0],
            "lastname": " ".join((name or "").split(" ")[1:]),
            "channels": [{"type": "email", "address": email, "preferred": True}],
            "created_datetime": _now(),
            "updated_datetime": _now(),
            "uri": f"/api/customers/{customer_id}/",
        }
        self.customers.append(customer)
        return customer

    def ticket(self, ticket_id: int) -> dict[str, Any] | None:
        return next((t for t in self.tickets if t["id"] == ticket_id), None)

    def tag(self, name: str) -> dict[str, Any]:
        if name not in self.tags:
            self.tags[name] = self.next_id()
        return {"id": self.tags[name], "name": name, "uri": f"/api/tags/{self.tags[name]}/"}

    def seed(self, body: dict[str, Any]) -> dict[str, Any]:
        customer = self.customer(str(body["customer_email"]), body.get("customer_name"))
        ticket_id = self.next_id()
        ticket: dict[str, Any] = {
            "id": ticket_id,
            "uri": f"/api/tickets/{ticket_id}/",
            "external_id": None,
            "language": "en",
            "status": body.get("status", "open"),
            "priority": "normal",
            "channel": "email",
            "via": "email",
            "from_agent": False,
            "customer": {k: customer[k] for k in ("id", "email", "name", "firstname", "lastname")},
            "assignee_user": None,
            "subject": body.get("subject", "Where is my order?"),
            "excerpt": str(body.get("message", ""))[:100],
            "tags": [self.tag(name) for name in body.get("tags", [])],
            "messages_count": 0,
            "messages": [],
            "created_datetime": _now(),
            "updated_datetime": _now(),
            "closed_datetime": _now() if body.get("status") == "closed" else None,
            "snooze_datetime": None,
            "spam": False,
        }
        self.tickets.append(ticket)
        self.add_message(
            ticket,
            {
                "channel": "email",
                "via": "email",
                "from_agent": False,
                "sender": {"email": customer["email"]},
                "body_text": body.get("message", "Hi, where is my order?"),
                "subject": ticket["subject"],
            },
            sender=customer,
        )
        return ticket

    def add_message(
        self, ticket: dict[str, Any], body: dict[str, Any], sender: dict[str, Any]
    ) -> dict[str, Any]:
        message_id = self.next_id()
        internal = body.get("channel") == "internal-note"
        message = {
            "id": message_id,
            "uri": f"/api/tickets/{ticket['id']}/messages/{message_id}/",
            "message_id": None,
            "ticket_id": ticket["id"],
            "external_id": body.get("external_id"),
            "public": not internal,
            "channel": body.get("channel"),
            "via": body.get("via", "api"),
            "source": body.get("source"),
            "sender": {k: sender.get(k) for k in ("id", "email", "name")},
            "receiver": body.get("receiver"),
            "integration_id": None,
            "subject": body.get("subject"),
            "body_text": body.get("body_text"),
            "body_html": body.get("body_html"),
            "stripped_text": body.get("body_text"),
            "from_agent": bool(body.get("from_agent")),
            "attachments": body.get("attachments") or [],
            "created_datetime": _now(),
            "sent_datetime": body.get("sent_datetime") or _now(),
            "failed_datetime": None,
        }
        ticket["messages"].append(message)
        ticket["messages_count"] = len(ticket["messages"])
        ticket["updated_datetime"] = _now()
        return message


class _Answer(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _error(status: int, msg: str, headers: dict[str, str] | None = None) -> _Answer:
    return _Answer(JSONResponse({"error": {"msg": msg}}, status_code=status, headers=headers))


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep and username and password else None


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return int(base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")[2])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _error(400, "Invalid cursor.") from None


def _page(request: Request, items: list[dict[str, Any]]) -> dict[str, Any]:
    try:
        limit = int(request.query_params.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise _error(400, "limit: Not a valid integer.") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise _error(400, f"limit: Must be between 1 and {MAX_LIMIT}.")
    start = _decode_cursor(request.query_params.get("cursor"))
    end = start + limit
    query = request.url.query
    return {
        "data": items[start:end],
        "meta": {
            "prev_cursor": _encode_cursor(max(0, start - limit)) if start else None,
            "next_cursor": _encode_cursor(end) if end < len(items) else None,
        },
        "object": "list",
        "uri": f"{request.url.path}{'?' + query if query else ''}",
    }


def create_gorgias_app(double: GorgiasDouble | None = None) -> FastAPI:
    state = double or GorgiasDouble()
    app = FastAPI(title="trackflow Gorgias double")
    app.state.double = state

    @app.exception_handler(_Answer)
    async def answer(_request: Request, exc: _Answer) -> Response:
        return exc.response

    async def gate(request: Request) -> dict[str, Any]:
        """Scripted failures first, then HTTP Basic; answers the authenticated API user."""
        path = request.url.path
        state.calls.append({"method": request.method, "path": path})
        if state.down:
            raise _error(503, "503 Service Unavailable")
        for index, rule in enumerate(state.script):
            if rule.get("path", "") in path and rule.get("method", request.method).upper() == (
                request.method
            ):
                del state.script[index]
                if rule.get("action") == "stall":  # carried out, then answered late
                    request.state.stall = float(rule.get("seconds", 60))
                    break
                status = int(rule["status"])
                headers = {}
                if status == 429:
                    headers = {
                        "Retry-After": str(rule.get("retry_after", 1)),
                        "X-Gorgias-Account-Api-Call-Limit": f"{CALL_LIMIT}/{CALL_LIMIT}",
                    }
                raise _error(status, rule.get("error", f"{status} scripted"), headers)
        credentials = _basic_credentials(request)
        if credentials is None or (state.api_key is not None and credentials[1] != state.api_key):
            raise _error(401, UNAUTHORIZED)
        request.state.user = state.user(credentials[0])
        return dict(request.state.user)

    api = APIRouter(prefix="/api", dependencies=[Depends(gate)])

    def ticket_or_404(ticket_id: int) -> dict[str, Any]:
        ticket = state.ticket(ticket_id)
        if ticket is None:
            raise _error(404, NOT_FOUND)
        return ticket

    @api.get("/customers")
    async def list_customers(request: Request) -> dict[str, Any]:
        email = request.query_params.get("email")
        found = [c for c in state.customers if email is None or c["email"].lower() == email.lower()]
        return _page(request, found)

    @api.get("/tickets")
    async def list_tickets(request: Request) -> dict[str, Any]:
        customer_id = request.query_params.get("customer_id")
        found = [
            {k: v for k, v in t.items() if k != "messages"}
            for t in state.tickets
            if customer_id is None or str(t["customer"]["id"]) == customer_id
        ]
        return _page(request, list(reversed(found)))  # newest first, like Gorgias

    @api.get("/tickets/{ticket_id}")
    async def get_ticket(ticket_id: int) -> dict[str, Any]:
        return ticket_or_404(ticket_id)

    @api.get("/tickets/{ticket_id}/messages")
    async def list_messages(ticket_id: int, request: Request) -> dict[str, Any]:
        return _page(request, ticket_or_404(ticket_id)["messages"])

    @api.post("/tickets/{ticket_id}/tags", status_code=201)
    async def add_tags(ticket_id: int, request: Request) -> Response:
        ticket = ticket_or_404(ticket_id)
        body = await _json(request)
        names = body.get("names") or []
        ids = body.get("ids") or []
        if not isinstance(names, list) or not isinstance(ids, list) or not (names or ids):
            raise _error(400, "Validation error: provide tag `ids` or `names`.")
        by_id = {tag_id: name for name, tag_id in state.tags.items()}
        wanted = [str(n) for n in names] + [by_id[i] for i in ids if i in by_id]
        have = {t["name"] for t in ticket["tags"]}
        ticket["tags"].extend(state.tag(name) for name in dict.fromkeys(wanted) if name not in have)
        ticket["updated_datetime"] = _now()
        await _stall(request)
        return Response(status_code=201)

    @api.post("/tickets/{ticket_id}/messages", status_code=201)
    async def create_message(ticket_id: int, request: Request) -> dict[str, Any]:
        user: dict[str, Any] = request.state.user
        ticket = ticket_or_404(ticket_id)
        body = await _json(request)
        problems: dict[str, list[str]] = {}
        if not body.get("channel"):
            problems["channel"] = ["Missing data for required field."]
        if not isinstance(body.get("from_agent"), bool):
            problems["from_agent"] = ["Missing data for required field."]
        if not (body.get("body_text") or body.get("body_html")):
            problems["body_text"] = ["A message needs a body_text or a body_html."]
        sender = body.get("sender") or {}
        if body.get("channel") == "internal-note":
            if body.get("from_agent") is not True:
                problems["from_agent"] = ["An internal note is sent by an agent."]
            known = {u["email"].lower() for u in state.users} | {str(u["id"]) for u in state.users}
            if (
                str(sender.get("email", "")).lower() not in known
                and str(sender.get("id", "")) not in known
            ):
                problems["sender"] = ["The sender of an internal note must be a user."]
        if problems:
            return_error = _Answer(
                JSONResponse(
                    {"error": {"msg": "Validation error", "data": problems}}, status_code=400
                )
            )
            raise return_error
        author = (
            next(
                (
                    u
                    for u in state.users
                    if u["email"].lower() == str(sender.get("email", "")).lower()
                    or str(u["id"]) == str(sender.get("id", ""))
                ),
                user,
            )
            if body.get("from_agent")
            else ticket["customer"]
        )
        message = state.add_message(ticket, body, sender=author)
        await _stall(request)
        return message

    app.include_router(api)

    @app.post("/_double/tickets", status_code=201)
    async def seed_ticket(body: dict[str, Any]) -> dict[str, Any]:
        return state.seed(body)

    @app.get("/_double/tickets")
    async def tickets() -> list[dict[str, Any]]:
        return [{**t, "tags": [tag["name"] for tag in t["tags"]]} for t in state.tickets]

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
        raise _error(
            400,
            "400 Bad Request: The browser (or proxy) sent a request that this "
            "server could not understand.",
        ) from None
    if not isinstance(body, dict):
        raise _error(400, "Validation error: a JSON object is expected.")
    return body
