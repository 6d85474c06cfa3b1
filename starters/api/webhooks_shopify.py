"""Shopify's webhooks: a fulfillment registers (or updates, or cancels) its shipments and
reports their status; a refund or return request reaches every tracked shipment of its order."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException
from fastapi.responses import JSONResponse
from temporalio.client import Client

from starters.api.dependencies import ApiContext, Context, configured
from starters.api.json_body import StrictJsonRoute, parse_json_object
from starters.api.models import plausible
from starters.api.verified import Signature, verified_body
from starters.shipments import (
    ShipmentClosed,
    ShipmentNotFound,
    cancel_shipment,
    register_shipment,
    request_return,
    running_shipments_of_order,
    signal_event,
)
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
router = APIRouter(route_class=StrictJsonRoute)


def _shopify_signature(
    context: Context, x_shopify_hmac_sha256: Annotated[str | None, Header()] = None
) -> Signature:
    secret = configured(context.settings.shopify_webhook_secret, "SHOPIFY_WEBHOOK_SECRET")
    return Signature(
        lambda raw: verify_hmac(raw, x_shopify_hmac_sha256, secret),
        "X-Shopify-Hmac-Sha256 is missing or does not match the body",
    )


@router.post("/webhooks/shopify")
async def shopify_webhook(
    raw: Annotated[bytes, Depends(verified_body(_shopify_signature))],
    context: Context,
    x_shopify_topic: Annotated[str | None, Header()] = None,
    x_shopify_webhook_id: Annotated[str | None, Header()] = None,
    x_shopify_shop_domain: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    if x_shopify_webhook_id is not None and len(x_shopify_webhook_id) > MAX_WEBHOOK_ID:
        raise HTTPException(400, f"X-Shopify-Webhook-Id is over {MAX_WEBHOOK_ID} characters")
    topic = x_shopify_topic or ""
    if topic not in FULFILLMENT_TOPICS | RETURN_TOPICS:
        return JSONResponse({"ignored": f"topic {x_shopify_topic!r} is not handled"})
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
            await _apply_fulfillment(context, client, shipment, fulfillment, x_shopify_webhook_id)
        )
    return JSONResponse({"shipments": results})


async def _shopify_return(context: ApiContext, request: ReturnRequest) -> JSONResponse:
    client = await context.gateway.client()
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
    context: ApiContext,
    client: Client,
    shipment: Shipment,
    fulfillment: FulfillmentInput,
    webhook_id: str | None,
) -> dict[str, str]:
    number = shipment.tracking_number
    shipment = context.with_defaults(shipment)
    try:
        await register_shipment(
            client,
            shipment,
            context.policy,
            time_scale=fulfillment.time_scale,
            task_queue=context.settings.task_queue,
            update_id=webhook_id,
            updated_at=fulfillment.updated_at,
        )
    except ShipmentClosed:
        return {"tracking_number": number, "result": "already completed"}
    for event in plausible(fulfillment.events)[0]:
        if event.tracking_number == number:
            await signal_event(client, event)
    if fulfillment.cancelled:
        await cancel_shipment(client, number, "fulfillment cancelled in Shopify")
    return {"tracking_number": number, "workflow_id": shipment.workflow_id}
