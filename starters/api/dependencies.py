"""What every route may depend on: the app's context (settings, the tracking policy, the
Temporal gateway), a Temporal client, and the bearer token of the /v1 routes."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client
from temporalio.service import RPCError

from storage import Ledger, open_ledger
from trackflow.models import Shipment
from trackflow.settings import Settings
from trackflow.tracking_policy import TrackingPolicy

ClientFactory = Callable[[], Awaitable[Client]]
BEARER = HTTPBearer(
    scheme_name="bearerAuth",
    description="TRACKFLOW_API_TOKEN; `trackflow up` keeps one in its data dir (`api_token`)",
    auto_error=False,  # its own error is a 403; ours stays 401 (and 503 when unconfigured)
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


@dataclass(frozen=True)
class ApiContext:
    """One per app, kept in `app.state.context`."""

    settings: Settings
    policy: TrackingPolicy  # what new shipments are tracked with
    gateway: TemporalGateway
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    """What time it is for the pages (the tests' browser pages are of a fixed day)."""

    def with_defaults(self, shipment: Shipment) -> Shipment:
        poll_via = self.settings.default_poll_via
        if shipment.poll_via is None and poll_via in ("easypost", "shipengine"):
            return shipment.model_copy(update={"poll_via": poll_via})
        return shipment


def configured(value: str | None, name: str) -> str:
    """A setting a route needs: 503 while it is not configured."""
    if not value:
        raise HTTPException(503, f"TRACKFLOW_{name} is not configured")
    return value


def _context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


Context = Annotated[ApiContext, Depends(_context)]


async def _temporal_client(context: Context) -> Client:
    return await context.gateway.client()


TemporalClient = Annotated[Client, Depends(_temporal_client)]


def _bearer(
    context: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> None:
    expected = configured(context.settings.api_token, "API_TOKEN")
    token = credentials.credentials.encode() if credentials else b""
    if not hmac.compare_digest(token, expected.encode()):
        raise HTTPException(
            401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


Authorized = Depends(_bearer)


def _app_ledger(request: Request, context: Context) -> Ledger:
    """The app's notification ledger (provider feedback, unsubscribes), opened on first use:
    its SQLite file or PostgreSQL, from the settings."""
    state = request.app.state
    ledger: Ledger | None = getattr(state, "ledger", None)
    if ledger is None:
        ledger = open_ledger(context.settings.resolved_ledger_url)
        state.ledger = ledger
    return ledger


AppLedger = Annotated[Ledger, Depends(_app_ledger)]


def merchant_of(settings: Settings) -> str:
    """Whose suppression list an address goes on: the store this deployment sends for."""
    return settings.store_name
