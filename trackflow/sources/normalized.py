"""Shared pieces of the carrier-aggregator sources (EasyPost, ShipEngine, AfterShip). Pure.

:class:`Normalized` is what a provider's ``normalize(code_a, code_b)`` returns: our status and
exception kind plus the provider's raw codes, and whether both codes were recognised.

:func:`combine` is the one rule every provider table uses:

* The status-level code picks the base ``(status, exception)``. An unrecognised status code
  becomes ``exception``/``unknown`` with ``known=False`` -- never dropped.
* The detail code may *refine* the base. A detail entry is one of:

  - ``None``: no refinement (the status-level mapping stands);
  - an :class:`ExceptionKind`: the event becomes ``exception`` with that kind, unless the base
    is final or a pickup (``delivered``, ``returned``, ``available_for_pickup``), which stands;
  - a :class:`CarrierStatus`: the event takes that status, unless the base is ``delivered`` or
    ``returned``, which stands.

  An unrecognised detail code keeps the status-level mapping with ``known=False``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from trackflow.models import CarrierEvent, CarrierStatus, ExceptionKind, normalize_tracking_number

StatusEntry = tuple[CarrierStatus, ExceptionKind | None]
DetailEntry = CarrierStatus | ExceptionKind | None

_FINAL = frozenset({CarrierStatus.DELIVERED, CarrierStatus.RETURNED})
_NO_EXCEPTION_OVER = _FINAL | {CarrierStatus.AVAILABLE_FOR_PICKUP}


class Normalized(BaseModel):
    """A provider's (status, detail) codes in our taxonomy, raw codes kept."""

    model_config = ConfigDict(frozen=True)

    status: CarrierStatus
    exception: ExceptionKind | None = None
    raw_status: str | None = None
    raw_detail: str | None = None
    known: bool = True


class SourcePayloadError(ValueError):
    """A provider payload cannot become events; ``reason`` names the field at fault."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def combine(
    statuses: Mapping[str, StatusEntry],
    details: Mapping[str, DetailEntry],
    raw_status: str | None,
    raw_detail: str | None,
) -> Normalized:
    """Apply the module rule above to one pair of already-canonicalised codes."""
    known = True
    base = statuses.get(raw_status) if raw_status is not None else None
    if base is None:
        base, known = (CarrierStatus.EXCEPTION, ExceptionKind.UNKNOWN), False
    status, kind = base
    if raw_detail is not None:
        if raw_detail not in details:
            known = False
        else:
            refinement = details[raw_detail]
            if isinstance(refinement, ExceptionKind):
                if status not in _NO_EXCEPTION_OVER:
                    status, kind = CarrierStatus.EXCEPTION, refinement
            elif isinstance(refinement, CarrierStatus) and status not in _FINAL:
                if refinement == CarrierStatus.EXCEPTION:
                    kind = kind or ExceptionKind.UNKNOWN
                else:
                    kind = None
                status = refinement
    return Normalized(
        status=status, exception=kind, raw_status=raw_status, raw_detail=raw_detail, known=known
    )


# --- payload helpers shared by the sources --------------------------------------------------


def mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def parse_time(value: object, field: str, error: type[SourcePayloadError]) -> datetime:
    """ISO 8601 (``Z`` allowed) or a date; a value without an offset is taken as UTC."""
    raw = text(value)
    if raw is None:
        raise error(f"{field} is missing")
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise error(f"{field} is not an ISO 8601 time: {raw!r}") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def parse_day(value: object, field: str, error: type[SourcePayloadError]) -> date | None:
    """The calendar date of a date or date-time text (as written, no zone shift); None if absent."""
    raw = text(value)
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw[:10])
    except ValueError:
        raise error(f"{field} is not an ISO 8601 date: {raw!r}") from None


def join_location(*parts: object) -> str | None:
    words = [t for t in (text(p) for p in parts) if t]
    joined = ", ".join(words)
    return joined[:200] if joined else None


def clip(value: object, limit: int = 500) -> str | None:
    raw = text(value)
    return raw[:limit] if raw else None


def build_event(
    error: type[SourcePayloadError],
    where: str,
    normalized: Normalized,
    **fields: Any,
) -> CarrierEvent:
    """A CarrierEvent from a normalized status; a validation failure names ``where``."""
    try:
        return CarrierEvent(
            status=normalized.status,
            exception=normalized.exception,
            raw_status=(normalized.raw_status or "")[:100] or None,
            raw_detail=(normalized.raw_detail or "")[:100] or None,
            recognised=normalized.known,
            **fields,
        )
    except ValidationError as failure:
        first = failure.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "event"
        raise error(f"{where}: {field}: {first['msg']}") from None


def tracking_number(value: object, field: str, error: type[SourcePayloadError]) -> str:
    """The bare tracking number, or a payload error naming ``field``."""
    raw = text(value)
    if raw is None:
        raise error(f"{field} is missing")
    try:
        return normalize_tracking_number(raw)
    except ValueError as failure:
        raise error(f"{field} {raw!r} is unusable: {failure}") from None
