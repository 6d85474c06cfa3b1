"""The plain JSON API (`/v1`, bearer token): register a shipment, report a carrier event,
request a return, read a shipment."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException

from starters.api.dependencies import AppLedger, Authorized, Context, TemporalClient
from starters.api.metrics import CountedRoute, event_outcome, registrations_outcome
from starters.api.models import (
    INVALID_NUMBER_REFUSED,
    NO_WORKER_ANSWERED,
    REFUSED_ANOTHER_ORDER,
    CarrierEventIn,
    Registration,
    RegistrationAfterTracking,
    ReturnRequestAnswer,
    ReturnRequestBody,
    ShipmentIn,
    refusal,
)
from starters.api.registered import record_registration
from starters.shipments import (
    ShipmentClosed,
    register_shipment,
    request_return,
    shipment_view,
    signal_event,
)
from trackflow.carriers.validity import number_warnings
from trackflow.projection import as_of
from trackflow.shipment_state import ShipmentDocument

router = APIRouter(route_class=CountedRoute, dependencies=[Authorized])


@router.post(
    "/v1/shipments",
    status_code=202,
    response_model=Registration | RegistrationAfterTracking,
    responses={
        409: REFUSED_ANOTHER_ORDER,
        422: INVALID_NUMBER_REFUSED,
        503: NO_WORKER_ANSWERED,
    },
)
async def create_shipment(
    body: ShipmentIn, client: TemporalClient, context: Context, ledger: AppLedger
) -> Registration | RegistrationAfterTracking:
    """Register a shipment (tracking number + order), or update its facts. Answered once its
    workflow has taken it in, with the outcome. A number whose earlier order's tracking
    ended starts a new lifecycle for a new order; the same order is not started again. A
    number that does not fit its carrier is accepted with `warnings` (refused with
    TRACKFLOW_REJECT_INVALID_NUMBERS)."""
    shipment = context.with_defaults(body)
    warnings = number_warnings(shipment.tracking_number, shipment.carrier)
    if warnings and context.settings.reject_invalid_numbers:
        raise HTTPException(422, refusal(warnings))
    try:
        registered = await register_shipment(
            client,
            shipment,
            context.policy,
            time_scale=body.time_scale,
            task_queue=context.settings.task_queue,
        )
    except ShipmentClosed as closed:
        event_outcome("ignored")
        return RegistrationAfterTracking(
            ignored=str(closed), tracking_number=shipment.tracking_number
        )
    # For inbound helpdesk tickets: which shipment the requester's email belongs to.
    await record_registration(ledger, context.settings, shipment, registered)
    registrations_outcome([registered.outcome])
    return Registration.model_validate(
        {
            "workflow_id": registered.handle.id,
            "tracking_number": shipment.tracking_number,
            "outcome": registered.outcome,
            "detail": registered.detail,
            "warnings": warnings,
        }
    )


@router.post("/v1/events", status_code=202)
async def carrier_event(event: CarrierEventIn, client: TemporalClient) -> dict[str, Any]:
    await signal_event(client, event)
    return {"accepted": True, "tracking_number": event.tracking_number}


@router.post(
    "/v1/shipments/{tracking_number}/return-requests",
    status_code=202,
    response_model=ReturnRequestAnswer,
    responses={409: REFUSED_ANOTHER_ORDER, 503: NO_WORKER_ANSWERED},
)
async def return_request(
    tracking_number: str, body: ReturnRequestBody, client: TemporalClient
) -> ReturnRequestAnswer:
    """Ask the shipment to start a return (or a refund); the answer says whether it did and,
    if not, why. The same request again (same `request_id`, or the same body) starts nothing."""
    request = body.to_request()
    answer: dict[str, str | None] = {
        "tracking_number": tracking_number,
        "request_id": request.request_id,
    }
    try:
        outcome = await request_return(client, tracking_number, request)
    except ShipmentClosed as closed:
        event_outcome("ignored")
        answer |= {"outcome": "ignored", "detail": str(closed)}
    else:
        answer |= {"outcome": outcome.outcome, "detail": outcome.detail}
    return ReturnRequestAnswer.model_validate(answer)


@router.get("/v1/shipments/{tracking_number}", response_model=ShipmentDocument)
async def get_shipment(
    tracking_number: str, client: TemporalClient, ledger: AppLedger
) -> ShipmentDocument:
    """The shipment as its workflow last wrote it to the read model (no Temporal call); a
    shipment whose workflow has written none yet (started before the read model) is asked."""
    row = await ledger.projection(tracking_number)
    if row is not None:
        return as_of(row, datetime.now(UTC)).document
    return (await shipment_view(client, tracking_number)).public()
