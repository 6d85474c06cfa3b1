"""UPS status codes and Track Alert webhooks -> our taxonomy. Pure, table-driven, no I/O.

Codes (:func:`normalize` takes any of them; the key spaces do not overlap):

* activity status codes, 2 characters (Track Alert ``activityStatus.code``; Track API
  ``status.code``): only ``OT`` and ``FS`` are documented by example;
* numeric package status codes (Track API ``status.statusCode``; third-party, unverified);
* status types (``activityStatus.type`` / ``status.type``): Track Alert's D, I, M, MV, U, X and
  the classic Track API letters P, RS, DO, DD, O (third-party, unverified).

:func:`normalize_activity` is what a webhook or scan needs: the specific code when we know it,
else its type. An ``X`` (exception) takes its kind from the description when it names one.

Judgement calls: ``MV`` (manifest void) has no status of its own -> ``exception``/``unknown``;
a bare type ``D`` is "delivered" unless its text says out for delivery / loaded on the delivery
vehicle; ``DO``/``DD`` (delivered to a freight station) are still ``in_transit``; ``U`` (new
delivery date) is ``in_transit``; numeric ``005`` is overloaded and kept as unknown.

Track Alert sends one event per POST (:func:`parse_track_alert`). Its times are local with a
GMT twin and no offset field: ``occurred_at`` is the GMT instant expressed at the local offset
(local minus GMT, when that is a whole quarter hour), else in UTC. Event ids:
``ups:<tracking>:<local date><local time>:<code>`` (GMT date/time when local is absent).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from pydantic import ValidationError

from trackflow.models import CarrierEvent, CarrierStatus, ExceptionKind, normalize_tracking_number
from trackflow.sources._direct import Mapped, lookup, unknown
from trackflow.sources.normalized import Normalized, SourcePayloadError

SOURCE = "ups"

_LABEL = (CarrierStatus.LABEL_CREATED, None)
_MOVING = (CarrierStatus.IN_TRANSIT, None)
_OUT = (CarrierStatus.OUT_FOR_DELIVERY, None)
_DELIVERED = (CarrierStatus.DELIVERED, None)

ACTIVITY_CODES: dict[str, Mapped] = {
    "OT": _OUT,  # Out for Delivery (type I)
    "FS": _DELIVERED,  # Delivered (type D)
}

STATUS_CODES: dict[str, Mapped] = {
    "002": _MOVING,  # In Transit
    "003": _DELIVERED,  # Delivered
    "004": _OUT,  # Out for Delivery
    "006": _MOVING,  # Pickup / Origin Scan
    "007": _LABEL,  # Label Created / Void
}

# Documented, but its meaning is overloaded: kept as an unknown code.
AMBIGUOUS = frozenset({"005"})

STATUS_TYPES: dict[str, Mapped] = {
    "M": _LABEL,  # Manifest
    "MV": (CarrierStatus.EXCEPTION, ExceptionKind.UNKNOWN),  # Manifest Void
    "I": _MOVING,  # In progress / On the Way
    "U": _MOVING,  # Updated Delivery Date or Time
    "D": _DELIVERED,  # Delivery information (refined by the text, see _D_OUT)
    "X": (CarrierStatus.EXCEPTION, ExceptionKind.UNKNOWN),  # Package Exception
    "P": _MOVING,  # Pickup
    "RS": (CarrierStatus.RETURNED, None),  # Returned to Shipper
    "DO": _MOVING,  # Delivered Origin CFS (freight)
    "DD": _MOVING,  # Delivered Destination CFS (freight)
    "O": _OUT,  # Out for Delivery
}

_TABLE: dict[str, Mapped] = {**STATUS_TYPES, **STATUS_CODES, **ACTIVITY_CODES}
assert len(_TABLE) == len(STATUS_TYPES) + len(STATUS_CODES) + len(ACTIVITY_CODES)

_D_OUT = re.compile(r"\b(out for delivery|loaded on delivery vehicle)\b")


def normalize(code: str, detail: str | None = None) -> Normalized:
    """A UPS activity code, numeric status code or status type -> ours (unknown: known=False)."""
    result = lookup(_TABLE, code, detail, ambiguous=AMBIGUOUS)
    is_type_d = result.known and code.strip().upper() == "D"
    if is_type_d and detail and _D_OUT.search(" ".join(detail.split()).lower()):
        return result.model_copy(update={"status": CarrierStatus.OUT_FOR_DELIVERY})
    return result


def normalize_activity(
    type_: str | None, code: str | None, detail: str | None = None
) -> Normalized:
    """One activity status: its code when known, else its type (``known=False`` when a code was
    given but not recognised); the raw code is kept in ``raw_status``."""
    if code and code.strip():
        by_code = normalize(code, detail)
        if by_code.known:
            return by_code
    if type_ and type_.strip():
        by_type = normalize(type_, detail)
        if by_type.known and code and code.strip():
            # The type stands in for a code we do not know: say so, keep the code.
            return by_type.model_copy(update={"raw_status": code, "known": False})
        if by_type.known:
            return by_type
    return unknown(code or type_ or "", detail)


# --- Track Alert webhook --------------------------------------------------------------------


class UpsPayloadError(SourcePayloadError):
    """The webhook body cannot become an event; ``field`` names the field at fault."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def _text(payload: Mapping[str, Any], field: str, where: str = "") -> str | None:
    value = payload.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise UpsPayloadError(where + field, "must be text")
    text = str(value).strip()
    return text or None


def _required(payload: Mapping[str, Any], field: str, where: str = "") -> str:
    value = _text(payload, field, where)
    if value is None:
        raise UpsPayloadError(where + field, "is missing")
    return value


def _date(value: str, field: str) -> date:
    try:
        if len(value) != 8 or not value.isdigit():
            raise ValueError
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise UpsPayloadError(field, f"not a YYYYMMDD date: {value!r}") from None


def _stamp(day: str, time: str, day_field: str, time_field: str) -> datetime:
    moment = _date(day, day_field)
    if len(time) != 6 or not time.isdigit():
        raise UpsPayloadError(time_field, f"not an HHMMSS time: {time!r}")
    try:
        return datetime(
            moment.year, moment.month, moment.day, int(time[:2]), int(time[2:4]), int(time[4:])
        )
    except ValueError:
        raise UpsPayloadError(time_field, f"not an HHMMSS time: {time!r}") from None


def _occurred_at(gmt: datetime, local: datetime | None) -> datetime:
    instant = gmt.replace(tzinfo=UTC)
    if local is None:
        return instant
    offset = local - gmt
    quarter = timedelta(minutes=15)
    if offset % quarter or abs(offset) > timedelta(hours=14):
        return instant
    return instant.astimezone(timezone(offset))


def _location(place: object) -> str | None:
    if place is None:
        return None
    if not isinstance(place, Mapping):
        raise UpsPayloadError("activityLocation", "must be an object")
    where = "activityLocation."
    parts = (_text(place, field, where) for field in ("city", "stateProvince", "country"))
    text = ", ".join(p for p in parts if p)
    return text[:200] or None


def parse_track_alert(payload: Mapping[str, Any]) -> list[CarrierEvent]:
    """One Track Alert webhook body -> its event (a list, for symmetry with other sources)."""
    if not isinstance(payload, Mapping):
        raise UpsPayloadError("payload", "is not a JSON object")
    raw_number = _required(payload, "trackingNumber")
    try:
        tracking = normalize_tracking_number(raw_number)
    except ValueError as error:
        raise UpsPayloadError("trackingNumber", str(error)) from None

    activity = payload.get("activityStatus")
    if not isinstance(activity, Mapping):
        raise UpsPayloadError("activityStatus", "is missing" if activity is None else "not object")
    type_ = _text(activity, "type", "activityStatus.")
    code = _text(activity, "code", "activityStatus.")
    if type_ is None and code is None:
        raise UpsPayloadError("activityStatus.code", "is missing (and so is type)")
    description = _text(activity, "description", "activityStatus.")
    mapped = normalize_activity(type_, code, description)

    gmt_day = _required(payload, "gmtActivityDate")
    gmt_time = _required(payload, "gmtActivityTime")
    gmt = _stamp(gmt_day, gmt_time, "gmtActivityDate", "gmtActivityTime")
    local_day = _text(payload, "localActivityDate")
    local_time = _text(payload, "localActivityTime")
    local = None
    if local_day and local_time:
        local = _stamp(local_day, local_time, "localActivityDate", "localActivityTime")
        stamp = local_day + local_time
    else:
        stamp = gmt_day + gmt_time

    eta_text = _text(payload, "scheduledDeliveryDate")
    eta = _date(eta_text, "scheduledDeliveryDate") if eta_text else None
    if mapped.status is CarrierStatus.DELIVERED:
        eta = None  # UPS keeps sending the old schedule after delivery

    try:
        event = CarrierEvent(
            tracking_number=tracking,
            status=mapped.status,
            exception=mapped.exception,
            occurred_at=_occurred_at(gmt, local),
            description=description[:500] if description else None,
            location=_location(payload.get("activityLocation")),
            estimated_delivery=eta,
            event_id=f"ups:{tracking}:{stamp}:{mapped.raw_status}"[:200],
            source=SOURCE,
        )
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        raise UpsPayloadError(where, first["msg"]) from None
    return [event]
