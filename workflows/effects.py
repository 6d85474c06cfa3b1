"""Carrying out the policy's effects as activities, each with an explicit retry policy."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from trackflow.contracts import (
    PollResult,
    SendBatch,
    SendReport,
    integrations_queue,
    poll_queue,
)
from trackflow.effects import PollCarrier, RaiseAlert, SendNotification, TagHelpdesk
from trackflow.messages import MessageContext
from trackflow.models import Model, ShippingSpeed
from trackflow.shipment_state import ShipmentProjection
from trackflow.tracking_policy import TrackingPolicy

# Customer messages: retry a flaky provider for a long time, never a message it refused.
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=["UndeliverableMessage", "LedgerKeyCollision"],
)
# Internal alerts and helpdesk tags are worth less than the customer's message: give up
# after a day rather than hold the shipment's history open with retries forever.
INTERNAL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=15),
    non_retryable_error_types=["LedgerKeyCollision"],
)
INTERNAL_GIVE_UP_AFTER = timedelta(days=1)
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
# The workflow shape that runs them so (before: alerts and tags on the main queue, awaited).
INTEGRATIONS_PATCH = "integrations-in-background"
# The shape that keeps the read model current: the send activity writes the row with the
# messages; a change that sends nothing writes it with one `project_shipment` local activity.
READ_MODEL_PATCH = "read-model"
# The shape with fewer billable actions: the start carries the search attributes and the first
# registration; NextActionAt moves only by a minute or more; the task that ends the run upserts
# nothing; the closing row is not written when the last row already foresaw it (as_of).
LEAN_PATCH = "lean-actions"
# The shape that makes a delayed-list change wait for the shipment's earlier one still under
# way (before: each ran at once, so a remove could overtake a throttled add and leave the
# customer on the list). Asked only when an earlier change is still under way.
LIST_ORDER_PATCH = "delayed-list-in-order"


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
    report: SendReport = await workflow.execute_local_activity(
        "send_notifications",
        SendBatch(about=about, sends=sends, projection=projection),
        result_type=SendReport,
        start_to_close_timeout=CALL_TIMEOUT,
        retry_policy=SEND_RETRY,
        summary=f"{first.trigger.value} {channels}",
    )
    return report


async def project(projection: ShipmentProjection) -> None:
    """Write the shipment's read-model row (a change that sends no message)."""
    await workflow.execute_local_activity(
        "project_shipment",
        projection,
        start_to_close_timeout=CALL_TIMEOUT,
        retry_policy=SEND_RETRY,
        summary=f"read model v{projection.version} {projection.document.status.value}",
    )


async def integrate(activity: str, argument: Model, summary: str) -> str | None:
    """Carry out one integration effect (an activity on the integrations queue); None once
    done, else why it gave up (the caller notes it: nothing retries it after that)."""
    try:
        await workflow.execute_activity(
            activity,
            argument,
            task_queue=integrations_queue(workflow.info().task_queue),
            start_to_close_timeout=CALL_TIMEOUT,
            schedule_to_close_timeout=INTEGRATION_GIVE_UP_AFTER,
            retry_policy=INTEGRATION_RETRY,
            summary=summary,
        )
    except ActivityError as error:
        return f"{activity} gave up: {error.cause or error}"
    return None


async def raise_alert(alert: RaiseAlert) -> None:
    """Before integrations moved to their own queue (histories that ran this way replay it)."""
    await workflow.execute_activity(
        "raise_alert",
        alert,
        start_to_close_timeout=CALL_TIMEOUT,
        schedule_to_close_timeout=INTERNAL_GIVE_UP_AFTER,
        retry_policy=INTERNAL_RETRY,
        summary=f"alert {alert.alert.value}",
    )


async def tag_helpdesk(tag: TagHelpdesk) -> None:
    """Before integrations moved to their own queue (histories that ran this way replay it)."""
    await workflow.execute_activity(
        "tag_helpdesk",
        tag,
        start_to_close_timeout=CALL_TIMEOUT,
        schedule_to_close_timeout=INTERNAL_GIVE_UP_AFTER,
        retry_policy=INTERNAL_RETRY,
        summary=f"helpdesk tag {tag.tag}",
    )


async def poll(request: PollCarrier, policy: TrackingPolicy, speed: ShippingSpeed) -> PollResult:
    """Fetch the tracker's events; an API still failing when the next poll is due gives up
    this round (the API's health workflow has counted every failure)."""
    try:
        result: PollResult = await workflow.execute_activity(
            "poll_carrier",
            request,
            result_type=PollResult,
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
