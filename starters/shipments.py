"""Starting, signalling and querying shipment workflows: shared by the HTTP service and the CLI.

Every call returns only once its effect is durable in Temporal (the start or the signal
is in the workflow's history); callers answer 2xx only after that.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import TypeVar

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from trackflow.contracts import (
    QUERY_STATE,
    SIGNAL_CANCEL,
    SIGNAL_CARRIER_EVENT,
    SIGNAL_HAND_OVER,
    SIGNAL_RETURN_REQUEST,
    SIGNAL_UNMATCHED_EVENT,
    SIGNAL_UPDATE_SHIPMENT,
    UNMATCHED_WORKFLOW_NAME,
    WORKFLOW_NAME,
    Cancel,
    ShipmentWorkflowInput,
    UnmatchedInput,
)
from trackflow.models import (
    CarrierEvent,
    ReturnRequest,
    Shipment,
    ShipmentUpdate,
    workflow_id_for,
)
from trackflow.policy import ShipmentView
from trackflow.tracking_policy import TrackingPolicy
from workflows.search_attributes import ORDER_ID, TRACKING_NUMBER, initial_search_attributes

T = TypeVar("T")


class ShipmentNotFound(LookupError):
    def __init__(self, tracking_number: str) -> None:
        super().__init__(f"no active shipment for tracking number {tracking_number}")
        self.tracking_number = tracking_number


class ShipmentClosed(RuntimeError):
    """The shipment's workflow already completed; a late webhook must not start it again."""


async def register_shipment(
    client: Client,
    shipment: Shipment,
    policy: TrackingPolicy,
    *,
    task_queue: str,
    update_id: str | None = None,
    updated_at: datetime | None = None,
) -> WorkflowHandle[object, ShipmentView]:
    """Signal-with-start: the first call starts the workflow, later ones update it.

    `update_id` (the webhook's delivery id) and `updated_at` (when the source last changed the
    facts) let the workflow ignore a replayed or an older update."""
    try:
        handle = await client.start_workflow(
            WORKFLOW_NAME,
            ShipmentWorkflowInput(shipment=shipment, policy=policy),
            id=shipment.workflow_id,
            task_queue=task_queue,
            result_type=ShipmentView,
            start_signal=SIGNAL_UPDATE_SHIPMENT,
            start_signal_args=[
                ShipmentUpdate(shipment=shipment, update_id=update_id, updated_at=updated_at)
            ],
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(initial_search_attributes(shipment)),
            static_summary=f"Order {shipment.order_name or shipment.order_id} · "
            f"{shipment.carrier or 'carrier?'} {shipment.tracking_number}",
        )
    except WorkflowAlreadyStartedError as error:
        raise ShipmentClosed(
            f"shipment {shipment.tracking_number} already completed; not started again"
        ) from error
    await hand_over_unmatched_events(client, shipment.tracking_number)
    return handle


async def signal_event(client: Client, event: CarrierEvent) -> None:
    handle = client.get_workflow_handle(workflow_id_for(event.tracking_number))
    await _not_found_as(event.tracking_number, handle.signal(SIGNAL_CARRIER_EVENT, event))


async def signal_or_keep_event(client: Client, event: CarrierEvent, *, task_queue: str) -> bool:
    """Signal the shipment; an event for a number nobody registered yet is kept in its
    UnmatchedEventsWorkflow (handed over when the shipment starts). True when matched."""
    try:
        await signal_event(client, event)
        return True
    except ShipmentNotFound:
        await client.start_workflow(
            UNMATCHED_WORKFLOW_NAME,
            UnmatchedInput(tracking_number=event.tracking_number),
            id=f"unmatched-{event.tracking_number}",
            task_queue=task_queue,
            start_signal=SIGNAL_UNMATCHED_EVENT,
            start_signal_args=[event],
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"carrier events for unregistered {event.tracking_number}",
        )
        return False


async def hand_over_unmatched_events(client: Client, tracking_number: str) -> None:
    handle = client.get_workflow_handle(f"unmatched-{tracking_number}")
    try:
        await handle.signal(SIGNAL_HAND_OVER)
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise


async def cancel_shipment(client: Client, tracking_number: str, reason: str) -> None:
    handle = client.get_workflow_handle(workflow_id_for(tracking_number))
    await _not_found_as(tracking_number, handle.signal(SIGNAL_CANCEL, Cancel(reason=reason)))


async def request_return(client: Client, tracking_number: str, request: ReturnRequest) -> None:
    """Signal a return request; a shipment whose tracking already ended is `ShipmentClosed`."""
    handle = client.get_workflow_handle(workflow_id_for(tracking_number))
    try:
        await _not_found_as(tracking_number, handle.signal(SIGNAL_RETURN_REQUEST, request))
    except ShipmentNotFound:
        try:
            await _not_found_as(tracking_number, handle.describe())
        except ShipmentNotFound:
            raise
        raise ShipmentClosed(
            f"tracking of {tracking_number} has ended; the return window is over"
        ) from None


async def running_shipments_of_order(client: Client, order_id: str) -> list[str]:
    """Tracking numbers of the order's shipments still being followed (split shipments)."""
    query = f'{ORDER_ID.name} = "{_quoted(order_id)}" AND ExecutionStatus = "Running"'
    numbers = []
    async for execution in client.list_workflows(query):
        number = execution.typed_search_attributes.get(TRACKING_NUMBER)
        if number:
            numbers.append(number)
    return numbers


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


async def shipment_view(client: Client, tracking_number: str) -> ShipmentView:
    handle = client.get_workflow_handle(workflow_id_for(tracking_number))
    view: ShipmentView = await _not_found_as(
        tracking_number, handle.query(QUERY_STATE, result_type=ShipmentView)
    )
    return view


async def _not_found_as(tracking_number: str, call: Awaitable[T]) -> T:
    try:
        return await call
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise ShipmentNotFound(tracking_number) from error
        raise
