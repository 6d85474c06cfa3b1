"""Custom search attributes that let ops filter shipments in the Temporal Web UI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, SearchAttributeUpdate

from trackflow.models import Shipment

ORDER_ID = SearchAttributeKey.for_keyword("TrackflowOrderId")
TRACKING_NUMBER = SearchAttributeKey.for_keyword("TrackflowTrackingNumber")
CARRIER = SearchAttributeKey.for_keyword("TrackflowCarrier")
STATUS = SearchAttributeKey.for_keyword("TrackflowStatus")

ALL_KEYS = (ORDER_ID, TRACKING_NUMBER, CARRIER, STATUS)


def initial_search_attributes(shipment: Shipment) -> list[SearchAttributePair[str]]:
    return [
        SearchAttributePair(ORDER_ID, shipment.order_id),
        SearchAttributePair(TRACKING_NUMBER, shipment.tracking_number),
        SearchAttributePair(CARRIER, shipment.carrier or "unknown"),
        SearchAttributePair(STATUS, "pending"),
    ]


def search_attribute_updates(shipment: Shipment, status: str) -> list[SearchAttributeUpdate[str]]:
    return [
        ORDER_ID.value_set(shipment.order_id),
        TRACKING_NUMBER.value_set(shipment.tracking_number),
        CARRIER.value_set(shipment.carrier or "unknown"),
        STATUS.value_set(str(status)),
    ]
