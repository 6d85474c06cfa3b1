"""Keeping the shipment's search attributes current (the registry is in `trackflow.contracts`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

from trackflow.contracts import (
    CARRIER,
    NEXT_ACTION,
    NEXT_ACTION_AT,
    ORDER_ID,
    STATUS,
    TRACKING_NUMBER,
)
from trackflow.models import Shipment
from trackflow.shipment_state import NextAction

NEXT_ACTION_AT_SLACK = timedelta(minutes=1)  # once the workflow upserts with it (LEAN_PATCH)


def changed_search_attributes(
    current: TypedSearchAttributes,
    shipment: Shipment,
    status: str,
    action: NextAction,
    slack: timedelta = timedelta(0),
) -> list[SearchAttributeUpdate[str] | SearchAttributeUpdate[datetime]]:
    """Only the values that differ from `current` (each upsert is a history event and a
    billable action); NextActionAt only when it moves by `slack` or more (a filter for
    people: the start sets it as the edge foresaw it, a moment before the workflow's clock)."""
    wanted: list[tuple[SearchAttributeKey[str], str]] = [
        (ORDER_ID, shipment.order_id),
        (TRACKING_NUMBER, shipment.tracking_number),
        (CARRIER, shipment.carrier or "unknown"),
        (STATUS, str(status)),
        (NEXT_ACTION, action.kind),
    ]
    updates: list[SearchAttributeUpdate[str] | SearchAttributeUpdate[datetime]] = [
        key.value_set(value) for key, value in wanted if current.get(key) != value
    ]
    due_at = current.get(NEXT_ACTION_AT)
    if action.due_at is None and due_at is not None:
        updates.append(NEXT_ACTION_AT.value_unset())
    elif action.due_at is not None and (due_at is None or _moved(due_at, action.due_at, slack)):
        updates.append(NEXT_ACTION_AT.value_set(action.due_at))
    return updates


def _moved(before: datetime, after: datetime, slack: timedelta) -> bool:
    return after != before if not slack else abs(after - before) >= slack
