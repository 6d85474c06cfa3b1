"""UnmatchedEventsWorkflow: carrier events for a tracking number nobody registered (yet).

A carrier webhook can arrive before the shop registers the shipment. Its events wait here,
visible in the Web UI, and are handed to the shipment's workflow when it starts, or dropped
after the policy's retention.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from trackflow.contracts import (
    SIGNAL_CARRIER_EVENT,
    SIGNAL_HAND_OVER,
    SIGNAL_UNMATCHED_EVENT,
    UNMATCHED_WORKFLOW_NAME,
    UnmatchedInput,
)
from trackflow.models import CarrierEvent, workflow_id_for

MAX_KEPT = 200


@workflow.defn(name=UNMATCHED_WORKFLOW_NAME)
class UnmatchedEventsWorkflow:
    def __init__(self) -> None:
        self._events: list[CarrierEvent] = []
        self._hand_over = False

    @workflow.run
    async def run(self, input: UnmatchedInput) -> int:
        try:
            await workflow.wait_condition(
                lambda: self._hand_over, timeout=timedelta(seconds=input.keep_for_seconds)
            )
        except TimeoutError:
            return 0
        shipment = workflow.get_external_workflow_handle(workflow_id_for(input.tracking_number))
        for event in self._events:
            await shipment.signal(SIGNAL_CARRIER_EVENT, event)
        return len(self._events)

    @workflow.signal(name=SIGNAL_UNMATCHED_EVENT)
    def add(self, event: CarrierEvent) -> None:
        if len(self._events) < MAX_KEPT:
            self._events.append(event)

    @workflow.signal(name=SIGNAL_HAND_OVER)
    def hand_over(self) -> None:
        self._hand_over = True

    @workflow.query(name="events")
    def events(self) -> list[CarrierEvent]:
        return self._events
