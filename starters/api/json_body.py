"""Request bodies on every route: a size cap, and standard JSON only (no NaN/Infinity),
with bounded nesting."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trackflow.limits import MAX_BODY_BYTES, MAX_JSON_DEPTH


class BodySizeLimit:
    """413 with a reason for a body over the cap: at once when its Content-Length says so
    (nothing is read), else as soon as more than the cap has arrived."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request body is over {MAX_BODY_BYTES} bytes"
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            await JSONResponse({"detail": too_large}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                raise HTTPException(413, too_large)
            return message

        await self.app(scope, counted, send)


def _problem(value: Any) -> tuple[str, str] | None:
    """(path, what is wrong) for the first non-standard or too deeply nested part."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return path or "body", f"{item} is not valid JSON; send a number or null"
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            return path, f"JSON body nested deeper than {MAX_JSON_DEPTH} levels"
        pairs = item.items() if isinstance(item, dict) else enumerate(item)
        for key, child in pairs:
            where = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key
            stack.append((child, where[:200], depth + 1))
    return None


def parse_json(raw: bytes) -> Any:
    """The body as JSON: 422 when it is not standard JSON (NaN and Infinity are not),
    400 when it is nested too deeply."""
    too_deep = HTTPException(400, f"JSON body nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise too_deep from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError alike
        raise HTTPException(422, f"body is not valid JSON: {error}") from None
    if problem := _problem(value):
        path, reason = problem
        if reason.startswith("JSON body nested"):
            raise too_deep
        raise HTTPException(422, f"{path}: {reason}")
    return value


def parse_json_object(raw: bytes) -> dict[str, Any]:
    payload = parse_json(raw)
    if not isinstance(payload, dict):
        raise HTTPException(422, "body must be a JSON object")
    return payload


class _StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_strict_json"):
            self._strict_json = parse_json(await self.body())
        return self._strict_json


class StrictJsonRoute(APIRoute):
    """Routes whose JSON bodies FastAPI parses go through `parse_json` too."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict
