"""The plain JSON API (`/v1`, bearer token): register a shipment, report a carrier event,
request a return, read a shipment."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from starters.api.dependencies import Authorized, Context, TemporalClient
from starters.api.json_body import StrictJsonRoute
from starters.api.models import CarrierEventIn, ReturnRequestBody, ShipmentIn
from starters.shipments import (
    ShipmentClosed,
    register_shipment,
    request_return,
    shipment_view,
    signal_event,
)
from trackflow.shipment_state import ShipmentDocument

router = APIRouter(route_class=StrictJsonRoute, dependencies=[Authorized])


@router.post("/v1/shipments", status_code=202)
async def create_shipment(
    body: ShipmentIn, client: TemporalClient, context: Context
) -> dict[str, Any]:
    shipment = context.with_defaults(body)
    try:
        await register_shipment(
            client,
            shipment,
            context.policy,
            time_scale=body.time_scale,
            task_queue=context.settings.task_queue,
        )
    except ShipmentClosed as closed:
        return {"ignored": str(closed), "tracking_number": shipment.tracking_number}
    return {"workflow_id": shipment.workflow_id, "tracking_number": shipment.tracking_number}


@router.post("/v1/events", status_code=202)
async def carrier_event(event: CarrierEventIn, client: TemporalClient) -> dict[str, Any]:
    await signal_event(client, event)
    return {"accepted": True, "tracking_number": event.tracking_number}


@router.post("/v1/shipments/{tracking_number}/return-requests", status_code=202)
async def return_request(
    tracking_number: str, body: ReturnRequestBody, client: TemporalClient
) -> dict[str, Any]:
    request = body.to_request()
    try:
        await request_return(client, tracking_number, request)
    except ShipmentClosed as closed:
        return {"ignored": str(closed), "request_id": request.request_id}
    return {"accepted": True, "request_id": request.request_id}


@router.get("/v1/shipments/{tracking_number}", response_model=ShipmentDocument)
async def get_shipment(tracking_number: str, client: TemporalClient) -> ShipmentDocument:
    return (await shipment_view(client, tracking_number)).public()
