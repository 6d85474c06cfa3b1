"""A Slack double speaking the wire format trackflow uses (dev and tests only).

* ``POST /services/{T}/{B}/{secret}`` (incoming webhook): 200 ``ok``; 400 ``invalid_payload``
  when there is neither ``text`` nor ``blocks``; 429 ``Retry-After`` when scripted
* ``POST /api/chat.postMessage`` (``Authorization: Bearer``): 200 ``{"ok": true, "channel",
  "ts", "message"}``; ``{"ok": false, "error": "not_authed" | "channel_not_found" | ...}``;
  429 ``{"ok": false, "error": "ratelimited"}`` with ``Retry-After`` when scripted
* ``POST /_double/script`` ``{status: 429|500|400, count, retry_after, error}``: the next
  ``count`` posts misbehave; ``GET /_double/messages``; ``POST /_double/reset``
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse


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
