"""Starting, signalling and querying shipment workflows: shared by the HTTP service and the CLI.

Every call returns only once its effect is durable in Temporal (the start or the signal
is in the workflow's history); callers answer 2xx only after that.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from trackflow import policy_table
from trackflow.contracts import (
    ANOTHER_ORDER,
    MAX_EVENTS_PER_SIGNAL,
    ORDER_ID,
    QUERY_STATE,
    SIGNAL_CANCEL,
    SIGNAL_CARRIER_EVENT,
    SIGNAL_CARRIER_EVENTS,
    SIGNAL_HAND_OVER,
    SIGNAL_UNMATCHED_EVENT,
    TRACKING_NUMBER,
    UNMATCHED_WORKFLOW_NAME,
    UPDATE_REGISTER,
    UPDATE_RETURN_REQUEST,
    WORKFLOW_NAME,
    Cancel,
    EventBatch,
    InboxItem,
    ShipmentWorkflowInput,
    UnmatchedInput,
    initial_search_attributes,
)
from trackflow.models import (
    CarrierEvent,
    ReturnRequest,
    Shipment,
    ShipmentUpdate,
    workflow_id_for,
)
from trackflow.outlook import first_task
from trackflow.pinning import pin
from trackflow.policy import ShipmentView
from trackflow.policy_table import PolicyRef
from trackflow.shipment_state import Outcome, ShipmentProjection
from trackflow.tracking_policy import TrackingPolicy

T = TypeVar("T")


class ShipmentNotFound(LookupError):
    def __init__(self, tracking_number: str) -> None:
        super().__init__(f"no active shipment for tracking number {tracking_number}")
        self.tracking_number = tracking_number


class ShipmentClosed(RuntimeError):
    """The shipment's workflow already completed; a late webhook must not start it again."""


@dataclass(frozen=True)
class Registered:
    """The answer to a registration: `outcome` is accepted (a new lifecycle started),
    updated, already_registered or ignored; `detail` says why where there is a why."""

    handle: WorkflowHandle[object, ShipmentView]
    outcome: str
    detail: str | None = None
    first_row: ShipmentProjection | None = None  # accepted: the read-model row to begin with


ANSWER_WITHIN = timedelta(seconds=20)


class NoWorkerAnswered(RuntimeError):
    """No worker answered a registration or return request in time: nothing is confirmed
    (a new shipment's start may be durable already; asking again is safe)."""


class AnotherOrder(RuntimeError):
    """The number is followed for another order that is still live (answered 409)."""


async def register_shipment(
    client: Client,
    shipment: Shipment,
    policy: TrackingPolicy,
    *,
    task_queue: str,
    time_scale: float | None = None,
    update_id: str | None = None,
    updated_at: datetime | None = None,
    events: Sequence[CarrierEvent] = (),
) -> Registered:
    """The first registration starts the shipment's workflow with the registration (and
    `events`, a fulfillment's own carrier events) first in its inbox: answered `accepted` as
    soon as the start is durable, with no worker round trip and one billable action. Later
    ones are `register` updates, answered by the workflow.

    Identity is (tracking number, order): a number whose earlier order's tracking ended starts
    a new lifecycle for a new order (its late events are ignored), the same order is not
    started again (`ShipmentClosed`), and another order while one is live is `AnotherOrder`.
    `update_id` (the webhook's delivery id) and `updated_at` (when the source last changed the
    facts) let the workflow ignore a replayed or an older update. `time_scale` is the
    shipment's own (demos), replacing the policy's."""
    policy_ref = policy_table.ref(policy, time_scale)
    shipment = pin(shipment, policy_table.resolve(policy_ref))
    update = ShipmentUpdate(shipment=shipment, update_id=update_id, updated_at=updated_at)
    inbox = [InboxItem(update=update), *(InboxItem(event=event) for event in events)]
    as_update = update.model_copy(update={"events": list(events)})  # when one already runs
    try:
        handle, row = await _start(client, shipment, policy_ref, inbox, task_queue=task_queue)
    except WorkflowAlreadyStartedError:
        earlier_order_ended = await _earlier_lifecycle_end(client, shipment)
        if earlier_order_ended is None:  # running: the workflow answers the update
            return await _update_registration(client, as_update)
        try:
            handle, row = await _start(
                client,
                shipment,
                policy_ref,
                inbox,
                task_queue=task_queue,
                events_not_before=earlier_order_ended,
            )
        except WorkflowAlreadyStartedError:  # a concurrent registration started it first
            return await _update_registration(client, as_update)
    await hand_over_unmatched_events(client, shipment.tracking_number)
    return Registered(handle=handle, outcome="accepted", first_row=row)


async def _start(
    client: Client,
    shipment: Shipment,
    policy_ref: PolicyRef,
    inbox: list[InboxItem],
    *,
    task_queue: str,
    events_not_before: datetime | None = None,
) -> tuple[WorkflowHandle[object, ShipmentView], ShipmentProjection]:
    """Start a lifecycle, and the read-model row its first task will write; raises
    WorkflowAlreadyStartedError when one runs or, unless this is the next order of a recycled
    number (`events_not_before`), one ran."""
    reuse = (
        WorkflowIDReusePolicy.ALLOW_DUPLICATE
        if events_not_before is not None
        else WorkflowIDReusePolicy.REJECT_DUPLICATE
    )
    start = ShipmentWorkflowInput(
        shipment=shipment, policy=policy_ref, inbox=inbox, events_not_before=events_not_before
    )
    foreseen = first_task(start, policy_table.resolve(policy_ref), datetime.now(UTC))
    handle = await client.start_workflow(
        WORKFLOW_NAME,
        start,
        id=shipment.workflow_id,
        task_queue=task_queue,
        result_type=ShipmentView,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        id_reuse_policy=reuse,
        search_attributes=TypedSearchAttributes(
            [*initial_search_attributes(shipment), *foreseen.search_attributes()]
        ),
        static_summary=f"Order {shipment.order_name or shipment.order_id} · "
        f"{shipment.carrier or 'carrier?'} {shipment.tracking_number}",
    )
    return handle, foreseen.row()


async def _update_registration(client: Client, update: ShipmentUpdate) -> Registered:
    number = update.shipment.tracking_number
    handle: WorkflowHandle[object, ShipmentView] = client.get_workflow_handle(
        update.shipment.workflow_id, result_type=ShipmentView
    )
    try:
        async with _answered_in_time(number):
            outcome: Outcome = await _not_found_as(
                number,
                handle.execute_update(
                    UPDATE_REGISTER, update, result_type=Outcome, rpc_timeout=ANSWER_WITHIN
                ),
            )
    except WorkflowUpdateFailedError as error:
        raise _another_order_or(error) from error
    return Registered(handle=handle, outcome=outcome.outcome, detail=outcome.detail)


async def _earlier_lifecycle_end(client: Client, shipment: Shipment) -> datetime | None:
    """When the number's earlier lifecycle ended, if it did and was another order's (None
    while it runs); raises `ShipmentClosed` when it was this order's (a late webhook must
    not start it again)."""
    described = await _not_found_as(
        shipment.tracking_number, client.get_workflow_handle(shipment.workflow_id).describe()
    )
    if described.status == WorkflowExecutionStatus.RUNNING:
        return None
    if described.typed_search_attributes.get(ORDER_ID) == shipment.order_id:
        raise ShipmentClosed(
            f"shipment {shipment.tracking_number} of order {shipment.order_id} already "
            "completed; not started again"
        )
    return described.close_time


@asynccontextmanager
async def _answered_in_time(tracking_number: str) -> AsyncIterator[None]:
    try:  # the RPC's own timeout answers first; this one is the backstop
        async with asyncio.timeout(ANSWER_WITHIN.total_seconds() + 5):
            yield
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise NoWorkerAnswered(
            f"no trackflow worker answered for {tracking_number} within "
            f"{ANSWER_WITHIN.total_seconds():.0f} s; is a worker running? Asking again is safe"
        ) from None


def _another_order_or(error: WorkflowUpdateFailedError) -> Exception:
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.type == ANOTHER_ORDER:
        return AnotherOrder(cause.message)
    return error


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


async def signal_or_keep_events(
    client: Client, events: Sequence[CarrierEvent], *, task_queue: str
) -> int:
    """A webhook's events, one signal per shipment (in batches of MAX_EVENTS_PER_SIGNAL):
    aggregators resend a tracker's whole history, and a signal per event would wake the
    workflow once per event. Events of unregistered numbers are kept as
    `signal_or_keep_event` keeps them. Returns how many events reached a shipment."""
    by_number: dict[str, list[CarrierEvent]] = {}
    for event in events:
        by_number.setdefault(event.tracking_number, []).append(event)
    matched = 0
    for number, batch in by_number.items():
        handle = client.get_workflow_handle(workflow_id_for(number))
        for start in range(0, len(batch), MAX_EVENTS_PER_SIGNAL):
            chunk = batch[start : start + MAX_EVENTS_PER_SIGNAL]
            try:
                await _not_found_as(
                    number, handle.signal(SIGNAL_CARRIER_EVENTS, EventBatch(events=chunk))
                )
                matched += len(chunk)
            except ShipmentNotFound:
                for event in chunk:
                    matched += await signal_or_keep_event(client, event, task_queue=task_queue)
    return matched


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


async def request_return(client: Client, tracking_number: str, request: ReturnRequest) -> Outcome:
    """Ask the shipment to start a return; the answer says whether it did and, if not, why. A
    shipment whose tracking already ended is `ShipmentClosed`; another order's, `AnotherOrder`."""
    handle = client.get_workflow_handle(workflow_id_for(tracking_number))
    try:
        async with _answered_in_time(tracking_number):
            outcome: Outcome = await _not_found_as(
                tracking_number,
                handle.execute_update(
                    UPDATE_RETURN_REQUEST, request, result_type=Outcome, rpc_timeout=ANSWER_WITHIN
                ),
            )
    except WorkflowUpdateFailedError as error:
        raise _another_order_or(error) from error
    except ShipmentNotFound:
        try:
            await _not_found_as(tracking_number, handle.describe())
        except ShipmentNotFound:
            raise
        raise ShipmentClosed(
            f"tracking of {tracking_number} has ended; the return window is over"
        ) from None
    return outcome


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
