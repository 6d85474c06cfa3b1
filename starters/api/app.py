"""The HTTP service assembled: settings and context, middleware, error answers, the offline
API docs, `/` and `/healthz`, and the routers (the `/v1` JSON API, Shopify's webhooks, the
carrier APIs' webhooks), each answering 2xx only once what it received is durable."""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from importlib.resources import files

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from starters.api import (
    insights,
    metrics,
    pages,
    shipments,
    unsubscribe,
    webhooks_carriers,
    webhooks_helpdesk,
    webhooks_providers,
    webhooks_shopify,
)
from starters.api.dependencies import (
    ApiContext,
    AppLedger,
    ClientFactory,
    Context,
    TemporalGateway,
)
from starters.api.errors import RETRY_AFTER_S, install_error_handlers
from starters.api.json_body import BodySizeLimit, StrictJsonRoute
from storage import Ledger, LedgerUnavailable
from trackflow.settings import Settings
from trackflow.tracking_policy import TrackingPolicy
from workers.policy_file import load_policy

# Swagger UI and ReDoc served from the fastapi-offline package: /docs works offline.
DOCS_ASSETS = str(files("fastapi_offline") / "static")
DOCS_ASSETS_URL = "/docs-assets"
LEDGER_CHECK_S = 3.0
log = logging.getLogger(__name__)


@asynccontextmanager
async def _closing_the_ledger(app: FastAPI) -> AsyncIterator[None]:
    """The ledger the provider webhooks and unsubscribe routes open on first use is closed
    when the service stops."""
    try:
        yield
    finally:
        ledger = getattr(app.state, "ledger", None)
        if ledger is not None:
            await ledger.close()


def create_app(
    settings: Settings,
    connect: ClientFactory,
    policy: TrackingPolicy | None = None,
    clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    """`policy`: what new shipments are tracked with (default: `load_policy(settings)`);
    `clock`: what time it is for the pages (default: the system clock)."""
    app = FastAPI(
        lifespan=_closing_the_ledger,
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
    app.state.context = ApiContext(
        settings=settings,
        policy=policy or load_policy(settings),
        gateway=TemporalGateway(connect),
        **({"clock": clock} if clock else {}),
    )
    install_error_handlers(app)
    app.include_router(service)
    app.include_router(shipments.router)
    app.include_router(webhooks_carriers.router)
    app.include_router(webhooks_shopify.router)
    app.include_router(webhooks_providers.router)
    app.include_router(webhooks_helpdesk.router)
    app.include_router(unsubscribe.router)
    app.include_router(pages.router)
    app.include_router(insights.router)
    app.include_router(metrics.router)
    return app


service = APIRouter(route_class=StrictJsonRoute)


@service.get("/", response_model=None, summary="Where to go from here")
async def index(request: Request, context: Context) -> Response:
    """Links to the API docs, the health check and (when known) the Temporal Web UI; an
    HTML page for a browser, JSON otherwise."""
    links = {"docs": "/docs", "redoc": "/redoc", "openapi": "/openapi.json"}
    links |= {"health": "/healthz"}
    if web_ui_url := context.settings.temporal_ui_url:
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


@service.get("/healthz")
async def healthz(context: Context, ledger: AppLedger) -> JSONResponse:
    """Ready to serve: 200 once Temporal and the ledger's database both answer, else 503
    naming which does not (the API's own process is up either way)."""
    temporal, ledger_ok = await asyncio.gather(context.gateway.healthy(), _reachable(ledger))
    checks = {
        "temporal": "ok" if temporal else "unavailable",
        "ledger": "ok" if ledger_ok else "unavailable",
    }
    if temporal and ledger_ok:
        return JSONResponse({"status": "ok"} | checks)
    headers = {"Retry-After": RETRY_AFTER_S}
    return JSONResponse({"status": "unavailable"} | checks, status_code=503, headers=headers)


async def _reachable(ledger: Ledger) -> bool:
    """Whether the ledger answers within LEDGER_CHECK_S (a database that drops packets
    would otherwise hold the check for the driver's whole connect timeout)."""
    try:
        async with asyncio.timeout(LEDGER_CHECK_S):
            await ledger.ping()
    except (LedgerUnavailable, TimeoutError) as error:
        log.warning("health check: %s", str(error) or "the ledger did not answer in time")
        return False
    return True


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
