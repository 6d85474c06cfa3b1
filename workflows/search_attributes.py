"""Custom search attributes that let ops filter shipments in the Temporal Web UI."""

from __future__ import annotations

from datetime import datetime

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
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


def search_attribute_updates(
    shipment: Shipment, status: str, action: NextAction
) -> list[SearchAttributeUpdate[str] | SearchAttributeUpdate[datetime]]:
    updates: list[SearchAttributeUpdate[str] | SearchAttributeUpdate[datetime]] = [
        ORDER_ID.value_set(shipment.order_id),
        TRACKING_NUMBER.value_set(shipment.tracking_number),
        CARRIER.value_set(shipment.carrier or "unknown"),
        STATUS.value_set(str(status)),
        NEXT_ACTION.value_set(action.kind),
    ]
    updates.append(
        NEXT_ACTION_AT.value_set(action.due_at) if action.due_at else NEXT_ACTION_AT.value_unset()
    )
    return updates
