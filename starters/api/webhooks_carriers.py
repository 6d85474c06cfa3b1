"""Carrier-API webhooks: EasyPost, AfterShip and ShipEngine.

Each provider brings its signature (headers and secret) and its parser; one dependency,
`carrier_events`, verifies the body and normalizes it into events with a plausible time, and
every handler then only signals them (a shipment not registered yet keeps them for later)."""

# No `from __future__ import annotations`: FastAPI reads the dependencies below from
# annotations that name a closure's variables, so they must be evaluated where they stand.

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException

from starters.api.dependencies import ApiContext, Context, configured
from starters.api.errors import bounded
from starters.api.json_body import parse_json_object
from starters.api.metrics import CountedRoute, event_outcome, signature_failed
from starters.api.models import plausible
from starters.api.verified import Signature, verified_body
from starters.shipments import signal_or_keep_events
from trackflow.models import CarrierEvent
from trackflow.sources import aftership, easypost, shipengine
from trackflow.sources.signatures import verify_aftership, verify_easypost, verify_shipengine

logger = logging.getLogger("trackflow.api")
router = APIRouter(route_class=CountedRoute)

Payload = dict[str, Any]


@dataclass(frozen=True)
class CarrierEvents:
    """A verified webhook, normalized: the events with a believable time, and why the others
    were left out; or why the whole webhook is ignored."""

    events: list[CarrierEvent] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    ignored: str | None = None


def carrier_events(
    signature: Callable[..., Signature],
    parse: Callable[[Payload], list[CarrierEvent]],
    ignore: Callable[[Payload], str | None] = lambda _: None,
) -> Callable[..., Awaitable[CarrierEvents]]:
    """The dependency every carrier webhook shares: signature -> JSON -> normalized events
    (422 for a payload the parser refuses)."""

    async def normalized(raw: Annotated[bytes, Depends(verified_body(signature))]) -> CarrierEvents:
        payload = parse_json_object(raw)
        if reason := ignore(payload):
            return CarrierEvents(ignored=reason)
        try:
            events = parse(payload)
        except ValueError as error:
            raise HTTPException(422, f"webhook payload rejected: {error}") from error
        kept, rejected = plausible(events)
        return CarrierEvents(kept, rejected)

    return normalized


async def signal_events(batch: CarrierEvents, context: ApiContext) -> dict[str, Any]:
    if batch.ignored:
        event_outcome("ignored")
        return {"ignored": batch.ignored}
    client = await context.gateway.client()
    matched = await signal_or_keep_events(
        client, batch.events, task_queue=context.settings.task_queue
    )
    unrecognised = [f"{e.source}:{e.raw_code}" for e in batch.events if not e.recognised]
    if unrecognised:
        logger.warning("unrecognised carrier codes kept as exception/unknown: %s", unrecognised)
    return {
        "events": len(batch.events),
        "matched": matched,
        "kept_for_later": len(batch.events) - matched,
        "unrecognised_codes": unrecognised,
        "rejected": batch.rejected,
    }


# --- EasyPost -------------------------------------------------------------------------------


def _easypost_signature(
    context: Context, x_hmac_signature: Annotated[str | None, Header()] = None
) -> Signature:
    secret = configured(context.settings.easypost_webhook_secret, "EASYPOST_WEBHOOK_SECRET")
    return Signature(
        lambda raw: verify_easypost(raw, x_hmac_signature, secret),
        "X-Hmac-Signature is missing or does not match the body",
    )


def _not_about_a_tracker(payload: Payload) -> str | None:
    if str(payload.get("description", "")).startswith("tracker."):
        return None
    return f"event {bounded(repr(payload.get('description')), 100)} is not about a tracker"


EasyPostEvents = Annotated[
    CarrierEvents,
    Depends(carrier_events(_easypost_signature, easypost.parse_webhook, _not_about_a_tracker)),
]


@router.post("/webhooks/easypost")
async def easypost_webhook(batch: EasyPostEvents, context: Context) -> dict[str, Any]:
    return await signal_events(batch, context)


# --- AfterShip ------------------------------------------------------------------------------


def _aftership_signature(
    context: Context, aftership_hmac_sha256: Annotated[str | None, Header()] = None
) -> Signature:
    secret = configured(context.settings.aftership_webhook_secret, "AFTERSHIP_WEBHOOK_SECRET")
    return Signature(
        lambda raw: verify_aftership(raw, aftership_hmac_sha256, secret),
        "aftership-hmac-sha256 is missing or does not match the body",
    )


AfterShipEvents = Annotated[
    CarrierEvents, Depends(carrier_events(_aftership_signature, aftership.parse_webhook))
]


@router.post("/webhooks/aftership")
async def aftership_webhook(batch: AfterShipEvents, context: Context) -> dict[str, Any]:
    return await signal_events(batch, context)


# --- ShipEngine -----------------------------------------------------------------------------


def _shipengine_signature(
    context: Context,
    x_shipengine_rsa_sha256_signature: Annotated[str | None, Header()] = None,
    x_shipengine_rsa_sha256_key_id: Annotated[str | None, Header()] = None,
    x_shipengine_timestamp: Annotated[str | None, Header()] = None,
) -> Signature:
    keys = configured(context.settings.shipengine_webhook_keys, "SHIPENGINE_WEBHOOK_KEYS")
    headers = (
        x_shipengine_rsa_sha256_signature,
        x_shipengine_rsa_sha256_key_id,
        x_shipengine_timestamp,
    )
    if not all(headers):
        # ShipStation's guidance: answer 404 to a request without the signature headers.
        signature_failed()
        raise HTTPException(404, "x-shipengine-* signature headers are missing")

    def matches(raw: bytes) -> bool:
        return verify_shipengine(
            raw,
            signature=x_shipengine_rsa_sha256_signature,
            key_id=x_shipengine_rsa_sha256_key_id,
            timestamp=x_shipengine_timestamp,
            keys=json.loads(keys) if keys.lstrip().startswith("{") else keys,
        )

    return Signature(matches, "ShipEngine signature is stale or does not match the body")


ShipEngineEvents = Annotated[
    CarrierEvents, Depends(carrier_events(_shipengine_signature, shipengine.parse_webhook))
]


@router.post("/webhooks/shipengine")
async def shipengine_webhook(batch: ShipEngineEvents, context: Context) -> dict[str, Any]:
    return await signal_events(batch, context)
