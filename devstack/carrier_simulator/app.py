"""The simulator's HTTP face: EasyPost's Tracker API subset plus ``/simulator/*`` controls.

EasyPost (``/v2``, HTTP Basic with the API key as username, EasyPost error bodies):

* ``POST /v2/trackers`` ``{"tracker": {"tracking_code", "carrier"}}`` -> the Tracker (the same
  code + carrier again -> the same tracker)
* ``GET /v2/trackers/{id}`` -> the Tracker now; ``GET /v2/trackers?tracking_codes[]=..`` (or
  ``tracking_code=``, ``carrier=``) -> ``{"trackers": [...], "has_more": false}``

Test controls (not EasyPost, no auth, no rate limit, not affected by outages):

* ``POST /simulator/scenarios`` ``{"tracking_code", "scenario"}``; ``GET /simulator/scenarios``
* ``POST /simulator/outage`` ``{"seconds": N, "mode": "5xx"|"timeout"}`` (0 ends it)
* ``GET /simulator/webhooks`` -> delivery log, queued and dropped webhooks
* ``POST /simulator/tick`` -> send due webhooks now
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from devstack.carrier_simulator.engine import OUTAGE_MODES, ApiError, Simulator
from devstack.carrier_simulator.scenarios import DEFAULT_SCENARIO, SCENARIOS

log = logging.getLogger("trackflow.simulator")

TICK_INTERVAL = 0.2


def _basic_username(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    username, _, _ = decoded.partition(":")
    return username or None


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "BAD_REQUEST", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "BAD_REQUEST", "The request body must be a JSON object.")
    return body


def _required_text(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApiError(
            422,
            "PARAMETER.REQUIRED",
            f"Missing required parameter: {field}.",
            [{"field": field, "message": "cannot be blank"}],
        )
    return value.strip()


def create_simulator_app(
    *,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    time_scale: float = 1.0,
    clock: Callable[[], float] | None = None,
    http_client: httpx.AsyncClient | None = None,
    api_key: str | None = None,
    rate_limit_rps: float | None = None,
    default_scenario: str = DEFAULT_SCENARIO,
    outage_hang_seconds: float = 30.0,
    max_webhook_attempts: int = 5,
    retry_backoff: float = 1.0,
    simulator: Simulator | None = None,
) -> FastAPI:
    """The simulator app; its :class:`Simulator` is ``app.state.simulator``.

    The webhook loop (``tick`` every 0.2 s) runs in the app's lifespan, so it only runs under
    a server (uvicorn) -- in-process tests call ``await simulator.tick()`` themselves.
    """
    sim = simulator or Simulator(
        time_scale=time_scale,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        http_client=http_client,
        api_key=api_key,
        rate_limit_rps=rate_limit_rps,
        default_scenario=default_scenario,
        outage_hang_seconds=outage_hang_seconds,
        max_webhook_attempts=max_webhook_attempts,
        retry_backoff=retry_backoff,
        clock=clock or time.monotonic,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                try:
                    await sim.tick()
                except Exception:  # keep delivering whatever one tick hit
                    log.exception("webhook tick failed")
                await asyncio.sleep(TICK_INTERVAL)

        owned = sim.http_client is None
        if owned:
            sim.http_client = httpx.AsyncClient(timeout=sim.webhook_timeout)
        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if owned and sim.http_client is not None:
                await sim.http_client.aclose()
                sim.http_client = None

    app = FastAPI(title="trackflow carrier simulator (EasyPost Tracker API)", lifespan=lifespan)
    app.state.simulator = sim

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    async def easypost_guard(request: Request) -> None:
        """Outage, then auth, then the rate limit -- for every /v2 route."""
        mode = sim.outage()
        if mode == "timeout":
            await asyncio.sleep(sim.outage_hang_seconds)
        if mode is not None:
            raise sim.unavailable()
        sim.authenticate(_basic_username(request.headers.get("authorization")))
        sim.check_rate_limit()

    guarded = [Depends(easypost_guard)]

    @app.post("/v2/trackers", dependencies=guarded)
    async def create_tracker(request: Request) -> JSONResponse:
        body = await _json_object(request)
        params = body.get("tracker")
        if not isinstance(params, dict):
            raise ApiError(
                422,
                "PARAMETER.REQUIRED",
                "Missing required parameter: tracker.",
                [{"field": "tracker", "message": "cannot be blank"}],
            )
        code = _required_text(params.get("tracking_code"), "tracking_code")
        carrier_value = params.get("carrier")
        carrier = carrier_value.strip() if isinstance(carrier_value, str) else ""
        record, _created = sim.create_tracker(code, carrier or "USPS")
        return JSONResponse(sim.tracker_json(record))

    @app.get("/v2/trackers/{tracker_id}", dependencies=guarded)
    async def get_tracker(tracker_id: str) -> JSONResponse:
        record = sim.get(tracker_id)
        if sim.tracker_in_outage(record):
            raise sim.unavailable()
        return JSONResponse(sim.tracker_json(record))

    @app.get("/v2/trackers", dependencies=guarded)
    async def list_trackers(request: Request) -> JSONResponse:
        query = request.query_params
        codes = [*query.getlist("tracking_codes[]"), *query.getlist("tracking_code")]
        records = sim.find(codes, query.get("carrier"))
        if any(sim.tracker_in_outage(record) for record in records):
            raise sim.unavailable()
        return JSONResponse(
            {"trackers": [sim.tracker_json(record) for record in records], "has_more": False}
        )

    @app.get("/simulator/scenarios")
    async def list_scenarios() -> JSONResponse:
        return JSONResponse(
            {
                "default": sim.default_scenario,
                "time_scale": sim.time_scale,
                "assignments": sim.assignments,
                "scenarios": {
                    name: {
                        "description": scenario.description,
                        "steps": [
                            {
                                "hours": step.hours,
                                "status": step.status,
                                "status_detail": step.status_detail,
                                "message": step.message,
                            }
                            for step in scenario.steps
                        ],
                        "outage_hours": scenario.outage,
                    }
                    for name, scenario in SCENARIOS.items()
                },
            }
        )

    @app.post("/simulator/scenarios")
    async def assign_scenario(request: Request) -> JSONResponse:
        body = await _json_object(request)
        code = _required_text(body.get("tracking_code"), "tracking_code")
        scenario = _required_text(body.get("scenario"), "scenario")
        sim.assign_scenario(code, scenario)
        return JSONResponse({"tracking_code": code, "scenario": scenario})

    @app.post("/simulator/outage")
    async def start_outage(request: Request) -> JSONResponse:
        body = await _json_object(request)
        seconds = body.get("seconds")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            raise ApiError(
                422,
                "PARAMETER.INVALID",
                "seconds must be a non-negative number",
                [{"field": "seconds", "message": "must be a non-negative number"}],
            )
        mode = body.get("mode", "5xx")
        if mode not in OUTAGE_MODES:
            raise ApiError(422, "PARAMETER.INVALID", f"mode must be one of {OUTAGE_MODES}")
        sim.start_outage(float(seconds), str(mode))
        return JSONResponse({"mode": sim.outage(), "remaining_seconds": sim.outage_remaining()})

    @app.get("/simulator/webhooks")
    async def webhook_log() -> JSONResponse:
        return JSONResponse(
            {
                "webhook_url": sim.webhook_url,
                "deliveries": [dataclasses.asdict(entry) for entry in sim.deliveries],
                "queued": [
                    {"event_id": item.event_id, "attempts": item.attempts} for item in sim.outbox
                ],
                "dropped": [
                    {"event_id": item.event_id, "attempts": item.attempts} for item in sim.dropped
                ],
            }
        )

    @app.post("/simulator/tick")
    async def tick() -> JSONResponse:
        return JSONResponse({"delivered": await sim.tick()})

    return app


def run_simulator(
    host: str,
    port: int,
    *,
    webhook_url: str | None,
    webhook_secret: str | None,
    time_scale: float,
) -> None:
    """Serve the simulator (blocks until interrupted)."""
    import uvicorn

    app = create_simulator_app(
        webhook_url=webhook_url, webhook_secret=webhook_secret, time_scale=time_scale
    )
    log.info(
        "carrier simulator on http://%s:%d (EasyPost API at /v2, time_scale %g, webhooks -> %s)",
        host,
        port,
        time_scale,
        webhook_url or "off",
    )
    uvicorn.run(app, host=host, port=port, log_level="info")
