"""AfterShip tracking webhooks -> CarrierEvents. Pure, no I/O.

The body is ``{"event", "event_id", "is_tracking_first_tag", "msg": Tracking, "ts"}``; events
``tracking_update``, ``edd_revise`` and ``tracking_pending_time`` all carry the Tracking in
``msg``. :func:`parse_webhook` emits one event per ``msg.checkpoints`` entry (oldest first) and
then one for the tracking's current ``tag``/``subtag``, timed by ``ts``.

Event ids: ``aftership:<tracking>:<checkpoint_time>:<subtag or tag>`` for checkpoints and
``aftership:<event_id>`` for the tracking state (``event_id`` is AfterShip's UUID of the webhook
event; without it ``aftership:<msg.id or tracking>:<ts>``).

Times: ``checkpoint_time`` is the courier's time and may lack an offset
(``2021-01-14T00:52:00``) or be a bare date; those are taken as UTC, which can be off by the
courier's local offset. ``ts`` is a Unix timestamp. The expected delivery date is read,
best effort (the reference does not document these fields), from
``latest_estimated_delivery.datetime``, ``courier_estimated_delivery_date.estimated_delivery_date``,
``aftership_estimated_delivery_date.estimated_delivery_date`` or ``expected_delivery``.
The signature check is in :mod:`trackflow.sources.signatures`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
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

SOURCE = "aftership"


class AfterShipPayloadError(SourcePayloadError):
    """The AfterShip payload cannot become events; ``reason`` names the field at fault."""


# tag -- the 9 documented delivery statuses.
STATUS: dict[str, StatusEntry] = {
    "Pending": (CarrierStatus.LABEL_CREATED, None),  # added, no tracking info yet
    "InfoReceived": (CarrierStatus.LABEL_CREATED, None),
    "InTransit": (CarrierStatus.IN_TRANSIT, None),
    "OutForDelivery": (CarrierStatus.OUT_FOR_DELIVERY, None),
    "AttemptFail": (CarrierStatus.EXCEPTION, ExceptionKind.FAILED_ATTEMPT),
    "Delivered": (CarrierStatus.DELIVERED, None),
    "AvailableForPickup": (CarrierStatus.AVAILABLE_FOR_PICKUP, None),
    "Exception": (CarrierStatus.EXCEPTION, ExceptionKind.UNKNOWN),
    # No tracking information for 30 days: a problem of unknown kind (the workflow's own
    # staleness timers decide "lost").
    "Expired": (CarrierStatus.EXCEPTION, ExceptionKind.UNKNOWN),
}

# subtag -- every documented code (meanings of some are unverified; those refine nothing).
DETAIL: dict[str, DetailEntry] = {
    "Delivered_001": None,
    "Delivered_002": None,  # picked up by the customer
    "Delivered_003": None,  # signed by customer
    "Delivered_004": None,  # cash on delivery received
    "Delivered_005": None,  # delivered to neighbour (2026-07)
    "AvailableForPickup_001": None,
    "Exception_001": None,  # generic exception -> unknown kind
    "Exception_002": ExceptionKind.ADDRESS_ISSUE,  # customer moved
    "Exception_003": ExceptionKind.RETURN_TO_SENDER,  # customer refused delivery
    "Exception_004": ExceptionKind.CUSTOMS_HOLD,  # delayed (customs clearance)
    "Exception_005": ExceptionKind.CARRIER_DELAY,  # delayed (external factors)
    "Exception_006": ExceptionKind.HELD_AT_FACILITY,  # held for payment
    "Exception_007": ExceptionKind.ADDRESS_ISSUE,  # incorrect address
    "Exception_008": ExceptionKind.CARRIER_DELAY,  # pick up missed
    "Exception_009": None,  # rejected by carrier
    "Exception_010": ExceptionKind.RETURN_TO_SENDER,  # returning to sender
    "Exception_011": CarrierStatus.RETURNED,  # returned to sender (received by sender)
    "Exception_012": ExceptionKind.DAMAGED,
    "Exception_013": ExceptionKind.LOST,
    "Exception_016": ExceptionKind.CARRIER_DELAY,  # delayed (processing issue)
    "Exception_017": ExceptionKind.WEATHER_DELAY,  # delayed (extreme weather)
    "Exception_018": ExceptionKind.CUSTOMS_HOLD,  # incorrect / missing documents
    "AttemptFail_001": None,
    "AttemptFail_002": None,
    "AttemptFail_003": None,
    "InTransit_001": None,
    "InTransit_002": None,  # acceptance scan
    "InTransit_003": None,
    "InTransit_004": None,
    "InTransit_005": None,
    "InTransit_006": None,
    "InTransit_007": None,  # departure scan
    "InTransit_008": None,
    "InTransit_009": None,
    "InfoReceived_001": None,
    "OutForDelivery_001": None,
    "OutForDelivery_003": None,
    "OutForDelivery_004": None,
    "Pending_001": None,
    "Pending_002": None,
    "Pending_003": None,
    "Pending_004": None,
    "Pending_005": None,
    "Pending_006": None,
    "Expired_001": None,
}

_TAG_BY_FOLDED = {tag.lower(): tag for tag in STATUS}
_SUBTAG_BY_FOLDED = {subtag.lower(): subtag for subtag in DETAIL}


def _code(value: str | None, canonical: Mapping[str, str]) -> str | None:
    if not value or not value.strip():
        return None
    raw = value.strip()
    return canonical.get(raw.lower(), raw)


def normalize(tag: str | None, subtag: str | None = None) -> Normalized:
    """AfterShip ``tag`` + ``subtag`` -> ours; unknown codes -> ``known=False``, kept raw."""
    return combine(STATUS, DETAIL, _code(tag, _TAG_BY_FOLDED), _code(subtag, _SUBTAG_BY_FOLDED))


def _estimated_delivery(msg: Mapping[str, Any]) -> date | None:
    candidates = (
        ("msg.latest_estimated_delivery.datetime", mapping(msg.get("latest_estimated_delivery"))),
        (
            "msg.courier_estimated_delivery_date.estimated_delivery_date",
            mapping(msg.get("courier_estimated_delivery_date")),
        ),
        (
            "msg.aftership_estimated_delivery_date.estimated_delivery_date",
            mapping(msg.get("aftership_estimated_delivery_date")),
        ),
    )
    for field, holder in candidates:
        key = field.rsplit(".", 1)[1]
        day = parse_day(holder.get(key), field, AfterShipPayloadError)
        if day is not None:
            return day
    return parse_day(msg.get("expected_delivery"), "msg.expected_delivery", AfterShipPayloadError)


def _ts(payload: Mapping[str, Any]) -> datetime:
    stamp = payload.get("ts")
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):
        raise AfterShipPayloadError("ts is missing or not a Unix timestamp")
    try:
        return datetime.fromtimestamp(stamp, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise AfterShipPayloadError(f"ts {stamp!r} is out of range") from None


def parse_webhook(payload: Mapping[str, Any]) -> list[CarrierEvent]:
    """An AfterShip tracking webhook body -> events (checkpoints oldest first, then the state).

    Raises AfterShipPayloadError, naming the field, for a missing ``msg``, a missing or unusable
    ``msg.tracking_number``, a missing ``msg.tag``, a bad ``ts`` or a malformed time.
    """
    if not isinstance(payload, Mapping):
        raise AfterShipPayloadError("payload is not a JSON object")
    msg = payload.get("msg")
    if not isinstance(msg, Mapping):
        raise AfterShipPayloadError("msg is missing or not a Tracking object")
    tracking = tracking_number(
        msg.get("tracking_number"), "msg.tracking_number", AfterShipPayloadError
    )
    tag = text(msg.get("tag"))
    if tag is None:
        raise AfterShipPayloadError("msg.tag is missing")
    occurred_at = _ts(payload)

    checkpoints = msg.get("checkpoints")
    if checkpoints is not None and not isinstance(checkpoints, list):
        raise AfterShipPayloadError("msg.checkpoints is not a list")
    events: list[CarrierEvent] = []
    for index, checkpoint in enumerate(checkpoints or []):
        where = f"msg.checkpoints[{index}]"
        if not isinstance(checkpoint, Mapping):
            raise AfterShipPayloadError(f"{where} is not an object")
        when = parse_time(
            checkpoint.get("checkpoint_time"), f"{where}.checkpoint_time", AfterShipPayloadError
        )
        normalized = normalize(text(checkpoint.get("tag")), text(checkpoint.get("subtag")))
        code = normalized.raw_detail or normalized.raw_status or ""
        events.append(
            build_event(
                AfterShipPayloadError,
                where,
                normalized,
                tracking_number=tracking,
                occurred_at=when,
                description=clip(checkpoint.get("message")),
                location=_checkpoint_location(checkpoint),
                event_id=f"{SOURCE}:{tracking}:{when.isoformat()}:{code}"[:200],
                source=SOURCE,
            )
        )
    events.sort(key=lambda event: event.occurred_at)

    latest = events[-1] if events else None
    webhook_id = text(payload.get("event_id"))
    if webhook_id is None:
        webhook_id = f"{text(msg.get('id')) or tracking}:{occurred_at.isoformat()}"
    events.append(
        build_event(
            AfterShipPayloadError,
            "msg",
            normalize(tag, text(msg.get("subtag"))),
            tracking_number=tracking,
            occurred_at=occurred_at,
            description=clip(msg.get("subtag_message")) or (latest.description if latest else None),
            location=latest.location if latest else None,
            estimated_delivery=_estimated_delivery(msg),
            event_id=f"{SOURCE}:{webhook_id}"[:200],
            source=SOURCE,
        )
    )
    return events


def _checkpoint_location(checkpoint: Mapping[str, Any]) -> str | None:
    country = (
        checkpoint.get("country_region")
        or checkpoint.get("country_iso3")
        or checkpoint.get("country_name")
    )
    return join_location(checkpoint.get("city"), checkpoint.get("state"), country) or clip(
        checkpoint.get("location"), 200
    )
