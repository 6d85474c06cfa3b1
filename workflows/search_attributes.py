"""Custom search attributes that let ops filter shipments in the Temporal Web UI."""

from __future__ import annotations

from datetime import datetime

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

from trackflow.models import Shipment
from trackflow.shipment_state import NextAction

ORDER_ID = SearchAttributeKey.for_keyword("TrackflowOrderId")
TRACKING_NUMBER = SearchAttributeKey.for_keyword("TrackflowTrackingNumber")
CARRIER = SearchAttributeKey.for_keyword("TrackflowCarrier")
STATUS = SearchAttributeKey.for_keyword("TrackflowStatus")
NEXT_ACTION = SearchAttributeKey.for_keyword("TrackflowNextAction")
NEXT_ACTION_AT = SearchAttributeKey.for_datetime("TrackflowNextActionAt")

ALL_KEYS: tuple[SearchAttributeKey[str] | SearchAttributeKey[datetime], ...] = (
    ORDER_ID,
    TRACKING_NUMBER,
    CARRIER,
    STATUS,
    NEXT_ACTION,
    NEXT_ACTION_AT,
)


def initial_search_attributes(shipment: Shipment) -> list[SearchAttributePair[str]]:
    return [
        SearchAttributePair(ORDER_ID, shipment.order_id),
        SearchAttributePair(TRACKING_NUMBER, shipment.tracking_number),
        SearchAttributePair(CARRIER, shipment.carrier or "unknown"),
        SearchAttributePair(STATUS, "pending"),
    ]


def changed_search_attributes(
    current: TypedSearchAttributes, shipment: Shipment, status: str, action: NextAction
) -> list[SearchAttributeUpdate[str] | SearchAttributeUpdate[datetime]]:
    """Only the values that differ from `current` (each upsert is a history event)."""
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
    elif action.due_at is not None and (due_at is None or due_at != action.due_at):
        updates.append(NEXT_ACTION_AT.value_set(action.due_at))
    return updates
