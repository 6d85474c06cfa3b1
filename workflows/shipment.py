"""ShipmentTrackingWorkflow: the durable shell around `trackflow.policy` for one tracking number."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from trackflow import policy
    from trackflow.contracts import (
        QUERY_STATE,
        SIGNAL_CANCEL,
        SIGNAL_CARRIER_EVENT,
        SIGNAL_UPDATE_SHIPMENT,
        WORKFLOW_NAME,
        Cancel,
        DeliveryReceipt,
        InboxItem,
        NotificationRequest,
        ShipmentWorkflowInput,
    )
    from trackflow.models import CarrierEvent, ShipmentUpdate
    from trackflow.policy import SendNotification, ShipmentView
    from workflows.search_attributes import search_attribute_updates

SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=["UndeliverableMessage"],
)


@workflow.defn(name=WORKFLOW_NAME)
class ShipmentTrackingWorkflow:
    @workflow.init
    def __init__(self, input: ShipmentWorkflowInput) -> None:
        self._shipment = input.shipment
        self._policy = input.policy
        self._state = input.state or policy.ShipmentState()
        self._inbox: list[InboxItem] = list(input.inbox)
        self._published_status: str | None = None

    @workflow.run
    async def run(self, input: ShipmentWorkflowInput) -> ShipmentView:
        self._publish_search_attributes()
        while not policy.is_finished(self._state, self._shipment, self._policy, workflow.now()):
            await self._wait_for_inbox_or_due_action()
            while self._inbox:
                await self._handle(self._inbox.pop(0))
            self._publish_search_attributes()
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    ShipmentWorkflowInput(
                        shipment=self._shipment,
                        policy=self._policy,
                        state=self._state,
                        inbox=self._inbox,
                    )
                )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._view()

    @workflow.signal(name=SIGNAL_CARRIER_EVENT)
    def carrier_event(self, event: CarrierEvent) -> None:
        self._inbox.append(InboxItem(event=event))

    @workflow.signal(name=SIGNAL_UPDATE_SHIPMENT)
    def update_shipment(self, update: ShipmentUpdate) -> None:
        self._inbox.append(InboxItem(update=update))

    @workflow.signal(name=SIGNAL_CANCEL)
    def cancel(self, cancel: Cancel) -> None:
        self._inbox.append(InboxItem(cancel=cancel))

    @workflow.query(name=QUERY_STATE)
    def state(self) -> ShipmentView:
        return self._view()

    def _view(self) -> ShipmentView:
        return policy.view(self._state, self._shipment, self._policy)

    async def _wait_for_inbox_or_due_action(self) -> None:
        due_at = policy.next_action(self._state, self._shipment, self._policy).due_at
        timeout = None if due_at is None else max(due_at - workflow.now(), timedelta(0))
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: bool(self._inbox), timeout=timeout)

    async def _handle(self, item: InboxItem) -> None:
        if item.event is not None:
            decision = policy.on_event(
                self._state, item.event, self._shipment, self._policy, workflow.now()
            )
            self._state = decision.state
            for send in decision.sends:
                await self._send(send)
        elif item.update is not None:
            self._shipment = policy.on_shipment_update(self._shipment, item.update.shipment)
        elif item.cancel is not None:
            self._state = policy.on_cancel(self._state, item.cancel.reason)

    async def _send(self, send: SendNotification) -> None:
        receipt = await workflow.execute_activity(
            "send_notification",
            NotificationRequest(shipment=self._shipment, send=send),
            result_type=DeliveryReceipt,
            start_to_close_timeout=timedelta(seconds=20),
            retry_policy=SEND_RETRY,
        )
        self._state = policy.record_sent(self._state, send, receipt.sent_at)

    def _publish_search_attributes(self) -> None:
        if self._published_status == self._state.phase:
            return
        self._published_status = self._state.phase
        workflow.upsert_search_attributes(
            search_attribute_updates(self._shipment, self._state.phase)
        )
