"""Polling carrier aggregators for shipments that get no webhooks, and reporting API health.

Reads are naturally idempotent; a failed call is retried by Temporal with the backoff the
workflow chose, and every outcome is reported to the API's CarrierApiHealthWorkflow so an
outage raises one alert for the API, not one per shipment.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from trackflow import policy_table
from trackflow.contracts import (
    API_HEALTH_WORKFLOW_NAME,
    SIGNAL_API_OUTCOME,
    ApiHealthInput,
    ApiOutcome,
    PollResult,
)
from trackflow.effects import PollCarrier
from trackflow.models import CarrierEvent
from trackflow.sources import easypost, shipengine
from trackflow.tracking_policy import TrackingPolicy

SUCCESS_REPORT_EVERY_S = 60.0


class CarrierApiUnavailable(Exception):
    """A 5xx, a timeout, a connection failure or a rate limit: worth retrying."""


class TrackerApi(Protocol):
    provider: str

    async def fetch(self, tracking_number: str, carrier: str | None) -> list[CarrierEvent]: ...


class EasyPostTrackers:
    """`POST /v2/trackers` creates the tracker or, for a code seen before, returns it."""

    provider = "easypost"

    def __init__(self, http: httpx.AsyncClient, api_key: str) -> None:
        self._http = http
        self._auth = httpx.BasicAuth(api_key, "")

    async def fetch(self, tracking_number: str, carrier: str | None) -> list[CarrierEvent]:
        tracker: dict[str, Any] = {"tracking_code": tracking_number}
        if carrier:
            tracker["carrier"] = carrier.upper()
        try:
            response = await self._http.post(
                "/v2/trackers", json={"tracker": tracker}, auth=self._auth
            )
        except httpx.TransportError as error:
            raise CarrierApiUnavailable(f"EasyPost unreachable: {error!r}") from error
        _raise_for(response, "EasyPost", tracking_number)
        return easypost.parse_webhook(response.json())


class ShipEngineTracking:
    """`GET /v1/tracking?carrier_code=&tracking_number=` (ShipStation API, formerly ShipEngine)."""

    provider = "shipengine"
    CARRIER_CODES = {"usps": "usps", "ups": "ups", "fedex": "fedex", "dhl": "dhl_express"}

    def __init__(self, http: httpx.AsyncClient, api_key: str) -> None:
        self._http = http
        self._headers = {"API-Key": api_key}

    async def fetch(self, tracking_number: str, carrier: str | None) -> list[CarrierEvent]:
        if not carrier:
            raise ApplicationError(
                "ShipEngine needs the carrier to track a number",
                type="CarrierApiRefused",
                non_retryable=True,
            )
        params = {
            "carrier_code": self.CARRIER_CODES.get(carrier, carrier),
            "tracking_number": tracking_number,
        }
        try:
            response = await self._http.get("/v1/tracking", params=params, headers=self._headers)
        except httpx.TransportError as error:
            raise CarrierApiUnavailable(f"ShipEngine unreachable: {error!r}") from error
        _raise_for(response, "ShipEngine", tracking_number)
        return shipengine.parse_webhook(
            {"resource_type": "API_TRACK", "data": response.json()},
            received_at=datetime.now(UTC),
        )


def _raise_for(response: httpx.Response, api: str, tracking_number: str) -> None:
    answer = f"{response.status_code} {_error(response)}"
    if response.status_code == 429 or response.status_code >= 500:
        raise CarrierApiUnavailable(f"{api} answered {answer}")
    if response.status_code >= 400:
        raise ApplicationError(
            f"{api} refused {tracking_number}: {answer}",
            type="CarrierApiRefused",
            non_retryable=True,
        )


def _error(response: httpx.Response) -> str:
    """EasyPost: {"error": {code, message}}; ShipEngine: {"errors": [{error_code, message}]}."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        return f"{first.get('error_code')}: {first.get('message')}"
    error = body.get("error", {})
    return f"{error.get('code')}: {error.get('message')}"


class HealthReporter:
    """Signals outcomes to the API's health workflow: every failure, and successes at most
    once a minute per process (plus at once after a failure), to keep its history small."""

    def __init__(self, client: Client, task_queue: str, policy: TrackingPolicy) -> None:
        self._client = client
        self._task_queue = task_queue
        self._policy = policy_table.ref(policy)
        self._last_success: dict[str, float] = {}
        self._failing: set[str] = set()

    async def report(self, provider: str, ok: bool, detail: str | None = None) -> None:
        now = time.monotonic()
        if ok:
            quiet = now - self._last_success.get(provider, -SUCCESS_REPORT_EVERY_S)
            if provider not in self._failing and quiet < SUCCESS_REPORT_EVERY_S:
                return
            self._last_success[provider] = now
            self._failing.discard(provider)
        else:
            self._failing.add(provider)
        await self._client.start_workflow(
            API_HEALTH_WORKFLOW_NAME,
            ApiHealthInput(provider=provider, policy=self._policy),
            id=f"carrier-api-{provider}-{self._task_queue}",
            task_queue=self._task_queue,
            start_signal=SIGNAL_API_OUTCOME,
            start_signal_args=[ApiOutcome(ok=ok, detail=detail)],
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"health of the {provider} API",
        )


class PollingActivities:
    def __init__(self, apis: dict[str, TrackerApi], health: HealthReporter) -> None:
        self._apis = apis
        self._health = health

    @activity.defn(name="poll_carrier")
    async def poll_carrier(self, poll: PollCarrier) -> PollResult:
        api = self._apis.get(poll.provider)
        if api is None:
            raise ApplicationError(
                f"no API key configured for {poll.provider}; cannot poll",
                type="CarrierApiNotConfigured",
                non_retryable=True,
            )
        try:
            events = await api.fetch(poll.tracking_number, poll.carrier)
        except CarrierApiUnavailable as error:
            await self._health.report(poll.provider, ok=False, detail=str(error))
            raise
        await self._health.report(poll.provider, ok=True)
        newest = poll.newest_known
        return PollResult(
            events=[
                event.model_copy(update={"polled": True})
                for event in events
                if newest is None or event.occurred_at >= newest
            ]
        )
