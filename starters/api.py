"""The HTTP service: Shopify webhooks and the plain JSON API, answered 2xx only once durable."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib.resources import files
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from temporalio.client import Client
from temporalio.service import RPCError

from starters.api_errors import install_error_handlers
from starters.api_models import CarrierEventIn, ShipmentIn
from starters.json_body import BodySizeLimit, StrictJsonRoute, parse_json_object
from starters.shipments import (
    ShipmentClosed,
    ShipmentNotFound,
    cancel_shipment,
    register_shipment,
    request_return,
    running_shipments_of_order,
    shipment_view,
    signal_event,
    signal_or_keep_event,
)
from trackflow.event_time import implausible_time
from trackflow.models import CarrierEvent, InvalidTrackingNumber, ReturnRequest, Shipment
from trackflow.settings import Settings
from trackflow.shipment_state import ShipmentDocument
from trackflow.sources import aftership, easypost, shipengine
from trackflow.sources.shopify import (
    RETURN_TOPICS,
    FulfillmentInput,
    parse_fulfillment,
    parse_return_request,
    verify_hmac,
)
from trackflow.sources.signatures import verify_aftership, verify_easypost, verify_shipengine
from trackflow.tracking_policy import TrackingPolicy
from workers.policy_file import load_policy

ClientFactory = Callable[[], Awaitable[Client]]
logger = logging.getLogger("trackflow.api")
SHOPIFY_FULFILLMENT_TOPICS = {"fulfillments/create", "fulfillments/update"}
MAX_WEBHOOK_ID = 200
# Swagger UI and ReDoc served from the fastapi-offline package: /docs works offline.
DOCS_ASSETS = str(files("fastapi_offline") / "static")
DOCS_ASSETS_URL = "/docs-assets"
BEARER = HTTPBearer(
    scheme_name="bearerAuth",
    description="TRACKFLOW_API_TOKEN; `trackflow up` keeps one in its data dir (`api_token`)",
    auto_error=False,  # its own error is a 403; ours stays 401 (and 503 when unconfigured)
)


class ReturnRequestBody(BaseModel):
    """`POST /v1/shipments/{n}/return-requests`; without `request_id`, retries of the same
    body are recognised by its content."""

    kind: Literal["refund", "return"] = "return"
    request_id: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, max_length=1000)

    def to_request(self) -> ReturnRequest:
        digest = hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]
        return ReturnRequest(
            request_id=self.request_id or f"api-{digest}", kind=self.kind, reason=self.reason
        )


class TemporalUnavailable(RuntimeError):
    pass


class TemporalGateway:
    """Connects lazily and reconnects after failures, so the service starts before Temporal."""

    def __init__(self, connect: ClientFactory) -> None:
        self._connect = connect
        self._client: Client | None = None

    async def client(self) -> Client:
        if self._client is None:
            try:
                self._client = await self._connect()
            except Exception as error:  # the SDK raises RuntimeError on a refused connection
                raise TemporalUnavailable(f"Temporal is unreachable: {error}") from error
        return self._client

    async def healthy(self) -> bool:
        try:
            client = await self.client()
            return await client.service_client.check_health()
        except (TemporalUnavailable, RPCError):
            return False


def _configured(value: str | None, name: str) -> str:
    if not value:
        raise HTTPException(503, f"TRACKFLOW_{name} is not configured")
    return value


def _parsed(
    parse: Callable[[dict[str, Any]], list[CarrierEvent]], payload: dict[str, Any]
) -> list[CarrierEvent]:
    try:
        return parse(payload)
    except ValueError as error:
        raise HTTPException(422, f"webhook payload rejected: {error}") from error


async def _temporal_client(request: Request) -> Client:
    gateway: TemporalGateway = request.app.state.gateway
    return await gateway.client()


TemporalClient = Annotated[Client, Depends(_temporal_client)]


def _add_docs(app: FastAPI) -> None:
    """FastAPI's "self-hosting JavaScript and CSS for docs" pattern (behind a proxy's root
    path too, as FastAPI's own docs routes)."""
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        assets = root(request) + DOCS_ASSETS_URL
        return get_swagger_ui_html(
            openapi_url=root(request) + openapi_url,
            title=f"{app.title} - API docs",
            oauth2_redirect_url=oauth2_redirect and root(request) + oauth2_redirect,
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    if oauth2_redirect:

        @app.get(oauth2_redirect, include_in_schema=False)
        async def swagger_ui_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        assets = root(request) + DOCS_ASSETS_URL
        return get_redoc_html(
            openapi_url=root(request) + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{assets}/favicon.png",
            with_google_fonts=False,
        )


def create_app(
    settings: Settings,
    connect: ClientFactory,
    policy: TrackingPolicy | None = None,
) -> FastAPI:
    """`policy`: what new shipments are tracked with (default: `load_policy(settings)`)."""
    gateway = TemporalGateway(connect)
    policy = policy or load_policy(settings)
    web_ui_url = settings.temporal_ui_url  # linked from `GET /` when known

    app = FastAPI(
        title="trackflow",
        summary="Proactive order tracking: shipments in, carrier events in, messages out.",
        docs_url=None,
        redoc_url=None,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    app.router.route_class = StrictJsonRoute
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    _add_docs(app)
    app.add_middleware(BodySizeLimit)
    app.state.gateway = gateway
    install_error_handlers(app)

    @app.exception_handler(TemporalUnavailable)
    async def _temporal_down(_: Request, error: TemporalUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": "10"})

    @app.exception_handler(InvalidTrackingNumber)
    async def _bad_number(_: Request, error: InvalidTrackingNumber) -> JSONResponse:
        return JSONResponse({"detail": f"tracking_number: {error}"}, status_code=422)

    @app.exception_handler(ShipmentNotFound)
    async def _not_found(_: Request, error: ShipmentNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    def bearer(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> None:
        if not settings.api_token:
            raise HTTPException(503, "TRACKFLOW_API_TOKEN is not configured")
        token = credentials.credentials.encode() if credentials else b""
        if not hmac.compare_digest(token, settings.api_token.encode()):
            raise HTTPException(
                401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    Authorized = Depends(bearer)

    @app.get("/", response_model=None, summary="Where to go from here")
    async def index(request: Request) -> Response:
        """Links to the API docs, the health check and (when known) the Temporal Web UI; an
        HTML page for a browser, JSON otherwise."""
        links = {"docs": "/docs", "redoc": "/redoc", "openapi": "/openapi.json"}
        links |= {"health": "/healthz"}
        if web_ui_url:
            links["temporal_web_ui"] = web_ui_url
        if "text/html" not in request.headers.get("accept", ""):
            return JSONResponse({"service": "trackflow", "links": links})
        items = "".join(
            f'<li><a href="{html.escape(url)}">{html.escape(name)}</a></li>'
            for name, url in links.items()
        )
        return HTMLResponse(
            "<!doctype html><html><head><title>trackflow</title></head><body>"
            f"<h1>trackflow</h1><ul>{items}</ul></body></html>"
        )

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        if await gateway.healthy():
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "temporal unreachable"}, status_code=503)

    @app.post("/v1/shipments", status_code=202, dependencies=[Authorized])
    async def create_shipment(body: ShipmentIn, client: TemporalClient) -> dict[str, Any]:
        shipment = _with_defaults(body)
        own_policy = _policy_for(body.time_scale)
        try:
            await register_shipment(client, shipment, own_policy, task_queue=settings.task_queue)
        except ShipmentClosed as closed:
            return {"ignored": str(closed), "tracking_number": shipment.tracking_number}
        return {"workflow_id": shipment.workflow_id, "tracking_number": shipment.tracking_number}

    @app.post("/v1/events", status_code=202, dependencies=[Authorized])
    async def carrier_event(event: CarrierEventIn, client: TemporalClient) -> dict[str, Any]:
        await signal_event(client, event)
        return {"accepted": True, "tracking_number": event.tracking_number}

    @app.post(
        "/v1/shipments/{tracking_number}/return-requests",
        status_code=202,
        dependencies=[Authorized],
    )
    async def return_request(
        tracking_number: str, body: ReturnRequestBody, client: TemporalClient
    ) -> dict[str, Any]:
        request = body.to_request()
        try:
            await request_return(client, tracking_number, request)
        except ShipmentClosed as closed:
            return {"ignored": str(closed), "request_id": request.request_id}
        return {"accepted": True, "request_id": request.request_id}

    @app.get(
        "/v1/shipments/{tracking_number}",
        dependencies=[Authorized],
        response_model=ShipmentDocument,
    )
    async def get_shipment(tracking_number: str, client: TemporalClient) -> ShipmentDocument:
        return (await shipment_view(client, tracking_number)).public()

    @app.post("/webhooks/easypost")
    async def easypost_webhook(
        request: Request, x_hmac_signature: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        secret = _configured(settings.easypost_webhook_secret, "EASYPOST_WEBHOOK_SECRET")
        raw = await request.body()
        if not verify_easypost(raw, x_hmac_signature, secret):
            raise HTTPException(401, "X-Hmac-Signature is missing or does not match the body")
        payload = parse_json_object(raw)
        if not str(payload.get("description", "")).startswith("tracker."):
            return {"ignored": f"event {payload.get('description')!r} is not about a tracker"}
        return await _carrier_events(_parsed(easypost.parse_webhook, payload))

    @app.post("/webhooks/aftership")
    async def aftership_webhook(
        request: Request, aftership_hmac_sha256: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        secret = _configured(settings.aftership_webhook_secret, "AFTERSHIP_WEBHOOK_SECRET")
        raw = await request.body()
        if not verify_aftership(raw, aftership_hmac_sha256, secret):
            raise HTTPException(401, "aftership-hmac-sha256 is missing or does not match the body")
        return await _carrier_events(_parsed(aftership.parse_webhook, parse_json_object(raw)))

    @app.post("/webhooks/shipengine")
    async def shipengine_webhook(
        request: Request,
        x_shipengine_rsa_sha256_signature: Annotated[str | None, Header()] = None,
        x_shipengine_rsa_sha256_key_id: Annotated[str | None, Header()] = None,
        x_shipengine_timestamp: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        keys = _configured(settings.shipengine_webhook_keys, "SHIPENGINE_WEBHOOK_KEYS")
        headers = (
            x_shipengine_rsa_sha256_signature,
            x_shipengine_rsa_sha256_key_id,
            x_shipengine_timestamp,
        )
        if not all(headers):
            # ShipStation's guidance: answer 404 to a request without the signature headers.
            raise HTTPException(404, "x-shipengine-* signature headers are missing")
        raw = await request.body()
        signed = verify_shipengine(
            raw,
            signature=x_shipengine_rsa_sha256_signature,
            key_id=x_shipengine_rsa_sha256_key_id,
            timestamp=x_shipengine_timestamp,
            keys=json.loads(keys) if keys.lstrip().startswith("{") else keys,
        )
        if not signed:
            raise HTTPException(401, "ShipEngine signature is stale or does not match the body")
        return await _carrier_events(_parsed(shipengine.parse_webhook, parse_json_object(raw)))

    def _with_defaults(shipment: Shipment) -> Shipment:
        if shipment.poll_via is None and settings.default_poll_via in ("easypost", "shipengine"):
            return shipment.model_copy(update={"poll_via": settings.default_poll_via})
        return shipment

    def _policy_for(time_scale: float | None) -> TrackingPolicy:
        """A shipment that asks for its own time scale gets it instead of the setting's; it
        is fixed when the workflow starts (a later update does not change it)."""
        return policy if time_scale is None else policy.at_time_scale(time_scale)

    def _plausible(
        events: list[CarrierEvent],
    ) -> tuple[list[CarrierEvent], list[dict[str, str]]]:
        """Events with a believable time, and why the others were left out."""
        now = datetime.now(UTC)
        kept, rejected = [], []
        for event in events:
            if reason := implausible_time(event.occurred_at, now):
                logger.warning("event %s left out: %s", event.dedupe_key, reason)
                rejected.append({"event": event.event_id or event.dedupe_key, "reason": reason})
            else:
                kept.append(event)
        return kept, rejected

    async def _carrier_events(events: list[CarrierEvent]) -> dict[str, Any]:
        events, rejected = _plausible(events)
        client = await gateway.client()
        matched = 0
        for event in events:
            matched += await signal_or_keep_event(client, event, task_queue=settings.task_queue)
        unrecognised = [f"{e.source}:{e.raw_code}" for e in events if not e.recognised]
        if unrecognised:
            logger.warning("unrecognised carrier codes kept as exception/unknown: %s", unrecognised)
        return {
            "events": len(events),
            "matched": matched,
            "kept_for_later": len(events) - matched,
            "unrecognised_codes": unrecognised,
            "rejected": rejected,
        }

    @app.post("/webhooks/shopify")
    async def shopify_webhook(
        request: Request,
        x_shopify_topic: Annotated[str | None, Header()] = None,
        x_shopify_hmac_sha256: Annotated[str | None, Header()] = None,
        x_shopify_webhook_id: Annotated[str | None, Header()] = None,
        x_shopify_shop_domain: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        if not settings.shopify_webhook_secret:
            raise HTTPException(503, "TRACKFLOW_SHOPIFY_WEBHOOK_SECRET is not configured")
        raw = await request.body()
        if not verify_hmac(raw, x_shopify_hmac_sha256, settings.shopify_webhook_secret):
            raise HTTPException(401, "X-Shopify-Hmac-Sha256 is missing or does not match the body")
        if x_shopify_webhook_id is not None and len(x_shopify_webhook_id) > MAX_WEBHOOK_ID:
            raise HTTPException(400, f"X-Shopify-Webhook-Id is over {MAX_WEBHOOK_ID} characters")
        topic = x_shopify_topic or ""
        if topic not in SHOPIFY_FULFILLMENT_TOPICS | RETURN_TOPICS:
            return JSONResponse({"ignored": f"topic {x_shopify_topic!r} is not handled"})
        payload = parse_json_object(raw)
        try:
            if topic in RETURN_TOPICS:
                return await _shopify_return(parse_return_request(topic, payload))
            fulfillment = parse_fulfillment(payload, shop_domain=x_shopify_shop_domain)
        except ValueError as error:
            raise HTTPException(422, f"{topic} payload rejected: {error}") from error
        client = await gateway.client()
        results = []
        for shipment in fulfillment.shipments:
            results.append(
                await _apply_fulfillment(client, shipment, fulfillment, x_shopify_webhook_id)
            )
        return JSONResponse({"shipments": results})

    async def _shopify_return(request: ReturnRequest) -> JSONResponse:
        client = await gateway.client()
        order_id = request.order_id or ""
        numbers = await running_shipments_of_order(client, order_id)
        if not numbers:
            return JSONResponse({"ignored": f"no shipment of order {order_id} is being tracked"})
        results = []
        for number in numbers:
            try:
                await request_return(client, number, request)
                results.append({"tracking_number": number, "result": "signalled"})
            except (ShipmentClosed, ShipmentNotFound):
                results.append({"tracking_number": number, "result": "tracking ended"})
        return JSONResponse({"shipments": results})

    async def _apply_fulfillment(
        client: Client, shipment: Shipment, fulfillment: FulfillmentInput, webhook_id: str | None
    ) -> dict[str, str]:
        number = shipment.tracking_number
        shipment = _with_defaults(shipment)
        try:
            await register_shipment(
                client,
                shipment,
                _policy_for(fulfillment.time_scale),
                task_queue=settings.task_queue,
                update_id=webhook_id,
                updated_at=fulfillment.updated_at,
            )
        except ShipmentClosed:
            return {"tracking_number": number, "result": "already completed"}
        for event in _plausible(fulfillment.events)[0]:
            if event.tracking_number == number:
                await signal_event(client, event)
        if fulfillment.cancelled:
            await cancel_shipment(client, number, "fulfillment cancelled in Shopify")
        return {"tracking_number": number, "workflow_id": shipment.workflow_id}

    return app
