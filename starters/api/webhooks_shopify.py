"""Shopify's webhooks: a fulfillment registers (or updates, or cancels) its shipments and
reports their status; a refund or return request reaches every tracked shipment of its order."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException
from temporalio.client import Client

from starters.api.dependencies import ApiContext, AppLedger, Context, configured
from starters.api.errors import bounded
from starters.api.json_body import parse_json_object
from starters.api.metrics import CountedRoute, event_outcome, registrations_outcome
from starters.api.models import (
    NO_WORKER_ANSWERED,
    ShopifyFulfillmentAnswer,
    ShopifyIgnored,
    ShopifyReturnAnswer,
    ShopifyReturnResult,
    ShopifyShipmentResult,
    plausible,
    refusal,
)
from starters.api.registered import record_registration
from starters.api.verified import Signature, verified_body
from starters.shipments import (
    AnotherOrder,
    ShipmentClosed,
    ShipmentNotFound,
    cancel_shipment,
    register_shipment,
    request_return,
    running_shipments_of_order,
)
from storage import Ledger
from trackflow.carriers.validity import number_warnings
from trackflow.models import ReturnRequest, Shipment
from trackflow.sources.shopify import (
    RETURN_TOPICS,
    FulfillmentInput,
    parse_fulfillment,
    parse_return_request,
    verify_hmac,
)

FULFILLMENT_TOPICS = {"fulfillments/create", "fulfillments/update"}
MAX_WEBHOOK_ID = 200
router = APIRouter(route_class=CountedRoute)


def _shopify_signature(
    context: Context, x_shopify_hmac_sha256: Annotated[str | None, Header()] = None
) -> Signature:
    secret = configured(context.settings.shopify_webhook_secret, "SHOPIFY_WEBHOOK_SECRET")
    return Signature(
        lambda raw: verify_hmac(raw, x_shopify_hmac_sha256, secret),
        "X-Shopify-Hmac-Sha256 is missing or does not match the body",
    )


ShopifyAnswer = ShopifyFulfillmentAnswer | ShopifyReturnAnswer | ShopifyIgnored


@router.post(
    "/webhooks/shopify",
    response_model=ShopifyAnswer,
    responses={503: NO_WORKER_ANSWERED},
)
async def shopify_webhook(
    raw: Annotated[bytes, Depends(verified_body(_shopify_signature))],
    context: Context,
    ledger: AppLedger,
    x_shopify_topic: Annotated[str | None, Header()] = None,
    x_shopify_webhook_id: Annotated[str | None, Header()] = None,
    x_shopify_shop_domain: Annotated[str | None, Header()] = None,
) -> ShopifyAnswer:
    """`fulfillments/create|update`: each tracking number's registration outcome (its own
    events ride in the registration); `refunds/create`, `returns/request`: each
    tracked shipment of the order says whether it started a return. A shipment refused
    because another order is live on its number is reported here (`refused`), not as a 409
    that Shopify would retry."""
    if x_shopify_webhook_id is not None and len(x_shopify_webhook_id) > MAX_WEBHOOK_ID:
        raise HTTPException(400, f"X-Shopify-Webhook-Id is over {MAX_WEBHOOK_ID} characters")
    topic = x_shopify_topic or ""
    if topic not in FULFILLMENT_TOPICS | RETURN_TOPICS:
        event_outcome("ignored")
        return ShopifyIgnored(ignored=f"topic {bounded(repr(x_shopify_topic), 100)} is not handled")
    payload = parse_json_object(raw)
    try:
        if topic in RETURN_TOPICS:
            return await _shopify_return(context, parse_return_request(topic, payload))
        fulfillment = parse_fulfillment(payload, shop_domain=x_shopify_shop_domain)
    except ValueError as error:
        raise HTTPException(422, f"{topic} payload rejected: {error}") from error
    client = await context.gateway.client()
    results = []
    for shipment in fulfillment.shipments:
        results.append(
            await _apply_fulfillment(
                context, client, ledger, shipment, fulfillment, x_shopify_webhook_id
            )
        )
    registrations_outcome(result.outcome for result in results)
    return ShopifyFulfillmentAnswer(shipments=results)


async def _shopify_return(
    context: ApiContext, request: ReturnRequest
) -> ShopifyReturnAnswer | ShopifyIgnored:
    client = await context.gateway.client()
    order_id = request.order_id or ""
    numbers = await running_shipments_of_order(client, order_id)
    if not numbers:
        event_outcome("ignored")
        return ShopifyIgnored(ignored=f"no shipment of order {order_id} is being tracked")
    results = []
    for number in numbers:
        result: dict[str, str | None]
        try:
            outcome = await request_return(client, number, request)
        except (ShipmentClosed, ShipmentNotFound):
            result = {"outcome": "ignored", "detail": "tracking ended"}
        except AnotherOrder as refused:
            result = {"outcome": "refused", "detail": str(refused)}
        else:
            result = {"outcome": outcome.outcome, "detail": outcome.detail}
        results.append(ShopifyReturnResult.model_validate(result | {"tracking_number": number}))
    return ShopifyReturnAnswer(shipments=results)


async def _apply_fulfillment(
    context: ApiContext,
    client: Client,
    ledger: Ledger,
    shipment: Shipment,
    fulfillment: FulfillmentInput,
    webhook_id: str | None,
) -> ShopifyShipmentResult:
    number = shipment.tracking_number
    shipment = context.with_defaults(shipment)
    warnings = number_warnings(number, shipment.carrier)
    if warnings and context.settings.reject_invalid_numbers:  # not a 4xx: Shopify would retry
        return ShopifyShipmentResult(
            tracking_number=number, outcome="refused", detail=refusal(warnings), warnings=warnings
        )
    events = [e for e in plausible(fulfillment.events)[0] if e.tracking_number == number]
    try:
        registered = await register_shipment(
            client,
            shipment,
            context.policy,
            time_scale=fulfillment.time_scale,
            task_queue=context.settings.task_queue,
            update_id=webhook_id,
            updated_at=fulfillment.updated_at,
            events=events,
        )
    except ShipmentClosed as closed:
        return ShopifyShipmentResult(tracking_number=number, outcome="ignored", detail=str(closed))
    except AnotherOrder as refused:
        return ShopifyShipmentResult(tracking_number=number, outcome="refused", detail=str(refused))
    await record_registration(ledger, context.settings, shipment, registered)
    if fulfillment.cancelled:
        await cancel_shipment(client, number, "fulfillment cancelled in Shopify")
    return ShopifyShipmentResult.model_validate(
        {
            "tracking_number": number,
            "workflow_id": registered.handle.id,
            "outcome": registered.outcome,
            "detail": registered.detail,
            "cancelled": fulfillment.cancelled,
            "warnings": warnings,
        }
    )
