"""ShipmentTrackingWorkflow: the durable shell around `trackflow.policy` for one tracking number."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from trackflow import policy, policy_table
from trackflow import projection as read_model
from trackflow.contracts import (
    ANOTHER_ORDER,
    QUERY_STATE,
    RETURNS_WORKFLOW_NAME,
    SIGNAL_CANCEL,
    SIGNAL_CARRIER_EVENT,
    SIGNAL_CARRIER_EVENTS,
    UPDATE_REGISTER,
    UPDATE_RETURN_REQUEST,
    WORKFLOW_NAME,
    Cancel,
    EventBatch,
    InboxItem,
    ReturnsWorkflowInput,
    ShipmentWorkflowInput,
)
from trackflow.effects import RaiseAlert, StartReturn
from trackflow.messages import MessageContext
from trackflow.models import CarrierEvent, ReturnRequest, ShipmentUpdate
from trackflow.shipment_state import Decision, Outcome, ShipmentProjection, ShipmentView
from workflows import effects
from workflows.search_attributes import NEXT_ACTION_AT_SLACK, changed_search_attributes


@workflow.defn(name=WORKFLOW_NAME)
class ShipmentTrackingWorkflow:
    @workflow.init
    def __init__(self, input: ShipmentWorkflowInput) -> None:
        self._shipment = input.shipment
        self._policy_ref = input.policy
        self._policy = policy_table.resolve(input.policy)
        self._state = input.state or policy.ShipmentState(events_not_before=input.events_not_before)
        self._inbox: list[InboxItem] = list(input.inbox)
        self._tickets = 0
        self._answers: dict[int, Outcome] = {}
        self._details = ""
        self._timer: asyncio.Task[None] | None = None
        self._timer_due: datetime | None = None
        self._integrations: set[asyncio.Task[None]] = set()
        self._list_change: asyncio.Task[None] | None = None  # the latest delayed-list change
        self._broken: BaseException | None = None
        self._written: ShipmentProjection | None = None
        self._row_due: datetime | None = None  # a scan-only row owed, written then
        self._lean = False  # the shape since LEAN_PATCH (set as the run starts)

    @workflow.run
    async def run(self, input: ShipmentWorkflowInput) -> ShipmentView:
        self._lean = workflow.patched(effects.LEAN_PATCH)
        if self._lean and not self._state.review_skip_at_delivery:
            self._state = self._state.model_copy(update={"review_skip_at_delivery": True})
        self._state = policy.on_start(self._state, workflow.now())
        while True:
            await self._apply(
                policy.on_tick(self._state, self._shipment, self._policy, workflow.now())
            )
            await self._drain_inbox()
            self._publish()
            if not self._continuing():  # else the next run writes the row first thing
                await self._keep_read_model()
            if policy.is_finished(self._state):
                await workflow.wait_condition(lambda: not self._integrations or bool(self._broken))
                self._raise_if_broken()
                break
            if self._continuing():
                await self._answer_every_update()
                workflow.continue_as_new(
                    ShipmentWorkflowInput(
                        shipment=self._shipment,
                        policy=self._policy_ref,
                        state=self._state,
                        inbox=self._inbox,
                    )
                )
            await self._wait_for_inbox_or_next_timer()
        await self._answer_every_update()
        await self._keep_read_model(finishing=True)
        return self._view()

    async def _drain_inbox(self) -> None:
        while self._inbox:
            await self._handle(self._inbox.pop(0))

    async def _answer_every_update(self) -> None:
        """Before the run ends: every waiting update answered, nothing left in the inbox."""
        while True:
            await self._drain_inbox()
            await workflow.wait_condition(
                lambda: workflow.all_handlers_finished() or bool(self._inbox)
            )
            if not self._inbox:
                return

    def _continuing(self) -> bool:
        """This run is about to continue as new (nothing pending, not finished): it keeps
        its last task short, so that signals arriving meanwhile rarely race the command."""
        return (
            self._history_is_long()
            and not self._integrations
            and not policy.is_finished(self._state)
        )

    def _history_is_long(self) -> bool:
        info = workflow.info()
        limit = self._policy.continue_as_new_after_events
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= limit

    @workflow.signal(name=SIGNAL_CARRIER_EVENT)
    def carrier_event(self, event: CarrierEvent) -> None:
        self._inbox.append(InboxItem(event=event))

    @workflow.signal(name=SIGNAL_CARRIER_EVENTS)
    def carrier_events(self, batch: EventBatch) -> None:
        self._inbox.extend(InboxItem(event=event) for event in batch.events)

    @workflow.signal(name=SIGNAL_CANCEL)
    def cancel(self, cancel: Cancel) -> None:
        self._inbox.append(InboxItem(cancel=cancel))

    @workflow.update(name=UPDATE_REGISTER)
    async def register(self, update: ShipmentUpdate) -> Outcome:
        """Answered once the registration is applied; its events follow it into the inbox
        (whichever registration started the run, none of their events is lost, and repeats
        are recognised by their keys)."""
        ticket = self._queue_for_answer(InboxItem(update=update.model_copy(update={"events": []})))
        self._inbox.extend(InboxItem(event=event) for event in update.events)
        return await self._answer(ticket)

    @register.validator
    def _same_order_registered(self, update: ShipmentUpdate) -> None:
        shipment = update.shipment
        if shipment.pinned is None:
            raise ApplicationError("a shipment is registered pinned (trackflow.pinning.pin)")
        self._check_same_order(shipment.order_id, shipment.tracking_number)

    @workflow.update(name=UPDATE_RETURN_REQUEST)
    async def request_return(self, request: ReturnRequest) -> Outcome:
        return await self._answer(self._queue_for_answer(InboxItem(return_request=request)))

    @request_return.validator
    def _same_order_returned(self, request: ReturnRequest) -> None:
        self._check_same_order(request.order_id, self._shipment.tracking_number)

    def _check_same_order(self, order_id: str | None, tracking_number: str) -> None:
        """Rejected here, an update never reaches the history nor the state."""
        try:
            policy.check_same_order(self._shipment, order_id, tracking_number)
        except policy.AnotherOrder as error:
            raise ApplicationError(str(error), type=ANOTHER_ORDER, non_retryable=True) from None

    def _queue_for_answer(self, item: InboxItem) -> int:
        """Queue the item behind the events already received; its ticket waits for the answer."""
        self._tickets += 1
        self._inbox.append(item.model_copy(update={"ticket": self._tickets}))
        return self._tickets

    async def _answer(self, ticket: int) -> Outcome:
        await workflow.wait_condition(lambda: ticket in self._answers)
        return self._answers.pop(ticket)

    @workflow.query(name=QUERY_STATE)
    def state(self) -> ShipmentView:
        return self._view()

    def _view(self) -> ShipmentView:
        return policy.view(self._state, self._shipment, self._policy)

    async def _wait_for_inbox_or_next_timer(self) -> None:
        action = policy.next_action(self._state, self._shipment, self._policy)
        self._arm(action.due_at, action.kind)

        def woken() -> bool:
            return bool(self._inbox) or self._timer_fired() or bool(self._broken)

        if self._row_due is None:
            await workflow.wait_condition(woken)
        else:  # the row owed for the last scans is written when nothing else comes first
            wait = max(self._row_due - workflow.now(), timedelta(seconds=1))
            with contextlib.suppress(asyncio.TimeoutError):
                await workflow.wait_condition(woken, timeout=wait)
        self._raise_if_broken()

    def _timer_fired(self) -> bool:
        return self._timer is not None and self._timer.done()

    def _arm(self, due_at: datetime | None, why: str) -> None:
        """One durable timer for the next deadline. A deadline that moved later (every scan
        pushes the lost deadline back) keeps the armed timer: it fires early, nothing is due,
        and it is armed again, which costs less than cancelling and restarting it per event."""
        armed = self._timer is not None and not self._timer.done()
        if armed and due_at is not None and self._timer_due and self._timer_due <= due_at:
            return
        if armed and self._timer is not None:
            self._timer.cancel()
        self._timer = None
        if due_at is None:
            return
        delay = max(due_at - workflow.now(), timedelta(seconds=1))
        self._timer = asyncio.ensure_future(workflow.sleep(delay, summary=why))
        self._timer_due = due_at

    async def _handle(self, item: InboxItem) -> None:
        now = workflow.now()
        outcome: Outcome | None = None
        if item.event is not None:
            await self._apply(
                policy.on_event(self._state, item.event, self._shipment, self._policy, now)
            )
        elif item.return_request is not None:
            decision = policy.on_return_request(
                self._state, item.return_request, self._shipment, self._policy, now
            )
            outcome = decision.outcome
            await self._apply(decision)
        elif item.update is not None:
            self._state, self._shipment, outcome = policy.on_registration(
                self._state, self._shipment, item.update, now
            )
            await self._apply(policy.on_number_warnings(self._state, self._shipment, now))
        elif item.cancel is not None:
            self._state = policy.on_cancel(self._state, item.cancel.reason)
        if item.ticket is not None:
            self._answers[item.ticket] = outcome or Outcome(outcome="ignored")

    async def _apply(self, decision: Decision) -> None:
        self._state = decision.state
        integrations = decision.alerts or decision.tags or decision.segments
        if integrations and not workflow.patched(effects.INTEGRATIONS_PATCH):
            await self._apply_before_integrations_patch(decision)
        else:
            await self._send(decision)
            self._integrate(decision)
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

    async def _send(self, decision: Decision) -> None:
        if not decision.sends:
            return
        row = self._next_row() if workflow.patched(effects.READ_MODEL_PATCH) else None
        report = await effects.send(MessageContext.of(self._shipment), decision.sends, row)
        by_key = {send.idempotency_key: send for send in decision.sends}
        if row is not None:  # what the send activity wrote
            self._written = row.with_sent(
                [(by_key[r.idempotency_key], r.sent_at, r.transport) for r in report.receipts]
            )
        for receipt in report.receipts:
            sent = by_key[receipt.idempotency_key]
            self._state = policy.record_sent(self._state, sent, receipt.sent_at, receipt.transport)
        for receipt in report.receipts:
            await self._apply(
                policy.on_send_outcome(
                    self._state,
                    by_key[receipt.idempotency_key],
                    receipt.transport,
                    self._shipment,
                    self._policy,
                )
            )

    def _next_row(self) -> ShipmentProjection:
        """The read-model row as the state stands, under the next version."""
        version = self._state.projections + 1
        self._state = self._state.model_copy(update={"projections": version})
        return read_model.project(
            self._state, self._shipment, self._policy, workflow.now(), version
        )

    async def _keep_read_model(self, *, finishing: bool = False) -> None:
        """Write the row when it says something the last one written does not (a change
        that sent no message: the send activity writes it otherwise); a scan that only
        refreshes the timeline waits out `SCAN_WRITE_INTERVAL` since the last write."""
        if not workflow.patched(effects.READ_MODEL_PATCH):
            return
        current = read_model.project(
            self._state, self._shipment, self._policy, workflow.now(), self._state.projections or 1
        )
        written = self._written
        if written is not None and self._lean:
            written = read_model.as_of(written, workflow.now())  # what readers see already
        self._row_due = read_model.write_due(written, current)
        if self._row_due is not None and (finishing or self._row_due <= workflow.now()):
            self._row_due = None
            version = self._state.projections + 1
            self._state = self._state.model_copy(update={"projections": version})
            row = current.model_copy(update={"version": version})
            await effects.project(row)
            self._written = row

    def _integrate(self, decision: Decision) -> None:
        """Start the decision's integration effects without waiting for them: the run waits
        for them only before it ends or continues as new."""
        for alert in decision.alerts:
            self._background(
                alert.idempotency_key,
                effects.integrate("raise_alert", alert, f"alert {alert.alert.value}"),
            )
        for tag in decision.tags:
            summary = "helpdesk " + "+".join(tag.all_tags)
            self._background(tag.idempotency_key, effects.integrate("tag_helpdesk", tag, summary))
        for change in decision.segments:
            summary = "delayed list " + ("add" if change.member else "remove")
            earlier = self._list_change
            if earlier is not None and (
                earlier.done() or not workflow.patched(effects.LIST_ORDER_PATCH)
            ):
                earlier = None
            self._list_change = self._background(
                change.idempotency_key,
                effects.integrate("sync_delayed_list", change, summary),
                after=earlier,
            )

    def _background(
        self, key: str, call: Awaitable[str | None], *, after: asyncio.Task[None] | None = None
    ) -> asyncio.Task[None]:
        """Run `call` as a background task, once `after` (when given) has settled."""

        async def settle() -> None:
            if after is not None:
                await workflow.wait_condition(after.done)
            if gave_up := await call:
                self._state = policy.on_integration_gave_up(
                    self._state, key, gave_up, workflow.now()
                )

        task = asyncio.create_task(settle())
        self._integrations.add(task)
        task.add_done_callback(self._settled)
        return task

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._integrations.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._broken = task.exception()

    def _raise_if_broken(self) -> None:
        """A bug in a background task fails the workflow task (retried, visible in the Web
        UI) instead of dying as an asyncio "exception was never retrieved" log line."""
        if self._broken is not None:
            raise self._broken

    async def _apply_before_integrations_patch(self, decision: Decision) -> None:
        """The shape histories recorded before INTEGRATIONS_PATCH replay: alerts alongside the
        send, then one tag activity per tag, in line."""
        await asyncio.gather(self._send(decision), *map(self._alert, decision.alerts))
        for tag in decision.tags:
            for name in tag.all_tags:
                key = tag.idempotency_key.rsplit(":", 1)[0] + f":{name}"
                await effects.tag_helpdesk(
                    tag.model_copy(update={"tag": name, "tags": [name], "idempotency_key": key})
                )

    @staticmethod
    async def _alert(alert: RaiseAlert) -> None:
        await effects.raise_alert(alert)

    async def _start_return(self, start: StartReturn) -> None:
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await workflow.start_child_workflow(
                RETURNS_WORKFLOW_NAME,
                ReturnsWorkflowInput(
                    shipment=self._shipment, policy=self._policy_ref, request=start.request
                ),
                id=start.workflow_id,
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"{start.request.kind} for {self._shipment.tracking_number}",
            )

    def _publish(self) -> None:
        """Keep the Web UI current: search attributes to filter on (upserted only when one
        changes), details to read."""
        action = policy.next_action(self._state, self._shipment, self._policy)
        updates = changed_search_attributes(
            workflow.info().typed_search_attributes,
            self._shipment,
            self._state.phase,
            action,
            slack=NEXT_ACTION_AT_SLACK if self._lean else timedelta(0),
        )
        if updates and not (self._lean and policy.is_finished(self._state)):  # a closed run shows
            workflow.upsert_search_attributes(updates)  # ExecutionStatus, no next action
        status = self._state.phase.value + (
            f" ({self._state.open_exception.value})" if self._state.open_exception else ""
        )
        details = (
            f"**{status}** · next: {action.kind}"
            + (f" at {action.due_local}" if action.due_local else "")
            + (f" — {action.detail}" if action.detail else "")
        )
        if details != self._details:
            self._details = details
            workflow.set_current_details(details)
