"""ShipEngine (ShipStation API) tracking webhooks -> CarrierEvents. Pure, no I/O.

The body is ``{"resource_url", "resource_type": "API_TRACK", "data": {...}}`` (ShipStation V2
sends ``TRACK_EVENT_V2`` with the same ``data`` shape). ``data.events`` lists the scans, most
recent first. :func:`parse_webhook` emits:

* one event per scan that carries its own ``status_code`` (oldest first). Scans without a
  status code (common: ``"status_code": null``) are not guessed at; the newest one's
  description and place go on the shipment-level event;
* one event for the shipment's current ``status_code``/``status_detail_code``, timed at the
  newest scan, else ``actual_delivery_date`` (delivered), else the caller's ``received_at``.

Event ids: ``shipengine:<tracking>:<time>:<code>`` for scans (``code`` = ``event_code``, else
status code) and ``shipengine:<tracking>:status:<time>:<status_code>:<status_detail_code>`` for
the shipment state. Times without an offset (``carrier_occurred_at``, ``ship_date``) are taken
as UTC. The signature check is in :mod:`trackflow.sources.signatures`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from trackflow.models import CarrierEvent, CarrierStatus, ExceptionKind
from trackflow.sources.normalized import (
    DetailEntry,
    Normalized,
    SourcePayloadError,
    StatusEntry,
    build_event,
    clip,
    combine,
    join_location,
    parse_day,
    parse_time,
    text,
    tracking_number,
)

SOURCE = "shipengine"
TRACK_RESOURCE_TYPES = frozenset({"API_TRACK", "TRACK_EVENT_V2"})


class ShipEnginePayloadError(SourcePayloadError):
    """The ShipEngine payload cannot become events; ``reason`` names the field at fault."""


# status_code -- the seven documented codes plus SP (Connect SDK: DeliveredToServicePoint).
STATUS: dict[str, StatusEntry] = {
    "UN": (CarrierStatus.EXCEPTION, ExceptionKind.UNKNOWN),  # "Unknown"
    "AC": (CarrierStatus.IN_TRANSIT, None),  # Accepted by the carrier
    "IT": (CarrierStatus.IN_TRANSIT, None),
    "DE": (CarrierStatus.DELIVERED, None),
    "EX": (CarrierStatus.EXCEPTION, ExceptionKind.UNKNOWN),
    "AT": (CarrierStatus.EXCEPTION, ExceptionKind.FAILED_ATTEMPT),  # Delivery Attempt
    "NY": (CarrierStatus.LABEL_CREATED, None),  # Not Yet in System
    "SP": (CarrierStatus.AVAILABLE_FOR_PICKUP, None),  # Delivered to a service point
}

_PICKUP = CarrierStatus.AVAILABLE_FOR_PICKUP

# status_detail_code -- all 72 values of the OpenAPI TrackingStatusDetailCode enum.
DETAIL: dict[str, DetailEntry] = {
    "COLLECTION_FAILED": ExceptionKind.CARRIER_DELAY,
    "AWAITING_DESPATCH": None,
    "COLLECTION_REQUESTED": None,
    "DESPATCHED": None,
    "ELEC_ADVICE_RECD_BY_CARRIER": None,
    "NOT_YET_RECEIVED_BY_CARRIER": None,
    "COLLECTION_MADE": None,
    "ATTEMPTED_DELIVERY": ExceptionKind.FAILED_ATTEMPT,
    "ATTEMPTED_DELIVERY_2ND": ExceptionKind.FAILED_ATTEMPT,
    "ATTEMPTED_DELIVERY_3RD": ExceptionKind.FAILED_ATTEMPT,
    "COD_AMOUNT_NOT_PAID": ExceptionKind.FAILED_ATTEMPT,
    "COD_AMOUNT_PAID": None,
    "CUSTOMER_CARDED": ExceptionKind.FAILED_ATTEMPT,
    "CUSTOMER_IDENTIFICATION_FAILED": ExceptionKind.FAILED_ATTEMPT,
    "INVALID_METHOD_OF_PAYMENT": ExceptionKind.FAILED_ATTEMPT,
    "NO_ACCESS_TO_RECIPIENTS_ADDRESS": ExceptionKind.FAILED_ATTEMPT,
    "OUT_FOR_DELIVERY": CarrierStatus.OUT_FOR_DELIVERY,
    "DELIVERED": None,
    "DELIVERED_DAMAGED": ExceptionKind.DAMAGED,  # under DE it stays delivered
    "DELIVERED_IN_PART": None,
    "DELIVERED_SPECIFIED_SAFE_PLACE": None,
    "DELIVERED_TO_ALTERNATIVE_DELIVERY_LOCATION": None,
    "DELIVERED_TO_NEIGHBOUR": None,
    "DELIVERED_TO_PO_BOX": None,
    "PARCEL_COLLECTED_FROM_PICKUP_POINT": None,
    "POST_TRANSIT_STATUS": None,
    "PROOF_OF_DELIVERY": None,
    "CANCELLED": None,
    "CANCELLED_BEFORE_DESPATCH": None,
    "CUSTOMER_MOVED": ExceptionKind.ADDRESS_ISSUE,
    "HAZARDOUS_PROHIBITED": None,
    "NOT_COLLECTED_FROM_PICKUP_POINT": ExceptionKind.RETURN_TO_SENDER,
    "NOT_DELIVERED": ExceptionKind.RETURN_TO_SENDER,  # "...being returned to the sender"
    "NOT_DELIVERED_ADDRESSEE_DECEASED": ExceptionKind.RETURN_TO_SENDER,
    "PARCEL_DAMAGED": ExceptionKind.DAMAGED,
    "PARCEL_DISPOSED": ExceptionKind.LOST,
    "PARCEL_LOST": ExceptionKind.LOST,
    "PARCEL_OUTSIDE_OF_SERVICE_CAPABILITY": None,
    "REFUSED_BY_CUSTOMER": ExceptionKind.RETURN_TO_SENDER,
    "RETURN_TO_SENDER": ExceptionKind.RETURN_TO_SENDER,
    "ADDRESS_QUERY": ExceptionKind.ADDRESS_ISSUE,
    "CARRIER_DELAYS": ExceptionKind.CARRIER_DELAY,
    "CUSTOMS_CLEARED": None,
    "CUSTOMS_PROCESSING": None,
    "DELAYED_NOT_CARRIER": ExceptionKind.CARRIER_DELAY,
    "DELIVERY_ARRANGED_WITH_RECIPIENT": None,
    "HELD_BY_CARRIER": ExceptionKind.HELD_AT_FACILITY,
    "HELD_BY_CARRIER_FOR_CLEARANCE_PRE_PROCESSING": ExceptionKind.CUSTOMS_HOLD,
    "HELD_BY_CUSTOMS": ExceptionKind.CUSTOMS_HOLD,
    "HELD_BY_EXPORT_CUSTOMS": ExceptionKind.CUSTOMS_HOLD,
    "HELD_BY_IMPORT_CUSTOMS": ExceptionKind.CUSTOMS_HOLD,
    "HUB_SCAN_OUT": None,
    "IN_TRANSIT": None,
    "INCORRECT_DECLARATION": ExceptionKind.CUSTOMS_HOLD,
    "INFORMATION": None,
    "MISSORTED": ExceptionKind.CARRIER_DELAY,
    "PARCEL_OVER_LABELLED": None,
    "PARCEL_REPACKED": None,
    "PARCEL_UPDATE_NOTIFICATION_VIA_EMAIL": None,
    "PARCEL_UPDATE_NOTIFICATION_VIA_SMS": None,
    "RECEIVED_BY_CARRIER": None,
    "RECEIVED_LOCAL_DELIVERY_DEPOT": None,
    "ROUTING_ERROR": ExceptionKind.CARRIER_DELAY,
    "SUB_CONTRACTOR_EVENT": None,
    "SUB_CONTRACTOR_RECEIVED": None,
    "RECD_BY_CARRIER_NO_ELEC_ADVICE": None,
    "AWAITING_ELECTRONIC_ADVICE": None,
    "AWAITING_COLLECTION_FROM_PICKUP_POINT": _PICKUP,
    "COLLECT_AT_LOCAL_PO": _PICKUP,
    "CUSTOMER_TO_COLLECT_FROM_CARRIER": _PICKUP,
    "DELIVERED_TO_LOCKER_COLLECTION_POINT": _PICKUP,
    "CARRIER_STATUS_NOT_MAPPED": None,
}


def _code(value: str | None) -> str | None:
    return value.strip().upper() if value and value.strip() else None


def normalize(status_code: str | None, status_detail_code: str | None = None) -> Normalized:
    """ShipEngine ``status_code`` + ``status_detail_code`` -> ours; unknown -> ``known=False``."""
    return combine(STATUS, DETAIL, _code(status_code), _code(status_detail_code))


def _data(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise ShipEnginePayloadError("payload is not a JSON object")
    kind = text(payload.get("resource_type"))
    if kind is not None and kind.upper() not in TRACK_RESOURCE_TYPES:
        raise ShipEnginePayloadError(f"resource_type {kind!r} is not a tracking webhook")
    data = payload.get("data")
    if not isinstance(data, Mapping):
        raise ShipEnginePayloadError("data is missing or not an object")
    return data


def _scan_time(scan: Mapping[str, Any], where: str) -> datetime:
    for field in ("occurred_at", "event_date", "carrier_occurred_at"):
        if text(scan.get(field)) is not None:
            return parse_time(scan[field], f"{where}.{field}", ShipEnginePayloadError)
    raise ShipEnginePayloadError(f"{where}.occurred_at is missing")


def parse_webhook(
    payload: Mapping[str, Any], *, received_at: datetime | None = None
) -> list[CarrierEvent]:
    """A ShipEngine track webhook body -> events (scans oldest first, then the shipment state).

    ``received_at`` (aware) times the shipment-level event when the body has no scan time.
    Raises ShipEnginePayloadError, naming the field, for a non-tracking body, a missing or
    unusable ``data.tracking_number`` or ``data.status_code``, a malformed time, or no time.
    """
    data = _data(payload)
    tracking = tracking_number(
        data.get("tracking_number"), "data.tracking_number", ShipEnginePayloadError
    )
    status_code = text(data.get("status_code"))
    if status_code is None:
        raise ShipEnginePayloadError("data.status_code is missing")
    scans = data.get("events")
    if scans is not None and not isinstance(scans, list):
        raise ShipEnginePayloadError("data.events is not a list")

    timed: list[tuple[datetime, Mapping[str, Any]]] = []
    events: list[CarrierEvent] = []
    for index, scan in enumerate(scans or []):
        where = f"data.events[{index}]"
        if not isinstance(scan, Mapping):
            raise ShipEnginePayloadError(f"{where} is not an object")
        occurred_at = _scan_time(scan, where)
        timed.append((occurred_at, scan))
        scan_status = text(scan.get("status_code"))
        if scan_status is None:
            continue
        normalized = normalize(scan_status, text(scan.get("status_detail_code")))
        code = text(scan.get("event_code")) or normalized.raw_status
        events.append(
            build_event(
                ShipEnginePayloadError,
                where,
                normalized,
                tracking_number=tracking,
                occurred_at=occurred_at,
                description=_scan_description(scan),
                location=_scan_location(scan),
                event_id=f"{SOURCE}:{tracking}:{occurred_at.isoformat()}:{code}"[:200],
                source=SOURCE,
            )
        )
    events.sort(key=lambda event: event.occurred_at)

    newest = max(timed, key=lambda pair: pair[0]) if timed else None
    normalized = normalize(status_code, text(data.get("status_detail_code")))
    if newest is not None:
        occurred_at = newest[0]
    elif text(data.get("actual_delivery_date")) is not None:
        occurred_at = parse_time(
            data["actual_delivery_date"], "data.actual_delivery_date", ShipEnginePayloadError
        )
    elif received_at is not None:
        occurred_at = received_at
    else:
        raise ShipEnginePayloadError(
            "data.events is empty and no actual_delivery_date or received_at gives a time"
        )
    description = (
        clip(data.get("exception_description"))
        if normalized.status == CarrierStatus.EXCEPTION
        else None
    )
    description = (
        description
        or clip(data.get("status_detail_description"))
        or clip(data.get("carrier_status_description"))
        or (_scan_description(newest[1]) if newest else None)
        or clip(data.get("status_description"))
    )
    events.append(
        build_event(
            ShipEnginePayloadError,
            "data",
            normalized,
            tracking_number=tracking,
            occurred_at=occurred_at,
            description=description,
            location=_scan_location(newest[1]) if newest else None,
            estimated_delivery=parse_day(
                data.get("estimated_delivery_date"),
                "data.estimated_delivery_date",
                ShipEnginePayloadError,
            ),
            event_id=(
                f"{SOURCE}:{tracking}:status:{occurred_at.isoformat()}:"
                f"{normalized.raw_status}:{normalized.raw_detail or ''}"
            )[:200],
            source=SOURCE,
        )
    )
    return events


def _scan_description(scan: Mapping[str, Any]) -> str | None:
    return clip(scan.get("description")) or clip(scan.get("event_description"))


def _scan_location(scan: Mapping[str, Any]) -> str | None:
    return join_location(
        scan.get("city_locality"), scan.get("state_province"), scan.get("country_code")
    )
