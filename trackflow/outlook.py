"""What a new shipment's workflow will show after its first task, foreseen at the edge: the
start carries it as search attributes, which cost no billable action there (an upsert from the
workflow costs one). A guess that differs only costs that upsert back."""

from __future__ import annotations

from datetime import datetime

from temporalio.common import SearchAttributePair

from trackflow import policy as tracking
from trackflow.contracts import NEXT_ACTION, NEXT_ACTION_AT, STATUS, ShipmentWorkflowInput
from trackflow.shipment_state import ShipmentState
from trackflow.tracking_policy import TrackingPolicy


def first_search_attributes(
    start: ShipmentWorkflowInput, policy: TrackingPolicy, now: datetime
) -> list[SearchAttributePair[str] | SearchAttributePair[datetime]]:
    """Status and next action after the first task: the workflow's own steps (start, tick,
    then the inbox in order; `ShipmentTrackingWorkflow.run`) on the edge's clock."""
    shipment = start.shipment
    state = start.state or ShipmentState(events_not_before=start.events_not_before)
    state = tracking.on_start(state, now)
    state = tracking.on_tick(state, shipment, policy, now).state
    for item in start.inbox:
        if item.update is not None:
            state, shipment, _ = tracking.on_registration(state, shipment, item.update, now)
        elif item.event is not None:
            state = tracking.on_event(state, item.event, shipment, policy, now).state
    action = tracking.next_action(state, shipment, policy)
    pairs: list[SearchAttributePair[str] | SearchAttributePair[datetime]] = [
        SearchAttributePair(STATUS, str(state.phase)),
        SearchAttributePair(NEXT_ACTION, action.kind),
    ]
    if action.due_at is not None:
        pairs.append(SearchAttributePair(NEXT_ACTION_AT, action.due_at))
    return pairs
