"""ShipmentTrackingWorkflow: the durable shell around `trackflow.policy` for one tracking number."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from trackflow import policy
    from trackflow.contracts import (
        QUERY_STATE,
        RETURNS_WORKFLOW_NAME,
        SIGNAL_CANCEL,
        SIGNAL_CARRIER_EVENT,
        SIGNAL_RETURN_REQUEST,
        SIGNAL_UPDATE_SHIPMENT,
        WORKFLOW_NAME,
        Cancel,
        InboxItem,
        ReturnsWorkflowInput,
        ShipmentWorkflowInput,
    )
    from trackflow.effects import StartReturn
    from trackflow.models import CarrierEvent, ReturnRequest, ShipmentUpdate
    from trackflow.shipment_state import Decision, ShipmentView
    from workflows import effects
    from workflows.search_attributes import search_attribute_updates


@workflow.defn(name=WORKFLOW_NAME)
class ShipmentTrackingWorkflow:
    @workflow.init
    def __init__(self, input: ShipmentWorkflowInput) -> None:
        self._shipment = policy.prepare_shipment(input.shipment)
        self._policy = input.policy
        self._state = input.state or policy.ShipmentState()
        self._inbox: list[InboxItem] = list(input.inbox)
        self._published: object = None

    @workflow.run
    async def run(self, input: ShipmentWorkflowInput) -> ShipmentView:
        self._state = policy.on_start(self._state, workflow.now())
        while True:
            await self._apply(
                policy.on_tick(self._state, self._shipment, self._policy, workflow.now())
            )
            while self._inbox:
                await self._handle(self._inbox.pop(0))
            self._publish()
            if policy.is_finished(self._state):
                break
            if self._history_is_long():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    ShipmentWorkflowInput(
                        shipment=self._shipment,
                        policy=self._policy,
                        state=self._state,
                        inbox=self._inbox,
                    )
                )
            await self._wait_for_inbox_or_next_timer()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._view()

    def _history_is_long(self) -> bool:
        info = workflow.info()
        limit = self._policy.continue_as_new_after_events
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= limit

    @workflow.signal(name=SIGNAL_CARRIER_EVENT)
    def carrier_event(self, event: CarrierEvent) -> None:
        self._inbox.append(InboxItem(event=event))

    @workflow.signal(name=SIGNAL_UPDATE_SHIPMENT)
    def update_shipment(self, update: ShipmentUpdate) -> None:
        self._inbox.append(InboxItem(update=update))

    @workflow.signal(name=SIGNAL_CANCEL)
    def cancel(self, cancel: Cancel) -> None:
        self._inbox.append(InboxItem(cancel=cancel))

    @workflow.signal(name=SIGNAL_RETURN_REQUEST)
    def return_request(self, request: ReturnRequest) -> None:
        self._inbox.append(InboxItem(return_request=request))

    @workflow.query(name=QUERY_STATE)
    def state(self) -> ShipmentView:
        return self._view()

    def _view(self) -> ShipmentView:
        return policy.view(self._state, self._shipment, self._policy)

    async def _wait_for_inbox_or_next_timer(self) -> None:
        due_at = policy.next_action(self._state, self._shipment, self._policy).due_at
        timeout = None if due_at is None else max(due_at - workflow.now(), timedelta(0))
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: bool(self._inbox), timeout=timeout)

    async def _handle(self, item: InboxItem) -> None:
        now = workflow.now()
        if item.event is not None:
            await self._apply(
                policy.on_event(self._state, item.event, self._shipment, self._policy, now)
            )
        elif item.return_request is not None:
            await self._apply(
                policy.on_return_request(
                    self._state, item.return_request, self._shipment, self._policy, now
                )
            )
        elif item.update is not None:
            self._state, self._shipment = policy.on_shipment_update(
                self._state, self._shipment, item.update, now
            )
        elif item.cancel is not None:
            self._state = policy.on_cancel(self._state, item.cancel.reason)

    async def _apply(self, decision: Decision) -> None:
        self._state = decision.state
        for alert in decision.alerts:
            await effects.raise_alert(alert)
        for notification in decision.sends:
            receipt = await effects.send(self._shipment, notification)
            self._state = policy.record_sent(self._state, notification, receipt.sent_at)
        for tag in decision.tags:
            await effects.tag_helpdesk(tag)
        for start in decision.returns:
            await self._start_return(start)
        for request in decision.polls:
            result = await effects.poll(request, self._policy, self._shipment.shipping_speed)
            for event in result.events:
                await self._apply(
                    policy.on_event(
                        self._state, event, self._shipment, self._policy, workflow.now()
                    )
                )

    async def _start_return(self, start: StartReturn) -> None:
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await workflow.start_child_workflow(
                RETURNS_WORKFLOW_NAME,
                ReturnsWorkflowInput(
                    shipment=self._shipment, policy=self._policy, request=start.request
                ),
                id=start.workflow_id,
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"{start.request.kind} for {self._shipment.tracking_number}",
            )

    def _publish(self) -> None:
        """Keep the Web UI current: search attributes to filter on, details to read."""
        action = policy.next_action(self._state, self._shipment, self._policy)
        published = (self._state.phase, self._state.open_exception, action.kind, action.due_at)
        if published == self._published:
            return
        self._published = published
        workflow.upsert_search_attributes(
            search_attribute_updates(self._shipment, self._state.phase, action)
        )
        status = self._state.phase.value + (
            f" ({self._state.open_exception.value})" if self._state.open_exception else ""
        )
        workflow.set_current_details(
            f"**{status}** · next: {action.kind}"
            + (f" at {action.due_local}" if action.due_local else "")
            + (f" — {action.detail}" if action.detail else "")
        )
