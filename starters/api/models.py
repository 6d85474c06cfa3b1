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
from trackflow.links import placeholder_because
from trackflow.models import (
    CarrierEvent,
    Code,
    Customer,
    NumberWarning,
    ReturnRequest,
    Shipment,
)
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

    @field_validator("tracking_url")
    @classmethod
    def _not_a_placeholder(cls, url: str | None) -> str | None:
        """A template left in (`https://...`) would be every message's link: refused here;
        from other sources (Shopify) such a link is ignored where links are made."""
        if url is None or not url.strip():
            return None
        if why := placeholder_because(url):
            raise ValueError(why)
        return url


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
    order_id: Code | None = Field(
        default=None,
        description="the order the request is about; when given and the number is tracked "
        "for another order (a recycled number), the request is refused with a 409",
    )

    def to_request(self) -> ReturnRequest:
        digest = hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]
        return ReturnRequest(
            request_id=self.request_id or f"api-{digest}",
            kind=self.kind,
            reason=self.reason,
            order_id=self.order_id,
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


# --- answers ----------------------------------------------------------------------------------

REGISTRATION_OUTCOMES = (
    "`accepted`: a new tracking lifecycle started for this order (its messages will go out); "
    "`updated`: the order's shipment was already followed and these facts replace the "
    "earlier ones; `already_registered`: nothing new (the same facts, or a replayed webhook); "
    "`ignored`: not applied, `detail` says why (e.g. older than the facts already applied)"
)


NUMBER_WARNINGS = (
    "what looks wrong with the tracking number for the carrier given, accepted all the same "
    "(also in `GET /v1/shipments/{n}` and one ops alert): `code` `not_carrier_format` (fits "
    "none of the carrier's formats), `check_digit` (its shape, not its check digit: a typo?) "
    "or `unknown_format` (no carrier given, fits no known format), and a `message`. With "
    "TRACKFLOW_REJECT_INVALID_NUMBERS=true such a registration is a 422 instead"
)


def refusal(warnings: list[NumberWarning]) -> str:
    """The 422's detail when TRACKFLOW_REJECT_INVALID_NUMBERS refuses a number."""
    said = "; ".join(f"{warning.message} ({warning.code})" for warning in warnings)
    return f"tracking_number: {said}; refused because TRACKFLOW_REJECT_INVALID_NUMBERS is set"


class Registration(BaseModel):
    """`POST /v1/shipments`: what the shipment's workflow made of the registration."""

    workflow_id: str
    tracking_number: str
    outcome: Literal["accepted", "updated", "already_registered", "ignored"] = Field(
        description=REGISTRATION_OUTCOMES
    )
    detail: str | None = Field(default=None, description="why, where there is a why")
    warnings: list[NumberWarning] = Field(
        default_factory=list,
        description=NUMBER_WARNINGS,
    )


class RegistrationAfterTracking(BaseModel):
    """`POST /v1/shipments` for an order whose shipment on this number was already tracked to
    the end: nothing is started again."""

    ignored: str = Field(description="why nothing happened")
    tracking_number: str


class ReturnRequestAnswer(BaseModel):
    """`POST /v1/shipments/{n}/return-requests`: whether the shipment started a return."""

    tracking_number: str
    request_id: str = Field(description="the request's id (derived from the body when not given)")
    outcome: Literal["return_started", "ignored"] = Field(
        description="`return_started`: the returns flow runs (`detail`: its workflow id); "
        "`ignored`: nothing started, `detail` says why (not delivered yet, outside the return "
        "window, already requested, tracking ended)"
    )
    detail: str | None = None


class ErrorAnswer(BaseModel):
    detail: str


REFUSED_ANOTHER_ORDER = {
    "model": ErrorAnswer,
    "description": "Another order is still being tracked on this tracking number (a number "
    "is followed for one live order at a time); nothing was changed. `detail` says which",
}
INVALID_NUMBER_REFUSED = {
    "model": ErrorAnswer,
    "description": "The body is invalid (`detail` names the field), or, with "
    "TRACKFLOW_REJECT_INVALID_NUMBERS=true, the tracking number does not fit its carrier "
    "(`detail`: `tracking_number: …`); nothing was registered",
}
NO_WORKER_ANSWERED = {
    "model": ErrorAnswer,
    "description": "Temporal is unreachable, or no trackflow worker answered within 20 s: "
    "nothing is confirmed (a new shipment may start once a worker runs). Asking again is "
    "safe; `Retry-After` says when",
}


class ShopifyShipmentResult(BaseModel):
    """One shipment of a fulfillment webhook: the registration's outcome, or `refused`
    (another order is live on the number: answered here, not as a 409 that Shopify would
    retry for hours), or `ignored` when this order's tracking of the number already ended."""

    tracking_number: str
    workflow_id: str | None = None
    outcome: Literal["accepted", "updated", "already_registered", "ignored", "refused"] = Field(
        description=REGISTRATION_OUTCOMES + "; `refused`: another order is live on the number, "
        "or (TRACKFLOW_REJECT_INVALID_NUMBERS) the number does not fit its carrier"
    )
    detail: str | None = None
    cancelled: bool = Field(default=False, description="the fulfillment was cancelled")
    warnings: list[NumberWarning] = Field(default_factory=list, description=NUMBER_WARNINGS)


class ShopifyReturnResult(BaseModel):
    """One tracked shipment of the order a refund or return request is about."""

    tracking_number: str
    outcome: Literal["return_started", "ignored", "refused"]
    detail: str | None = None


class ShopifyFulfillmentAnswer(BaseModel):
    shipments: list[ShopifyShipmentResult]


class ShopifyReturnAnswer(BaseModel):
    shipments: list[ShopifyReturnResult]


class ShopifyIgnored(BaseModel):
    ignored: str = Field(description="why the webhook changes nothing (topic, untracked order)")
