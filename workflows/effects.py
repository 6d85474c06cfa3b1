"""Carrying out the policy's effects as activities, each with an explicit retry policy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from trackflow.activity_catalogue import (
    NotificationActivities,
    PollingActivities,
    ReadModelActivities,
    activity_name,
)
from trackflow.contracts import (
    PollResult,
    SendBatch,
    SendReport,
    integrations_queue,
    poll_queue,
)
from trackflow.effects import PollCarrier, SendNotification
from trackflow.messages import MessageContext
from trackflow.models import ShippingSpeed
from trackflow.shipment_state import ShipmentProjection
from trackflow.tracking_policy import TrackingPolicy

A = TypeVar("A")

# Customer messages: retry a flaky provider for a long time, never a message it refused.
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=["UndeliverableMessage", "LedgerKeyCollision"],
)
CALL_TIMEOUT = timedelta(seconds=20)
# Slack, helpdesks and Klaviyo: on their own task queue, in the background, retried with
# backoff through an outage of hours; the customer's messages never wait for them.
INTEGRATION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=30),
    non_retryable_error_types=["LedgerKeyCollision"],
)
INTEGRATION_GIVE_UP_AFTER = timedelta(days=2)


async def send(
    about: MessageContext,
    sends: list[SendNotification],
    projection: ShipmentProjection | None = None,
) -> SendReport:
    """One decision's messages, every channel, as one local activity: it runs inside the
    workflow task that decided them and leaves one marker in the history (a scheduled
    activity would cost five events and a second workflow task). The ledger keeps each message
    exactly once across retries, replays and workers, as it does for any activity."""
    first = sends[0]
    channels = "+".join(send.channel.value for send in sends)
    report: SendReport = await workflow.execute_local_activity_method(
        NotificationActivities.send_notifications,
        SendBatch(about=about, sends=sends, projection=projection),
        start_to_close_timeout=CALL_TIMEOUT,
        retry_policy=SEND_RETRY,
        summary=f"{first.trigger.value} {channels}",
    )
    return report


async def project(projection: ShipmentProjection) -> None:
    """Write the shipment's read-model row (a change that sends no message)."""
    await workflow.execute_local_activity_method(
        ReadModelActivities.project_shipment,
        projection,
        start_to_close_timeout=CALL_TIMEOUT,
        retry_policy=SEND_RETRY,
        summary=f"read model v{projection.version} {projection.document.status.value}",
    )


async def integrate(
    activity: Callable[[Any, A], Awaitable[object]], argument: A, summary: str
) -> str | None:
    """Carry out one integration effect (an activity of `INTEGRATIONS_QUEUE`, by reference);
    None once done, else why it gave up (the caller notes it: nothing retries it after that)."""
    try:
        await workflow.execute_activity_method(
            activity,
            argument,
            task_queue=integrations_queue(workflow.info().task_queue),
            start_to_close_timeout=CALL_TIMEOUT,
            schedule_to_close_timeout=INTEGRATION_GIVE_UP_AFTER,
            retry_policy=INTEGRATION_RETRY,
            summary=summary,
        )
    except ActivityError as error:
        return f"{activity_name(activity)} gave up: {error.cause or error}"
    return None


async def poll(request: PollCarrier, policy: TrackingPolicy, speed: ShippingSpeed) -> PollResult:
    """Fetch the tracker's events; an API still failing when the next poll is due gives up
    this round (the API's health workflow has counted every failure)."""
    try:
        result: PollResult = await workflow.execute_activity_method(
            PollingActivities.poll_carrier,
            request,
            task_queue=poll_queue(workflow.info().task_queue, request.provider),
            start_to_close_timeout=CALL_TIMEOUT,
            schedule_to_close_timeout=policy.timings(speed).poll_every_min,
            retry_policy=RetryPolicy(
                initial_interval=policy.poll_retry_initial,
                backoff_coefficient=2.0,
                maximum_interval=policy.poll_retry_max,
                non_retryable_error_types=["CarrierApiRefused", "CarrierApiNotConfigured"],
            ),
            summary=f"poll {request.provider} #{request.attempt}",
        )
    except ActivityError:
        return PollResult()
    return result
