"""Error answers: bounded (never an echo of unbounded input), and 4xx for what a retry
cannot fix, 503 only for what it can."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from temporalio.service import RPCError, RPCStatusCode

from starters.api import pages
from starters.api.dependencies import TemporalUnavailable
from starters.shipments import AnotherOrder, NoWorkerAnswered, ShipmentNotFound
from storage import LedgerUnavailable
from trackflow.models import InvalidTrackingNumber
from trackflow.page import unavailable_page

log = logging.getLogger(__name__)

MAX_DETAIL_CHARS = 300
MAX_ERRORS = 20
RETRY_AFTER_S = "10"
LEDGER_UNAVAILABLE = "the ledger database is unavailable; try again shortly"
# The shopper's pages (tracking page, unsubscribe link): HTML whatever the client accepts.
_PAGE_PREFIXES = ("/t/", "/u/")

_PERMANENT = {
    RPCStatusCode.INVALID_ARGUMENT,
    RPCStatusCode.FAILED_PRECONDITION,
    RPCStatusCode.OUT_OF_RANGE,
}
_RETRYABLE = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
}


def status_for_temporal_error(error: RPCError) -> int:
    """422 for a request Temporal refuses as such, 503 (retry) when Temporal is unavailable
    or busy, 502 for anything else: never 503 for what a retry cannot fix."""
    if error.status in _PERMANENT:
        return 422
    if error.status in _RETRYABLE:
        return 503
    if error.status == RPCStatusCode.NOT_FOUND:
        return 404
    return 502


def bounded(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more chars)"


def _error_view(error: Any) -> dict[str, Any]:
    location = [part if isinstance(part, int) else bounded(str(part), 100) for part in error["loc"]]
    return {"loc": location[:12], "msg": bounded(str(error["msg"])), "type": str(error["type"])}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        errors = [_error_view(e) for e in error.errors()[:MAX_ERRORS]]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, error: HTTPException) -> JSONResponse:
        detail = bounded(error.detail) if isinstance(error.detail, str) else error.detail
        return JSONResponse(
            {"detail": detail}, status_code=error.status_code, headers=error.headers
        )

    @app.exception_handler(RPCError)
    async def _temporal(_: Request, error: RPCError) -> JSONResponse:
        status = status_for_temporal_error(error)
        headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
        detail = f"Temporal refused the call: {bounded(error.message)}"
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)

    @app.exception_handler(TemporalUnavailable)
    async def _temporal_down(_: Request, error: TemporalUnavailable) -> JSONResponse:
        headers = {"Retry-After": RETRY_AFTER_S}
        return JSONResponse({"detail": str(error)}, status_code=503, headers=headers)

    @app.exception_handler(LedgerUnavailable)
    async def _ledger_down(request: Request, error: LedgerUnavailable) -> Response:
        log.warning("%s %s: %s", request.method, request.url.path, error)
        headers = {"Retry-After": RETRY_AFTER_S}
        if request.url.path.startswith(_PAGE_PREFIXES):
            return HTMLResponse(unavailable_page(), 503, headers=pages.HEADERS | headers)
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(
                unavailable_page(), 503, headers={"Cache-Control": "no-store"} | headers
            )
        return JSONResponse({"detail": LEDGER_UNAVAILABLE}, status_code=503, headers=headers)

    @app.exception_handler(InvalidTrackingNumber)
    async def _bad_number(_: Request, error: InvalidTrackingNumber) -> JSONResponse:
        return JSONResponse({"detail": f"tracking_number: {error}"}, status_code=422)

    @app.exception_handler(ShipmentNotFound)
    async def _not_found(_: Request, error: ShipmentNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(AnotherOrder)
    async def _another_order(_: Request, error: AnotherOrder) -> JSONResponse:
        return JSONResponse({"detail": bounded(str(error))}, status_code=409)

    @app.exception_handler(NoWorkerAnswered)
    async def _no_worker(_: Request, error: NoWorkerAnswered) -> JSONResponse:
        headers = {"Retry-After": RETRY_AFTER_S}
        return JSONResponse({"detail": bounded(str(error))}, status_code=503, headers=headers)
