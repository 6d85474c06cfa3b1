"""What a new shipment's workflow will hold after its first task, foreseen at the edge: the
start carries it as search attributes, which cost no billable action there (an upsert from the
workflow costs one), and the API writes it as the shipment's first read-model row, so a GET
right after the registration reads the ledger instead of querying a workflow no worker has
run yet. A guess that differs costs only that upsert back; the workflow's own row replaces
this one (same version, written only where no row is)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio.common import SearchAttributePair

from trackflow import policy as tracking
from trackflow import projection
from trackflow.contracts import NEXT_ACTION, NEXT_ACTION_AT, STATUS, ShipmentWorkflowInput
from trackflow.models import Shipment
from trackflow.shipment_state import ShipmentProjection, ShipmentState
from trackflow.tracking_policy import TrackingPolicy


@dataclass(frozen=True)
class FirstTask:
    state: ShipmentState
    shipment: Shipment
    policy: TrackingPolicy
    now: datetime

    def search_attributes(self) -> list[SearchAttributePair[str] | SearchAttributePair[datetime]]:
        action = tracking.next_action(self.state, self.shipment, self.policy)
        pairs: list[SearchAttributePair[str] | SearchAttributePair[datetime]] = [
            SearchAttributePair(STATUS, str(self.state.phase)),
            SearchAttributePair(NEXT_ACTION, action.kind),
        ]
        if action.due_at is not None:
            pairs.append(SearchAttributePair(NEXT_ACTION_AT, action.due_at))
        return pairs

    def row(self) -> ShipmentProjection:
        """The read-model row the workflow's first write (version 1) replaces."""
        return projection.project(self.state, self.shipment, self.policy, self.now, version=1)


def first_task(start: ShipmentWorkflowInput, policy: TrackingPolicy, now: datetime) -> FirstTask:
    """The workflow's own steps (start, tick, then the inbox in order;
    `ShipmentTrackingWorkflow.run`) on the edge's clock."""
    shipment = start.shipment
    state = start.state or ShipmentState(events_not_before=start.events_not_before)
    state = tracking.on_start(state, now)
    state = tracking.on_tick(state, shipment, policy, now).state
    for item in start.inbox:
        if item.update is not None:
            state, shipment, _ = tracking.on_registration(state, shipment, item.update, now)
            state = tracking.on_number_warnings(state, shipment, now).state
        elif item.event is not None:
            state = tracking.on_event(state, item.event, shipment, policy, now).state
    return FirstTask(state=state, shipment=shipment, policy=policy, now=now)
