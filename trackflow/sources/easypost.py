"""EasyPost tracker webhooks -> CarrierEvents. Pure, no I/O.

The webhook body is an Event (``object: "Event"``, ``description: "tracker.updated"`` or
``"tracker.created"``) whose ``result`` is a Tracker. :func:`parse_webhook` emits one event per
``tracking_details`` entry (oldest first) and then one for the tracker's current
``status``/``status_detail``.

Event ids (stable across EasyPost's retries of the same update):

* tracking detail: ``easypost:<tracking_code>:<datetime>:<status>:<status_detail>``
* tracker state:   ``easypost:<tracker id>:<updated_at>`` (tracker id ``trk_...``; the tracking
  code stands in when the id is absent)

Times without an offset are taken as UTC (EasyPost: "When location information is incomplete,
timestamps default to UTC"). The signature check is in :mod:`trackflow.sources.signatures`.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    mapping,
    parse_day,
    parse_time,
    text,
    tracking_number,
)

SOURCE = "easypost"
TRACKER_EVENTS = frozenset({"tracker.created", "tracker.updated"})


class EasyPostPayloadError(SourcePayloadError):
    """The EasyPost payload cannot become events; ``reason`` names the field at fault."""


# Tracker.status -- all 10 documented values.
STATUS: dict[str, StatusEntry] = {
    # "unknown" is a new tracker the carrier has no scans for yet, not a problem.
    "unknown": (CarrierStatus.LABEL_CREATED, None),
    "pre_transit": (CarrierStatus.LABEL_CREATED, None),
    "in_transit": (CarrierStatus.IN_TRANSIT, None),
    "out_for_delivery": (CarrierStatus.OUT_FOR_DELIVERY, None),
    "delivered": (CarrierStatus.DELIVERED, None),
    "available_for_pickup": (CarrierStatus.AVAILABLE_FOR_PICKUP, None),
    "return_to_sender": (CarrierStatus.RETURNED, None),
    "failure": (CarrierStatus.EXCEPTION, ExceptionKind.UNKNOWN),
    "cancelled": (CarrierStatus.EXCEPTION, ExceptionKind.UNKNOWN),
    "error": (CarrierStatus.EXCEPTION, ExceptionKind.UNKNOWN),
}

# Tracker.status_detail -- all 28 documented values (see normalized.combine for the rule).
DETAIL: dict[str, DetailEntry] = {
    "address_correction": ExceptionKind.ADDRESS_ISSUE,
    "arrived_at_destination": None,
    "arrived_at_facility": None,
    "arrived_at_pickup_location": CarrierStatus.AVAILABLE_FOR_PICKUP,
    "awaiting_information": None,
    "cancelled": None,
    "damaged": ExceptionKind.DAMAGED,
    "delayed": ExceptionKind.CARRIER_DELAY,
    "delivery_exception": ExceptionKind.UNKNOWN,
    "departed_facility": None,
    "departed_origin_facility": None,
    "expired": None,
    "failure": ExceptionKind.UNKNOWN,
    "held": ExceptionKind.HELD_AT_FACILITY,
    "in_transit": None,
    "label_created": None,
    "lost": ExceptionKind.LOST,
    "missorted": ExceptionKind.CARRIER_DELAY,
    "out_for_delivery": CarrierStatus.OUT_FOR_DELIVERY,
    "received_at_destination_facility": None,
    "received_at_origin_facility": None,
    "refused": ExceptionKind.RETURN_TO_SENDER,
    "return": ExceptionKind.RETURN_TO_SENDER,
    "status_update": None,
    "transferred_to_destination_carrier": None,
    "transit_exception": ExceptionKind.UNKNOWN,
    "unknown": None,
    "weather_delay": ExceptionKind.WEATHER_DELAY,
}


def _code(value: str | None) -> str | None:
    return value.strip().lower() if value and value.strip() else None


def normalize(status: str | None, status_detail: str | None = None) -> Normalized:
    """EasyPost ``status`` + ``status_detail`` -> ours. Unknown codes: ``known=False``, kept raw."""
    return combine(STATUS, DETAIL, _code(status), _code(status_detail))


def _tracker(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise EasyPostPayloadError("payload is not a JSON object")
    if payload.get("object") == "Tracker":  # a bare Tracker (e.g. from GET /trackers/:id)
        return payload
    if payload.get("object") not in (None, "Event"):
        raise EasyPostPayloadError(f"object is {payload.get('object')!r}, expected 'Event'")
    description = text(payload.get("description"))
    if description is not None and description not in TRACKER_EVENTS:
        raise EasyPostPayloadError(f"description {description!r} is not a tracker event")
    result = payload.get("result")
    if not isinstance(result, Mapping):
        raise EasyPostPayloadError("result is missing or not a Tracker object")
    if result.get("object") not in (None, "Tracker"):
        raise EasyPostPayloadError(f"result.object is {result.get('object')!r}, not 'Tracker'")
    return result


def parse_webhook(payload: Mapping[str, Any]) -> list[CarrierEvent]:
    """An EasyPost tracker Event body -> events (details oldest first, then the tracker state).

    Raises EasyPostPayloadError, naming the field, for a payload that is not a tracker event, a
    missing or unusable ``result.tracking_code``, a missing status, or a malformed time.
    """
    tracker = _tracker(payload)
    tracking = tracking_number(
        tracker.get("tracking_code"), "result.tracking_code", EasyPostPayloadError
    )
    status = text(tracker.get("status"))
    if status is None:
        raise EasyPostPayloadError("result.status is missing")

    events: list[CarrierEvent] = []
    details = tracker.get("tracking_details")
    if details is not None and not isinstance(details, list):
        raise EasyPostPayloadError("result.tracking_details is not a list")
    for index, detail in enumerate(details or []):
        where = f"result.tracking_details[{index}]"
        if not isinstance(detail, Mapping):
            raise EasyPostPayloadError(f"{where} is not an object")
        occurred_at = parse_time(detail.get("datetime"), f"{where}.datetime", EasyPostPayloadError)
        normalized = normalize(text(detail.get("status")), text(detail.get("status_detail")))
        place = mapping(detail.get("tracking_location"))
        event_id = (
            f"{SOURCE}:{tracking}:{occurred_at.isoformat()}:"
            f"{normalized.raw_status or ''}:{normalized.raw_detail or ''}"
        )
        events.append(
            build_event(
                EasyPostPayloadError,
                where,
                normalized,
                tracking_number=tracking,
                occurred_at=occurred_at,
                description=clip(detail.get("message")) or clip(detail.get("description")),
                location=join_location(place.get("city"), place.get("state"), place.get("country")),
                event_id=event_id[:200],
                source=SOURCE,
            )
        )
    events.sort(key=lambda event: event.occurred_at)

    # The tracker's updated_at, else (a bare Event lacking it) the Event's created_at.
    if text(tracker.get("updated_at")) is None and text(payload.get("created_at")) is not None:
        stamp, stamp_field = payload.get("created_at"), "created_at"
    else:
        stamp, stamp_field = tracker.get("updated_at"), "result.updated_at"
    updated_at = parse_time(stamp, stamp_field, EasyPostPayloadError)
    carrier_detail = mapping(tracker.get("carrier_detail"))
    eta = parse_day(
        carrier_detail.get("est_delivery_date_local"),
        "result.carrier_detail.est_delivery_date_local",
        EasyPostPayloadError,
    ) or parse_day(
        tracker.get("est_delivery_date"), "result.est_delivery_date", EasyPostPayloadError
    )
    latest = next(
        (e for e in reversed(events) if e.occurred_at <= updated_at), events[-1] if events else None
    )
    tracker_id = text(tracker.get("id")) or tracking
    events.append(
        build_event(
            EasyPostPayloadError,
            "result",
            normalize(status, text(tracker.get("status_detail"))),
            tracking_number=tracking,
            occurred_at=updated_at,
            description=latest.description if latest else None,
            location=latest.location if latest else None,
            estimated_delivery=eta,
            event_id=f"{SOURCE}:{tracker_id}:{updated_at.isoformat()}"[:200],
            source=SOURCE,
        )
    )
    return events
