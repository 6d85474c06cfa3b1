"""Request bodies of the JSON API: the domain models plus the checks that need the clock or
pytz's tables. They run at the edge only; workflows never re-run them on replay."""

from __future__ import annotations

from datetime import UTC, datetime

import pytz
from pydantic import field_validator

from trackflow.event_time import implausible_time
from trackflow.models import CarrierEvent, Customer, Shipment


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


class CarrierEventIn(CarrierEvent):
    @field_validator("occurred_at")
    @classmethod
    def _plausible(cls, occurred_at: datetime) -> datetime:
        if occurred_at.utcoffset() is not None and (
            reason := implausible_time(occurred_at, datetime.now(UTC))
        ):
            raise ValueError(reason)
        return occurred_at
