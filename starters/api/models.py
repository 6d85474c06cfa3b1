"""Request bodies of the JSON API: the domain models plus the checks that need the clock or
pytz's tables, and the same clock check for webhooks' events. They run at the edge only;
workflows never re-run them on replay."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Literal

import pytz
from pydantic import BaseModel, Field, field_validator

from trackflow.event_time import implausible_time
from trackflow.models import CarrierEvent, Customer, ReturnRequest, Shipment
from trackflow.tracking_policy import MAX_TIME_SCALE

logger = logging.getLogger("trackflow.api")


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


class ReturnRequestBody(BaseModel):
    """`POST /v1/shipments/{n}/return-requests`; without `request_id`, retries of the same
    body are recognised by its content."""

    kind: Literal["refund", "return"] = "return"
    request_id: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, max_length=1000)

    def to_request(self) -> ReturnRequest:
        digest = hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]
        return ReturnRequest(
            request_id=self.request_id or f"api-{digest}", kind=self.kind, reason=self.reason
        )


def plausible(events: list[CarrierEvent]) -> tuple[list[CarrierEvent], list[dict[str, str]]]:
    """A webhook's events with a believable time, and why the others were left out."""
    now = datetime.now(UTC)
    kept, rejected = [], []
    for event in events:
        if reason := implausible_time(event.occurred_at, now):
            logger.warning("event %s left out: %s", event.dedupe_key, reason)
            rejected.append({"event": event.event_id or event.dedupe_key, "reason": reason})
        else:
            kept.append(event)
    return kept, rejected
