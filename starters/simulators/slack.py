"""A Slack double speaking the wire format trackflow uses (dev and tests only).

* ``POST /services/{T}/{B}/{secret}`` (incoming webhook): 200 ``ok``; 400 ``invalid_payload``
  when there is neither ``text`` nor ``blocks``; 400 ``invalid_blocks`` when the blocks break
  Block Kit's limits; 429 ``Retry-After`` when scripted
* ``POST /api/chat.postMessage`` (``Authorization: Bearer``): 200 ``{"ok": true, "channel",
  "ts", "message"}``; ``{"ok": false, "error": "not_authed" | "channel_not_found" |
  "invalid_blocks" | ...}``;
  429 ``{"ok": false, "error": "ratelimited"}`` with ``Retry-After`` when scripted
* ``POST /_double/script`` ``{status: 429|500|400, count, retry_after, error}``: the next
  ``count`` posts misbehave; ``GET /_double/messages``; ``POST /_double/reset``

Block Kit is checked as Slack checks it for the blocks trackflow writes (header, section,
context, actions, divider): known types, text lengths (header 150, section 3000, field 2000,
at most 10 fields), at most 50 blocks, buttons with a text of at most 75 and an http(s) URL,
unique action ids. Anything else is ``invalid_blocks``, as on Slack.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class SlackDouble:
    channels: set[str] = field(default_factory=lambda: {"C0ALERTS", "#ops"})
    messages: list[dict[str, Any]] = field(default_factory=list)
    script: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0
    _ts: itertools.count[int] = field(default_factory=itertools.count)

    def scripted(self) -> dict[str, Any] | None:
        self.calls += 1
        return self.script.pop(0) if self.script else None

    def next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"


def create_slack_app(double: SlackDouble | None = None) -> FastAPI:
    state = double or SlackDouble()
    app = FastAPI(title="trackflow Slack double")
    app.state.double = state

    @app.post("/services/{team}/{bot}/{secret}")
    async def webhook(team: str, bot: str, secret: str, request: Request) -> Response:
        rule = state.scripted()
        if rule is not None:
            headers = {"Retry-After": str(rule.get("retry_after", 1))}
            return PlainTextResponse(
                rule.get("error", "rate_limited"), status_code=rule["status"], headers=headers
            )
        try:
            payload = await request.json()
        except ValueError:
            return PlainTextResponse("invalid_payload", status_code=400)
        if not isinstance(payload, dict) or not (payload.get("text") or payload.get("blocks")):
            return PlainTextResponse("invalid_payload", status_code=400)
        if payload.get("blocks") is not None and blocks_problem(payload["blocks"]):
            return PlainTextResponse("invalid_blocks", status_code=400)
        state.messages.append({"via": "webhook", "hook": f"{team}/{bot}", **payload})
        return PlainTextResponse("ok")

    @app.post("/api/chat.postMessage")
    async def post_message(request: Request) -> Response:
        rule = state.scripted()
        if rule is not None:
            headers = {"Retry-After": str(rule.get("retry_after", 1))}
            error = rule.get("error", "ratelimited")
            return JSONResponse(
                {"ok": False, "error": error}, status_code=rule["status"], headers=headers
            )
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return JSONResponse({"ok": False, "error": "not_authed"})
        if "json" in request.headers.get("content-type", ""):
            payload = await request.json()
        else:
            payload = dict(await request.form())
        channel = payload.get("channel")
        if channel not in state.channels:
            return JSONResponse({"ok": False, "error": "channel_not_found"})
        if not (payload.get("text") or payload.get("blocks")):
            return JSONResponse({"ok": False, "error": "no_text"})
        if payload.get("blocks") is not None and (problem := blocks_problem(payload["blocks"])):
            return JSONResponse({"ok": False, "error": "invalid_blocks", "errors": [problem]})
        ts = state.next_ts()
        state.messages.append({"via": "chat.postMessage", "ts": ts, **payload})
        return JSONResponse({"ok": True, "channel": channel, "ts": ts, "message": payload})

    @app.post("/_double/script")
    async def script(rule: dict[str, Any]) -> dict[str, Any]:
        state.script.extend([rule] * int(rule.get("count", 1)))
        return {"scripted": len(state.script)}

    @app.get("/_double/messages")
    async def messages() -> list[dict[str, Any]]:
        return state.messages

    @app.post("/_double/reset")
    async def reset() -> dict[str, bool]:
        state.messages.clear()
        state.script.clear()
        return {"ok": True}

    return app
