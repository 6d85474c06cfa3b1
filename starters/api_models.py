"""Request bodies of the JSON API: the domain models plus the checks that need the clock or
pytz's tables. They run at the edge only; workflows never re-run them on replay."""

from __future__ import annotations

from datetime import UTC, datetime

import pytz
from pydantic import Field, field_validator

from trackflow.event_time import implausible_time
from trackflow.models import CarrierEvent, Customer, Shipment
from trackflow.tracking_policy import MAX_TIME_SCALE


class CustomerIn(Customer):
    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str | None) -> str | None:
        if name is None or not name.strip():
            return None
        try:
            return str(pytz.timezone(name.strip()).zone)
        except pytz.UnknownTimeZoneError:
            raise ValueError("unknown IANA time zone; e.g. Europe/London") from None


class ShipmentIn(Shipment):
    customer: CustomerIn
    time_scale: float | None = Field(
        default=None,
        ge=1,
        le=MAX_TIME_SCALE,
        strict=True,
        description="this shipment's durations pass this many times faster (demos, dry runs); "
        "default: TRACKFLOW_TIME_SCALE, i.e. real time. Applies when the shipment is registered",
    )


class CarrierEventIn(CarrierEvent):
    @field_validator("occurred_at")
    @classmethod
    def _plausible(cls, occurred_at: datetime) -> datetime:
        if occurred_at.utcoffset() is not None and (
            reason := implausible_time(occurred_at, datetime.now(UTC))
        ):
            raise ValueError(reason)
        return occurred_at
