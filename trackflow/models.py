"""Typed domain models shared by the starters, the workflow and the activities.

Everything here is plain data (pydantic v2) and safe inside the workflow sandbox.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from trackflow.carrier_codes import carrier_code, carrier_label
from trackflow.email_address import OptionalEmailAddress
from trackflow.limits import (
    MAX_LINE_ITEMS,
    MAX_ORDER_VALUE_DIGITS,
    MAX_QUANTITY,
    NAME_TEXT,
    SHORT_TEXT,
    URL_TEXT,
)

_TRACKING_NOISE = re.compile(r"[\s\-]+")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_PLAIN_DECIMAL = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


class InvalidTrackingNumber(ValueError):
    pass


def normalize_tracking_number(raw: str) -> str:
    """Carriers print numbers with spaces and dashes and in any case; we key on the bare form."""
    number = _TRACKING_NOISE.sub("", raw).upper()
    if not number or not number.isascii() or not number.isalnum():
        raise InvalidTrackingNumber(
            "tracking number must be letters and digits (spaces and dashes allowed)"
        )
    if not 5 <= len(number) <= 40:
        raise InvalidTrackingNumber("tracking number must be 5 to 40 characters")
    return number


def workflow_id_for(tracking_number: str) -> str:
    return f"shipment-{normalize_tracking_number(tracking_number)}"


def _check_phone(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    compact = re.sub(r"[\s\-().]", "", value)
    if not _E164.match(compact):
        raise ValueError("phone must be in E.164 form, e.g. +15025550123")
    return compact


TrackingNumber = Annotated[
    str, StringConstraints(max_length=100), AfterValidator(normalize_tracking_number)
]
Email = OptionalEmailAddress
Phone = Annotated[str | None, StringConstraints(max_length=40), AfterValidator(_check_phone)]
Code = Annotated[str, StringConstraints(max_length=SHORT_TEXT)]
Text = Annotated[str, StringConstraints(max_length=NAME_TEXT)]
Url = Annotated[str, StringConstraints(max_length=URL_TEXT)]


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CarrierStatus(StrEnum):
    """The normalized status of one carrier event."""

    LABEL_CREATED = "label_created"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    AVAILABLE_FOR_PICKUP = "available_for_pickup"
    RETURNED = "returned"


class Milestone(StrEnum):
    """The four steps every parcel goes through, in order. A milestone's name is the same as
    a carrier status (`CarrierStatus`), a message trigger (`Trigger`) and where the shipment
    stands (`Phase`), so `Trigger(milestone)` and `Phase(milestone)` need no table."""

    LABEL_CREATED = "label_created"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"

    @property
    def rank(self) -> int:
        return _MILESTONE_ORDER.index(self)

    @classmethod
    def of(cls, name: str) -> Milestone | None:
        """The milestone a status or trigger names, if it names one."""
        return cls(name) if name in cls._value2member_map_ else None

    @classmethod
    def at(cls, rank: int) -> Milestone:
        return _MILESTONE_ORDER[rank]


_MILESTONE_ORDER = tuple(Milestone)


class ExceptionKind(StrEnum):
    WEATHER_DELAY = "weather_delay"
    CARRIER_DELAY = "carrier_delay"
    ADDRESS_ISSUE = "address_issue"
    FAILED_ATTEMPT = "failed_attempt"
    HELD_AT_FACILITY = "held_at_facility"
    CUSTOMS_HOLD = "customs_hold"
    DAMAGED = "damaged"
    LOST = "lost"
    RETURN_TO_SENDER = "return_to_sender"
    UNKNOWN = "unknown"


class Trigger(StrEnum):
    """Why a message is sent; also the `trigger` column of the outbox."""

    LABEL_CREATED = "label_created"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    LOST = "lost"
    STALE = "stale"
    REVIEW_REQUEST = "review_request"
    RETURN_REQUESTED = "return_requested"


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class ShippingSpeed(StrEnum):
    STANDARD = "standard"
    EXPRESS = "express"


class Address(Model):
    name: Text | None = None
    address1: Text | None = None
    address2: Text | None = None
    city: Text | None = None
    province: Text | None = None
    province_code: Code | None = None
    zip: Code | None = None
    country: Text | None = None
    country_code: Code | None = None


class Customer(Model):
    name: Text | None = None
    email: Email = None
    phone: Phone = None
    sms_consent: bool = False
    timezone: Code | None = None
    address: Address | None = None

    @property
    def first_name(self) -> str | None:
        return self.name.split()[0] if self.name and self.name.strip() else None


class LineItem(Model):
    title: Text
    quantity: int = Field(default=1, ge=1, le=MAX_QUANTITY)
    sku: Text | None = None


class CarrierReason(StrEnum):
    """Why a shipment is followed with the carrier it is (`trackflow.carriers.resolve`)."""

    DECLARED_FITS = "declared_fits"  # the number fits a format of the declared carrier
    SHARED_SHAPE = "shared_shape"  # formats of several couriers fit: the declared one stands
    DECLARED_OUTSIDE_TABLE = "declared_outside_table"  # no format of it to contradict it
    NUMBER_FORMAT = "number_format"  # a format only another courier uses: it replaces it
    DETECTED = "detected"  # nothing declared; the formats of one courier fit
    DESTINATION_COUNTRY = "destination_country"  # nothing declared; one delivers there
    RANKING = "ranking"  # nothing declared; the table's ranking of the fitting formats
    UNRECOGNISED = "unrecognised"  # no format validly fits: what was declared, if anything


class NumberWarningCode(StrEnum):
    """Why a tracking number looks wrong. Accepted all the same (carriers add formats), unless
    `TRACKFLOW_REJECT_INVALID_NUMBERS` is set: see `trackflow.carriers.validity`."""

    NOT_CARRIER_FORMAT = "not_carrier_format"
    """A carrier was named, and the number fits none of its formats (nor, validly, another's)."""
    CHECK_DIGIT = "check_digit"
    """The number has a known format's shape but its check digit is wrong: a typo?"""
    UNKNOWN_FORMAT = "unknown_format"
    """No carrier was named and the number fits no format trackflow knows."""


class NumberWarning(Model):
    """Something wrong with a tracking number, found when the shipment was registered."""

    code: NumberWarningCode
    message: str


class PinnedFacts(Model):
    """Facts looked up in tables and pytz when the shipment was registered or updated. They
    travel with the shipment into the workflow, so that a replay after a pytz upgrade or an
    edit of a zone table decides exactly as the first run did (see `trackflow.pinning`)."""

    timezone: Code = Field(description="the customer's IANA zone, as pytz spelt it then")
    timezone_source: Code = Field(description="customer, address_region, address_country...")
    region: Code | None = Field(default=None, description="ISO 3166-2 code for send windows")
    carrier_reason: CarrierReason | None = Field(
        default=None, description="why the shipment's carrier is the one it is (None: older)"
    )
    warnings: list[NumberWarning] = Field(
        default_factory=list, description="what looked wrong with the tracking number"
    )


class Shipment(Model):
    """One tracking number of one order: the unit a workflow follows."""

    order_id: str = Field(min_length=1, max_length=SHORT_TEXT)
    order_name: Text | None = None
    tracking_number: TrackingNumber
    carrier: Code | None = Field(
        default=None,
        description="the courier as a code ([a-z0-9_]): 'UPS' and 'ups' are 'ups', 'DHL Express' "
        "is 'dhl'; another name is slugified, its text kept in carrier_label",
    )
    carrier_label: Text | None = Field(
        default=None, description="the carrier's name as the source wrote it (display only)"
    )
    customer: Customer
    order_value: Decimal = Field(ge=0, max_digits=MAX_ORDER_VALUE_DIGITS, decimal_places=2)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    shipping_speed: ShippingSpeed = ShippingSpeed.STANDARD
    customer_order_count: int = Field(default=1, ge=0)
    tracking_url: Url | None = None
    declared_carrier: Code | None = Field(
        default=None, description="what the platform said, when the number says otherwise"
    )
    detected_format: Code | None = None
    poll_via: Literal["easypost", "shipengine"] | None = Field(
        default=None, description="aggregator to poll while no webhook event has arrived"
    )
    items: list[LineItem] = Field(default_factory=list, max_length=MAX_LINE_ITEMS)
    source: Literal["api", "shopify"] = "api"
    shop_domain: Text | None = None
    fulfillment_id: Code | None = None
    pinned: PinnedFacts | None = Field(
        default=None, description="set by trackflow when it registers the shipment"
    )

    @field_validator("order_id", mode="before")
    @classmethod
    def _order_id_as_text(cls, value: object) -> object:
        # Shopify ids exceed 2^53: accept a JSON number but keep its exact digits.
        return str(value) if isinstance(value, int) else value

    @field_validator("order_value", mode="before")
    @classmethod
    def _plain_decimal(cls, value: object) -> object:
        # Decimal() reads any Unicode digit (full-width, Arabic-Indic) and "1_000": ASCII only.
        if isinstance(value, str) and not _PLAIN_DECIMAL.match(value):
            raise ValueError("order_value must be a plain decimal number, e.g. 212.50")
        return value

    @model_validator(mode="before")
    @classmethod
    def _keep_carrier_label(cls, data: object) -> object:
        # The label is the name as given, taken before the carrier becomes a code; a shipment
        # validated again (a history's input) keeps the label it has.
        raw = data.get("carrier") if isinstance(data, dict) else None
        if isinstance(data, dict) and isinstance(raw, str) and not data.get("carrier_label"):
            return {**data, "carrier_label": carrier_label(raw)}
        return data

    @field_validator("carrier")
    @classmethod
    def _carrier_code(cls, value: str | None) -> str | None:
        return carrier_code(value)

    @model_validator(mode="after")
    def _reachable(self) -> Shipment:
        if not self.customer.email and not self.customer.phone:
            raise ValueError("customer needs an email or a phone to be notified")
        return self

    @property
    def workflow_id(self) -> str:
        return workflow_id_for(self.tracking_number)


class CarrierEvent(Model):
    """A normalized carrier scan, whatever source it came from."""

    tracking_number: TrackingNumber
    status: CarrierStatus
    exception: ExceptionKind | None = None
    occurred_at: datetime
    description: str | None = Field(default=None, max_length=500)
    location: str | None = Field(default=None, max_length=200)
    estimated_delivery: date | None = None
    hold_until: date | None = Field(
        default=None, description="held at a facility: the last day it can be picked up"
    )
    event_id: str | None = Field(default=None, max_length=200)
    source: Code = "api"
    polled: bool = Field(default=False, description="fetched by our polling, not pushed to us")
    raw_status: str | None = Field(default=None, max_length=100, description="the source's code")
    raw_detail: str | None = Field(default=None, max_length=100)
    recognised: bool = Field(default=True, description="False: an unknown code, kept as is")

    @property
    def raw_code(self) -> str | None:
        if self.raw_status is None:
            return None
        return self.raw_status + (f"/{self.raw_detail}" if self.raw_detail else "")

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("occurred_at needs a time zone offset, e.g. 2026-11-20T14:03:00Z")
        return value

    @model_validator(mode="after")
    def _exception_only_with_exception_status(self) -> CarrierEvent:
        if self.exception is not None and self.status != CarrierStatus.EXCEPTION:
            raise ValueError("exception is only allowed with status 'exception'")
        return self

    @property
    def dedupe_key(self) -> str:
        """Duplicates are recognised by event id, else by content."""
        if self.event_id:
            return f"{self.source}:{self.event_id}"
        stamp = self.occurred_at.timestamp()
        return f"{self.status}:{self.exception or ''}:{stamp:.0f}:{self.location or ''}"


class ReturnRequest(Model):
    """The customer asked for a refund or to send the order back."""

    request_id: str = Field(min_length=1, max_length=200)
    kind: Literal["refund", "return"] = "return"
    order_id: Code | None = None
    requested_at: datetime | None = None
    reason: str | None = Field(default=None, max_length=1000)
    line_item_count: int = 0


class ShipmentUpdate(Model):
    """New facts about the order (address, phone, consent, ...) from a later webhook, and the
    carrier events that came with them (a Shopify fulfillment's own tracking events)."""

    shipment: Shipment
    events: list[CarrierEvent] = Field(default_factory=list, max_length=100)
    update_id: str | None = Field(
        default=None,
        max_length=200,
        description="the source's delivery id (X-Shopify-Webhook-Id): replays",
    )
    updated_at: datetime | None = Field(
        default=None, description="when the source last changed these facts: older ones lose"
    )

    @field_validator("updated_at")
    @classmethod
    def _aware_updated_at(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("updated_at needs a time zone offset")
        return value
