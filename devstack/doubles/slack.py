"""A Slack double speaking the wire format trackflow uses (dev and tests only).

* ``POST /services/{T}/{B}/{secret}`` (incoming webhook): 200 ``ok``; 400 ``invalid_payload``
  when there is neither ``text`` nor ``blocks``; 400 ``invalid_blocks`` when the blocks break
  Block Kit's limits; 429 ``Retry-After`` when scripted
* ``POST /api/chat.postMessage`` (``Authorization: Bearer``): 200 ``{"ok": true, "channel"
  (the channel's ID), "ts", "message"}``; ``{"ok": false, "error": "not_authed" |
  "channel_not_found" | "invalid_blocks" | ...}``; 429 ``{"ok": false, "error":
  "ratelimited"}`` with ``Retry-After`` when scripted. ``channel`` is an ID (``C0ALERTS``,
  ``C0OPS``) or a name (``#ops``, ``ops``), as on Slack.
* ``GET /api/conversations.history?channel=<ID>&oldest=&latest=&inclusive=&limit=&cursor=``
  (scope ``channels:history``; ``groups:history`` for a private channel): the channel's
  messages posted through ``chat.postMessage``, newest first, ``{"ok": true, "messages":
  [{"type": "message", "user", "bot_id", "app_id", "text", "ts", "team", "blocks"}],
  "has_more", "pin_count", "channel_actions_ts", "channel_actions_count"}`` plus
  ``"response_metadata": {"next_cursor"}`` when there are more. Like Slack it wants the
  channel's ID: a name is ``channel_not_found``. ``limit`` defaults to 100 (at most 999);
  ``oldest``/``latest`` are exclusive unless ``inclusive``; a malformed ``oldest`` is
  ``invalid_ts_oldest``, a malformed cursor ``invalid_cursor``.
* ``GET /api/conversations.list?types=&limit=&cursor=`` (scope ``channels:read``;
  ``groups:read`` for private ones): ``{"ok": true, "channels": [{"id", "name",
  "is_channel", "is_private", "is_archived", "is_member", ...}], "response_metadata":
  {"next_cursor": ""}}``
* A token without a method's scope (``SlackDouble.scopes``, every scope when None) is
  answered ``{"ok": false, "error": "missing_scope", "needed", "provided"}``.
* ``POST /_double/script`` ``{status: 429|500|400, count, retry_after, error, path}``: the
  next ``count`` posts (or, with ``path``, requests whose path contains it) misbehave;
  ``{action: "stall", seconds, path}``: the post is carried out and answered only after
  ``seconds`` (a caller killed meanwhile never hears back). ``GET /_double/messages``,
  ``GET /_double/requests`` (every request's path), ``POST /_double/reset``. ``calls``
  counts posts only (webhook and ``chat.postMessage``).

Block Kit is checked as Slack checks it for the blocks trackflow writes (header, section,
context, actions, divider): known types, text lengths (header 150, section 3000, field 2000,
at most 10 fields), at most 50 blocks, buttons with a text of at most 75 and an http(s) URL,
unique action ids. Anything else is ``invalid_blocks``, as on Slack.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

_TEXT_LIMITS = {"header": 150, "section": 3000}
_BLOCK_TYPES = {"header", "section", "context", "actions", "divider", "image", "rich_text"}


def blocks_problem(blocks: Any) -> str | None:
    """Why Slack would refuse these blocks (``invalid_blocks``), or None."""
    if isinstance(blocks, str):  # chat.postMessage as a form: a JSON-encoded array
        try:
            blocks = json.loads(blocks)
        except ValueError:
            return "blocks are not JSON"
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "blocks must be an array of at most 50"
    action_ids: set[str] = set()
    for index, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in _BLOCK_TYPES:
            return f"/{index}/type: unknown block type {kind!r}"
        problem = _block_problem(block, kind, action_ids)
        if problem:
            return f"/{index}: {problem}"
    return None


def _text_problem(text: Any, limit: int, plain_only: bool = False) -> str | None:
    if not isinstance(text, dict) or text.get("type") not in ("plain_text", "mrkdwn"):
        return "text object needs a type of plain_text or mrkdwn"
    if plain_only and text["type"] != "plain_text":
        return "must be plain_text"
    value = text.get("text")
    if not isinstance(value, str) or not value or len(value) > limit:
        return f"text must be 1 to {limit} characters"
    return None


def _block_problem(block: dict[str, Any], kind: str, action_ids: set[str]) -> str | None:
    if kind in _TEXT_LIMITS:
        text = block.get("text")
        fields = block.get("fields")
        if kind == "header" or text is not None:
            problem = _text_problem(text, _TEXT_LIMITS[kind], plain_only=kind == "header")
            if problem:
                return problem
        if fields is not None:
            if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
                return "fields must be 1 to 10"
            for field_ in fields:
                if problem := _text_problem(field_, 2000):
                    return problem
        if kind == "section" and text is None and fields is None:
            return "a section needs text or fields"
    if kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
            return "context needs 1 to 10 elements"
    if kind == "actions":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
            return "actions need 1 to 25 elements"
        for element in elements:
            if not isinstance(element, dict) or element.get("type") != "button":
                continue
            if problem := _text_problem(element.get("text"), 75, plain_only=True):
                return problem
            url = element.get("url")
            if url is not None and (
                not isinstance(url, str)
                or not url.startswith(("http://", "https://"))
                or len(url) > 3000
            ):
                return "button url must be an http(s) URL of at most 3000 characters"
            action_id = element.get("action_id")
            if action_id is not None:
                if action_id in action_ids:
                    return f"duplicate action_id {action_id!r}"
                action_ids.add(action_id)
    return None


BOT_USER = "U0TRACKFLOW"
BOT_ID = "B0TRACKFLOW"
APP_ID = "A0TRACKFLOW"
TEAM = "T0TRACKFLOW"
HISTORY_LIMIT = 100
MAX_HISTORY_LIMIT = 999
MAX_LIST_LIMIT = 1000
_POSTS = ("/api/chat.postMessage", "/services/")


@dataclass
class SlackDouble:
    channels: dict[str, str] = field(
        default_factory=lambda: {"C0ALERTS": "alerts", "C0OPS": "ops"}
    )  # ID -> name
    private: set[str] = field(default_factory=set)  # IDs of private channels
    scopes: set[str] | None = None  # the bot token's scopes; None: every scope
    messages: list[dict[str, Any]] = field(default_factory=list)
    script: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    calls: int = 0
    _ts: itertools.count[int] = field(default_factory=itertools.count)

    def scripted(self, path: str) -> dict[str, Any] | None:
        """The first rule for this request: one naming a part of its path, or (for a post)
        one naming no path. Posts are counted in `calls`."""
        self.requests.append(path)
        is_post = any(p in path for p in _POSTS)
        if is_post:
            self.calls += 1
        for index, rule in enumerate(self.script):
            wanted = rule.get("path")
            if (wanted is None and is_post) or (wanted is not None and wanted in path):
                return self.script.pop(index)
        return None

    def next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def channel_id(self, channel: Any) -> str | None:
        """The ID of a channel given by ID or by name (``#ops`` or ``ops``)."""
        if not isinstance(channel, str):
            return None
        if channel in self.channels:
            return channel
        name = channel.removeprefix("#")
        return next((cid for cid, known in self.channels.items() if known == name), None)

    def missing_scope(self, *needed: str) -> dict[str, Any] | None:
        """Slack's answer when the token has none of `needed` (any one suffices)."""
        if self.scopes is None or any(scope in self.scopes for scope in needed):
            return None
        return {
            "ok": False,
            "error": "missing_scope",
            "needed": needed[0],
            "provided": ",".join(sorted(self.scopes)),
        }


def _refusal(rule: dict[str, Any], default: str) -> tuple[int, str, dict[str, str]]:
    headers = {"Retry-After": str(rule.get("retry_after", 1))}
    return int(rule.get("status", 429)), str(rule.get("error", default)), headers


async def _stall(rule: dict[str, Any] | None) -> None:
    """A scripted stall: the request was carried out, the answer comes late (or never, for a
    caller that is killed or gives up first)."""
    if rule is not None and rule.get("action") == "stall":
        await asyncio.sleep(float(rule.get("seconds", 60)))


def _is_stall(rule: dict[str, Any] | None) -> bool:
    return rule is not None and rule.get("action") == "stall"


def _ts_param(raw: str | None, default: float) -> float | None:
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        return None


def _cursor(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def _before(cursor: str) -> float | None:
    try:
        decoded = base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    prefix, _, ts = decoded.partition(":")
    try:
        return float(ts) if prefix == "next_ts" else None
    except ValueError:
        return None


def _limit(raw: str | None, default: int, most: int) -> int:
    try:
        return min(most, max(1, int(raw))) if raw else default
    except ValueError:
        return default


def create_slack_app(double: SlackDouble | None = None) -> FastAPI:
    state = double or SlackDouble()
    app = FastAPI(title="trackflow Slack double")
    app.state.double = state

    async def web_api_call(
        request: Request,
    ) -> tuple[dict[str, Any], dict[str, Any] | None, Response | None]:
        """A Web API method's arguments and its scripted rule (a stall is carried out by the
        method, after it has done its work), or Slack's answer refusing the call: a scripted
        refusal (429 ratelimited, 5xx...) or a missing token (not_authed, HTTP 200)."""
        rule = state.scripted(request.url.path)
        if rule is not None and not _is_stall(rule):
            status, error, headers = _refusal(rule, "ratelimited")
            answer = {"ok": False, "error": error}
            return {}, rule, JSONResponse(answer, status_code=status, headers=headers)
        args = await arguments(request)
        if not authed(request, args):
            return args, rule, JSONResponse({"ok": False, "error": "not_authed"})
        return args, rule, None

    async def arguments(request: Request) -> dict[str, Any]:
        """A Web API method's arguments: the query string, then a form or JSON body."""
        found: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            if "json" in request.headers.get("content-type", ""):
                body = await request.json()
                found.update(body if isinstance(body, dict) else {})
            else:  # application/x-www-form-urlencoded, as slack_sdk sends a form
                body_text = (await request.body()).decode()
                found.update(dict(parse_qsl(body_text, keep_blank_values=True)))
        return found

    def authed(request: Request, args: dict[str, Any]) -> bool:
        return request.headers.get("authorization", "").startswith("Bearer ") or bool(
            args.get("token")
        )

    @app.post("/services/{team}/{bot}/{secret}")
    async def webhook(team: str, bot: str, secret: str, request: Request) -> Response:
        rule = state.scripted(request.url.path)
        if rule is not None and not _is_stall(rule):
            status, error, headers = _refusal(rule, "rate_limited")
            return PlainTextResponse(error, status_code=status, headers=headers)
        try:
            payload = await request.json()
        except ValueError:
            return PlainTextResponse("invalid_payload", status_code=400)
        if not isinstance(payload, dict) or not (payload.get("text") or payload.get("blocks")):
            return PlainTextResponse("invalid_payload", status_code=400)
        if payload.get("blocks") is not None and blocks_problem(payload["blocks"]):
            return PlainTextResponse("invalid_blocks", status_code=400)
        state.messages.append({"via": "webhook", "hook": f"{team}/{bot}", **payload})
        await _stall(rule)
        return PlainTextResponse("ok")

    @app.post("/api/chat.postMessage")
    async def post_message(request: Request) -> Response:
        payload, rule, refused = await web_api_call(request)
        if refused is not None:
            return refused
        channel = state.channel_id(payload.get("channel"))
        if channel is None:
            return JSONResponse({"ok": False, "error": "channel_not_found"})
        if not (payload.get("text") or payload.get("blocks")):
            return JSONResponse({"ok": False, "error": "no_text"})
        if payload.get("blocks") is not None and (problem := blocks_problem(payload["blocks"])):
            return JSONResponse({"ok": False, "error": "invalid_blocks", "errors": [problem]})
        ts = state.next_ts()
        state.messages.append({"via": "chat.postMessage", "ts": ts, **payload})
        await _stall(rule)
        return JSONResponse({"ok": True, "channel": channel, "ts": ts, "message": payload})

    def as_history(message: dict[str, Any]) -> dict[str, Any]:
        """A posted message as conversations.history lists it."""
        blocks = message.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        listed: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "text": message.get("text", ""),
            "ts": message["ts"],
            "team": TEAM,
        }
        if blocks:
            listed["blocks"] = blocks
        return listed

    @app.api_route("/api/conversations.history", methods=["GET", "POST"])
    async def history(request: Request) -> Response:
        args, rule, refused = await web_api_call(request)
        if refused is not None:
            return refused
        channel = args.get("channel")
        if not channel:
            return JSONResponse({"ok": False, "error": "invalid_arguments"})
        if channel not in state.channels:  # an ID, as Slack wants: a name is not found
            return JSONResponse({"ok": False, "error": "channel_not_found"})
        scope = "groups:history" if channel in state.private else "channels:history"
        if (lacking := state.missing_scope(scope)) is not None:
            return JSONResponse(lacking)
        oldest = _ts_param(args.get("oldest"), 0.0)
        if oldest is None:
            return JSONResponse({"ok": False, "error": "invalid_ts_oldest"})
        latest = _ts_param(args.get("latest"), float("inf"))
        if latest is None:
            return JSONResponse({"ok": False, "error": "invalid_ts_latest"})
        if args.get("cursor"):
            before = _before(str(args["cursor"]))
            if before is None:
                return JSONResponse({"ok": False, "error": "invalid_cursor"})
            latest, inclusive = min(latest, before), False
        else:
            inclusive = str(args.get("inclusive", "")).lower() in ("1", "true")
        limit = _limit(args.get("limit"), HISTORY_LIMIT, MAX_HISTORY_LIMIT)

        def within(ts: float) -> bool:
            if inclusive:
                return oldest <= ts <= latest
            return oldest < ts < latest

        found = sorted(
            (
                m
                for m in state.messages
                if m.get("via") == "chat.postMessage"
                and state.channel_id(m.get("channel")) == channel
                and within(float(m["ts"]))
            ),
            key=lambda m: float(m["ts"]),
            reverse=True,
        )
        page = found[:limit]
        has_more = len(found) > limit
        answer: dict[str, Any] = {
            "ok": True,
            "messages": [as_history(m) for m in page],
            "has_more": has_more,
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
        }
        if has_more:
            answer["response_metadata"] = {"next_cursor": _cursor(page[-1]["ts"])}
        await _stall(rule)
        return JSONResponse(answer)

    @app.api_route("/api/conversations.list", methods=["GET", "POST"])
    async def list_channels(request: Request) -> Response:
        args, rule, refused = await web_api_call(request)
        if refused is not None:
            return refused
        types = set(str(args.get("types") or "public_channel").split(","))
        wanted: list[tuple[str, str]] = []
        for channel_id, name in sorted(state.channels.items()):
            private = channel_id in state.private
            if ("private_channel" if private else "public_channel") in types:
                wanted.append((channel_id, name))
        needed = ["channels:read"] if "public_channel" in types else []
        needed += ["groups:read"] if "private_channel" in types else []
        for scope in needed:
            if (lacking := state.missing_scope(scope)) is not None:
                return JSONResponse(lacking)
        start = 0
        if args.get("cursor"):
            try:
                start = int(base64.b64decode(str(args["cursor"])).decode().partition(":")[2])
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return JSONResponse({"ok": False, "error": "invalid_cursor"})
        limit = _limit(args.get("limit"), 100, MAX_LIST_LIMIT)
        page = wanted[start : start + limit]
        more = start + limit < len(wanted)
        channels = [
            {
                "id": channel_id,
                "name": name,
                "name_normalized": name,
                "is_channel": channel_id not in state.private,
                "is_group": False,
                "is_im": False,
                "is_private": channel_id in state.private,
                "is_archived": False,
                "is_general": False,
                "is_member": True,
                "created": 1700000000,
                "creator": "U0ADMIN",
            }
            for channel_id, name in page
        ]
        cursor = base64.b64encode(f"offset:{start + limit}".encode()).decode() if more else ""
        await _stall(rule)
        return JSONResponse(
            {"ok": True, "channels": channels, "response_metadata": {"next_cursor": cursor}}
        )

    @app.post("/_double/script")
    async def script(rule: dict[str, Any]) -> dict[str, Any]:
        state.script.extend([rule] * int(rule.get("count", 1)))
        return {"scripted": len(state.script)}

    @app.get("/_double/messages")
    async def messages() -> list[dict[str, Any]]:
        return state.messages

    @app.get("/_double/requests")
    async def requests() -> list[str]:
        return state.requests

    @app.post("/_double/reset")
    async def reset() -> dict[str, bool]:
        state.messages.clear()
        state.script.clear()
        state.requests.clear()
        return {"ok": True}

    return app
