"""Small builders for the domain models used by the policy tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytz

from trackflow.models import (
    Address,
    CarrierEvent,
    CarrierStatus,
    Customer,
    ExceptionKind,
    Shipment,
    ShippingSpeed,
)
from trackflow.tracking_policy import ALWAYS, TrackingPolicy

TRACKING_NUMBER = "1Z999AA10123456784"
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def at(hours: float = 0, minutes: float = 0) -> datetime:
    """A point in time relative to T0."""
    return T0 + timedelta(hours=hours, minutes=minutes)


def make_customer(
    *,
    email: str | None = "ada@example.com",
    phone: str | None = "+15025550123",
    sms_consent: bool = True,
    name: str | None = "Ada Lovelace",
    timezone: str | None = None,
    address: Address | None = None,
) -> Customer:
    return Customer(
        name=name,
        email=email,
        phone=phone,
        sms_consent=sms_consent,
        timezone=timezone,
        address=address,
    )


def make_address(province_code: str | None = None, country_code: str = "US") -> Address:
    """A delivery address; only the region matters to the policy (zone, SMS hours)."""
    return Address(address1="1 Main St", province_code=province_code, country_code=country_code)


def local(zone: str, year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """The UTC instant at which the wall clock of `zone` shows the given time."""
    wall = datetime(year, month, day, hour, minute)  # naive on purpose: localized below
    return pytz.timezone(zone).localize(wall, is_dst=None).astimezone(UTC)


def make_shipment(
    *,
    order_value: Decimal | str | int = "49.00",
    email: str | None = "ada@example.com",
    phone: str | None = "+15025550123",
    sms_consent: bool = True,
    customer_order_count: int = 1,
    shipping_speed: ShippingSpeed = ShippingSpeed.STANDARD,
    tracking_number: str = TRACKING_NUMBER,
    timezone: str | None = None,
    address: Address | None = None,
    **overrides: Any,
) -> Shipment:
    fields: dict[str, Any] = {
        "order_id": "1001",
        "order_name": "#1001",
        "tracking_number": tracking_number,
        "carrier": "UPS",
        "customer": make_customer(
            email=email, phone=phone, sms_consent=sms_consent, timezone=timezone, address=address
        ),
        "order_value": Decimal(str(order_value)),
        "shipping_speed": shipping_speed,
        "customer_order_count": customer_order_count,
    }
    fields.update(overrides)
    return Shipment(**fields)


def make_event(
    status: CarrierStatus,
    occurred_at: datetime | None = None,
    *,
    exception: ExceptionKind | None = None,
    event_id: str | None = None,
    tracking_number: str = TRACKING_NUMBER,
    **overrides: Any,
) -> CarrierEvent:
    return CarrierEvent(
        tracking_number=tracking_number,
        status=status,
        exception=exception,
        occurred_at=occurred_at if occurred_at is not None else T0,
        event_id=event_id,
        **overrides,
    )


def exception_event(
    kind: ExceptionKind, occurred_at: datetime | None = None, **kw: Any
) -> CarrierEvent:
    return make_event(CarrierStatus.EXCEPTION, occurred_at, exception=kind, **kw)


# Tests that are not about quiet hours must not depend on the time of day they run at.
ANY_TIME_POLICY = TrackingPolicy(email_window=ALWAYS, sms_window=ALWAYS)
