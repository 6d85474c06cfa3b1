"""Shopify webhook input: signature check and payload -> domain models. Pure, no I/O.

Topics handled:

* ``fulfillments/create`` and ``fulfillments/update`` -> :func:`parse_fulfillment`
* ``refunds/create`` and ``returns/request`` (:data:`RETURN_TOPICS`) -> :func:`parse_return_request`

Ids: Shopify ids exceed 2**53. The caller must parse the body with integers intact (Python's
``json`` does); ids are kept as decimal strings here and never go through ``float``.

Fields the fulfillment payload does not carry. Shopify's fulfillment webhook has no SMS consent,
order total, customer order count or shipping speed. An order-level enrichment step (or a test)
may add these *extra* keys to the payload before parsing; without them the defaults apply:

* ``sms_consent`` (bool) or ``customer.sms_marketing_consent.state == "subscribed"``; else False.
* ``total_price`` then ``current_total_price`` (the order total); else the sum of the line items'
  ``price * quantity - total_discount``.
* ``customer.orders_count``; else 1.
* ``shipping_speed`` ("standard"/"express"); else "standard". A later order lookup of
  ``shipping_lines`` could set it.
* ``time_scale`` (a number from 1 to 100000): the shipment's durations pass that many times
  faster (demos, dry runs); else the TRACKFLOW_TIME_SCALE setting, i.e. real time.

The customer's time zone is left unset (derived elsewhere).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trackflow import carrier_codes
from trackflow.email_address import canonical_email
from trackflow.limits import MAX_ORDER_VALUE_DIGITS
from trackflow.models import (
    Address,
    CarrierEvent,
    CarrierStatus,
    Customer,
    ExceptionKind,
    LineItem,
    ReturnRequest,
    Shipment,
    ShippingSpeed,
    normalize_tracking_number,
)
from trackflow.tracking_policy import MAX_TIME_SCALE

SOURCE = "shopify"

RETURN_TOPICS = frozenset({"refunds/create", "returns/request"})


class ShopifyPayloadError(ValueError):
    """The payload cannot become a shipment; ``reason`` names the field at fault."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FulfillmentInput(BaseModel):
    """What one fulfillment webhook says: the shipments to follow and any status it carries."""

    model_config = ConfigDict(frozen=True)

    shipments: list[Shipment]
    events: list[CarrierEvent] = Field(default_factory=list)
    cancelled: bool = False
    ignored_statuses: list[str] = Field(default_factory=list)
    updated_at: datetime | None = Field(
        default=None, description="the fulfillment's last change: orders updates (None: unknown)"
    )
    time_scale: float | None = Field(
        default=None, description="the shipments' own time scale (None: the setting's)"
    )


# --- signature ------------------------------------------------------------------------------


def verify_hmac(raw_body: bytes, header_value: str | None, secret: str) -> bool:
    """Check ``X-Shopify-Hmac-Sha256``: base64 HMAC-SHA256 of the raw body keyed by the secret.

    A missing or garbled header, or an empty secret (misconfiguration), is never valid.
    """
    if not header_value or not secret:
        return False
    try:
        claimed = base64.b64decode(header_value.strip(), validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        return False
    expected = hmac.new(secret.encode(), raw_body, hashlib.sha256).digest()
    return hmac.compare_digest(claimed, expected)


# --- status tables --------------------------------------------------------------------------

# A fulfillment's ``shipment_status``; the table also knows the statuses of Shopify's
# fulfillment events (a superset of those values), which map the same way.
_STATUS: dict[str, tuple[CarrierStatus, ExceptionKind | None]] = {
    "label_printed": (CarrierStatus.LABEL_CREATED, None),
    "label_purchased": (CarrierStatus.LABEL_CREATED, None),
    "confirmed": (CarrierStatus.LABEL_CREATED, None),
    "in_transit": (CarrierStatus.IN_TRANSIT, None),
    "picked_up": (CarrierStatus.IN_TRANSIT, None),
    "carrier_picked_up": (CarrierStatus.IN_TRANSIT, None),
    "out_for_delivery": (CarrierStatus.OUT_FOR_DELIVERY, None),
    "delivered": (CarrierStatus.DELIVERED, None),
    "attempted_delivery": (CarrierStatus.EXCEPTION, ExceptionKind.FAILED_ATTEMPT),
    "ready_for_pickup": (CarrierStatus.AVAILABLE_FOR_PICKUP, None),
    "ready_for_recipient_pickup": (CarrierStatus.AVAILABLE_FOR_PICKUP, None),
    "failure": (CarrierStatus.EXCEPTION, ExceptionKind.UNKNOWN),
    "delayed": (CarrierStatus.EXCEPTION, ExceptionKind.CARRIER_DELAY),
    "buyer_action_required": (CarrierStatus.EXCEPTION, ExceptionKind.ADDRESS_ISSUE),
    "returning_to_sender": (CarrierStatus.RETURNED, None),
    "returned": (CarrierStatus.RETURNED, None),
}


def map_status(status: str) -> tuple[CarrierStatus, ExceptionKind | None] | None:
    """Shopify status (REST lower case or GraphQL upper case) -> ours; None when unknown."""
    return _STATUS.get(status.strip().lower())


def carrier_code(tracking_company: str | None) -> str | None:
    """Shopify's `tracking_company` as our carrier code (`Shipment` does this to the text)."""
    return carrier_codes.carrier_code(tracking_company)


# --- field helpers --------------------------------------------------------------------------

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_PHONE_PUNCTUATION = re.compile(r"[\s\-().]")
_NANP = {"US", "CA"}
_DIGITS = re.compile(r"^[0-9]+$")
# Prices and quantities beyond this are no order: bounding them keeps Decimal arithmetic exact.
_LARGEST_AMOUNT = Decimal(10) ** (MAX_ORDER_VALUE_DIGITS - 2)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _id(value: object, field: str) -> str:
    """An id as exact decimal text: JSON integer or digit string, never a float."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and _DIGITS.match(value.strip()):
        return value.strip()
    if isinstance(value, float):
        raise ShopifyPayloadError(f"{field} arrived as a float and may have lost digits")
    raise ShopifyPayloadError(f"{field} is missing or not an integer id")


def _email(value: object) -> str | None:
    """The order's email, canonical; one that is not a plain address is dropped (like an
    unusable phone), so the customer is reached by text or the payload is refused."""
    text = _text(value)
    if text is None:
        return None
    try:
        return canonical_email(text)
    except ValueError:
        return None


def _phone(value: object, country_code: str | None) -> str | None:
    """E.164 or a national NANP number; anything else (e.g. "555-555-SHIP") is dropped."""
    text = _text(value)
    if text is None:
        return None
    compact = _PHONE_PUNCTUATION.sub("", text)
    if compact.startswith("+"):
        return compact if _E164.match(compact) else None
    if _DIGITS.match(compact) and (country_code or "").upper() in _NANP:
        if len(compact) == 10:
            return f"+1{compact}"
        if len(compact) == 11 and compact.startswith("1"):
            return f"+{compact}"
    return None


def _decimal(value: object, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ShopifyPayloadError(f"{field} is not a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ShopifyPayloadError(f"{field} is not a number: {value!r}") from None
    if not number.is_finite():
        raise ShopifyPayloadError(f"{field} is not a finite number: {value!r}")
    if abs(number) >= _LARGEST_AMOUNT:
        raise ShopifyPayloadError(f"{field} is larger than trackflow accepts ({_LARGEST_AMOUNT:,})")
    return number


def _when(value: object, field: str) -> datetime:
    text = _text(value)
    if text is None:
        raise ShopifyPayloadError(f"{field} is missing")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ShopifyPayloadError(f"{field} is not an ISO 8601 timestamp: {text!r}") from None
    if moment.utcoffset() is None:
        raise ShopifyPayloadError(f"{field} has no time zone offset: {text!r}")
    return moment


def _time_scale(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ShopifyPayloadError(f"time_scale is not a number: {value!r}")
    if not 1 <= value <= MAX_TIME_SCALE:
        raise ShopifyPayloadError(f"time_scale must be from 1 to {MAX_TIME_SCALE:g}: {value!r}")
    return float(value)


def _tracking(payload: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """(normalized number, url) pairs, deduplicated; ``tracking_numbers`` wins over the scalar.

    ``tracking_urls`` pair with numbers by index; with a single number, ``tracking_url`` fills in.
    """
    many, urls = payload.get("tracking_numbers"), payload.get("tracking_urls")
    if isinstance(many, list) and any(_text(n) for n in many):
        raw: list[object] = list(many)
        url_list: list[object] = list(urls) if isinstance(urls, list) else []
    else:
        raw, url_list = [payload.get("tracking_number")], []

    pairs: dict[str, str | None] = {}
    for index, number in enumerate(raw):
        text = _text(number)
        if text is None:
            continue
        try:
            normalized = normalize_tracking_number(text)
        except ValueError as error:
            raise ShopifyPayloadError(f"tracking number {text!r} is unusable: {error}") from None
        url = _text(url_list[index]) if index < len(url_list) else None
        if pairs.get(normalized) is None:
            pairs[normalized] = url
    if not pairs:
        raise ShopifyPayloadError("no tracking number: tracking_numbers and tracking_number empty")
    if len(pairs) == 1:
        [(number, url)] = pairs.items()
        return [(number, url or _text(payload.get("tracking_url")))]
    return list(pairs.items())


def _line_items(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    items = payload.get("line_items")
    return [_mapping(item) for item in items] if isinstance(items, list) else []


def _order_value(payload: Mapping[str, Any]) -> Decimal:
    for field in ("total_price", "current_total_price"):
        if payload.get(field) is not None:
            total = _decimal(payload[field], field)
            break
    else:
        total = Decimal("0")
        for index, item in enumerate(_line_items(payload)):
            where = f"line_items[{index}]"
            price = _decimal(item.get("price", "0"), f"{where}.price")
            quantity = _decimal(item.get("quantity", 1), f"{where}.quantity")
            discount = _decimal(item.get("total_discount") or "0", f"{where}.total_discount")
            total += price * quantity - discount
        if total >= _LARGEST_AMOUNT:
            raise ShopifyPayloadError(
                "line_items: price * quantity is larger than trackflow accepts"
            )
    return max(total, Decimal("0")).quantize(Decimal("0.01"))


def _currency(payload: Mapping[str, Any]) -> str:
    for item in _line_items(payload):
        code = _text(
            _mapping(_mapping(item.get("price_set")).get("shop_money")).get("currency_code")
        )
        if code:
            return code.upper()
    return (_text(payload.get("currency")) or "USD").upper()


def _items(payload: Mapping[str, Any]) -> list[LineItem]:
    items = []
    for item in _line_items(payload):
        title = _text(item.get("title")) or _text(item.get("name"))
        quantity = item.get("quantity", 1)
        if title is None or not isinstance(quantity, int) or quantity < 1:
            continue
        items.append(LineItem(title=title, quantity=quantity, sku=_text(item.get("sku"))))
    return items


def _customer(payload: Mapping[str, Any]) -> Customer:
    destination = _mapping(payload.get("destination"))
    shopper = _mapping(payload.get("customer"))
    country_code = _text(destination.get("country_code"))
    first, last = _text(destination.get("first_name")), _text(destination.get("last_name"))
    name = _text(destination.get("name")) or " ".join(p for p in (first, last) if p) or None

    consent = payload.get("sms_consent")
    if not isinstance(consent, bool):
        state = _mapping(shopper.get("sms_marketing_consent")).get("state")
        consent = state == "subscribed"

    address = None
    if destination:
        address = Address(
            name=name,
            address1=_text(destination.get("address1")),
            address2=_text(destination.get("address2")),
            city=_text(destination.get("city")),
            province=_text(destination.get("province")),
            province_code=_text(destination.get("province_code")),
            zip=_text(destination.get("zip")),
            country=_text(destination.get("country")),
            country_code=country_code,
        )
    return Customer(
        name=name,
        email=_email(payload.get("email")),
        phone=_phone(destination.get("phone"), country_code),
        sms_consent=consent,
        address=address,
    )


def _order_name(value: object) -> str | None:
    """ "#9999.1" (fulfillment name) -> "#9999" (order name)."""
    name = _text(value)
    return re.sub(r"\.\d+$", "", name) if name else None


def _event(
    tracking_number: str,
    status: str,
    occurred_at: datetime,
    event_id: str | None,
) -> CarrierEvent | None:
    mapped = map_status(status)
    if mapped is None:
        return None
    return CarrierEvent(
        tracking_number=tracking_number,
        status=mapped[0],
        exception=mapped[1],
        occurred_at=occurred_at,
        event_id=event_id,
        source=SOURCE,
    )


# --- public parsers -------------------------------------------------------------------------


def parse_fulfillment(payload: Mapping[str, Any], *, shop_domain: str | None) -> FulfillmentInput:
    """A ``fulfillments/create|update`` payload -> one Shipment per tracking number (+ status).

    Raises ShopifyPayloadError when there is no tracking number, no order_id, or no way to
    reach the customer (no valid email and no usable phone).
    """
    if not isinstance(payload, Mapping):
        raise ShopifyPayloadError("payload is not a JSON object")
    order_id = _id(payload.get("order_id"), "order_id")
    fulfillment_id = _id(payload["id"], "id") if payload.get("id") is not None else None
    tracking = _tracking(payload)
    customer = _customer(payload)
    if not customer.email and not customer.phone:
        raise ShopifyPayloadError(
            "customer unreachable: no valid email and no usable destination.phone"
        )

    speed_text = (_text(payload.get("shipping_speed")) or "standard").lower()
    try:
        speed = ShippingSpeed(speed_text)
    except ValueError:
        raise ShopifyPayloadError(f"shipping_speed {speed_text!r} is not known") from None
    orders_count = _mapping(payload.get("customer")).get("orders_count")
    time_scale = _time_scale(payload.get("time_scale"))

    common: dict[str, Any] = {
        "order_id": order_id,
        "order_name": _order_name(payload.get("name")),
        "carrier": _text(payload.get("tracking_company")),  # a code, its text kept as label
        "customer": customer,
        "order_value": _order_value(payload),
        "currency": _currency(payload),
        "shipping_speed": speed,
        "customer_order_count": orders_count if isinstance(orders_count, int) else 1,
        "items": _items(payload),
        "source": SOURCE,
        "shop_domain": shop_domain,
        "fulfillment_id": fulfillment_id,
    }
    try:
        shipments = [
            Shipment(tracking_number=number, tracking_url=url, **common) for number, url in tracking
        ]
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        raise ShopifyPayloadError(f"{where}: {first['msg']}") from None

    updated_at = (
        _when(payload["updated_at"], "updated_at") if _text(payload.get("updated_at")) else None
    )
    events: list[CarrierEvent] = []
    ignored: list[str] = []
    shipment_status = _text(payload.get("shipment_status"))
    if shipment_status is not None:
        if map_status(shipment_status) is None:
            ignored.append(shipment_status)
        else:
            occurred_at = _when(payload.get("updated_at"), "updated_at")
            event_id = (
                f"shopify-fulfillment:{fulfillment_id}:{shipment_status.lower()}"
                if fulfillment_id
                else None
            )
            for shipment in shipments:
                event = _event(shipment.tracking_number, shipment_status, occurred_at, event_id)
                if event is not None:
                    events.append(event)

    cancelled = (_text(payload.get("status")) or "").lower() == "cancelled"
    return FulfillmentInput(
        shipments=shipments,
        events=events,
        cancelled=cancelled,
        ignored_statuses=ignored,
        updated_at=updated_at,
        time_scale=time_scale,
    )


# --- refunds and returns --------------------------------------------------------------------


def _records(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _parse_refund(payload: Mapping[str, Any]) -> ReturnRequest:
    """REST Refund: ``processed_at`` (when the money moved; may be backdated) else ``created_at``.

    Either absent -> ``requested_at`` None; present but malformed -> ShopifyPayloadError.
    """
    refund_id = _id(payload.get("id"), "id")
    order_id = _id(payload.get("order_id"), "order_id")
    requested_at = None
    for field in ("processed_at", "created_at"):
        if _text(payload.get(field)) is not None:
            requested_at = _when(payload[field], field)
            break
    return ReturnRequest(
        request_id=f"shopify-refund:{refund_id}",
        kind="refund",
        order_id=order_id,
        requested_at=requested_at,
        reason=_text(payload.get("note")),
        line_item_count=len(_records(payload.get("refund_line_items"))),
    )


def _parse_return(payload: Mapping[str, Any]) -> ReturnRequest:
    """``returns/request``: the order is nested (``order.id``); there is no timestamp.

    ``reason`` joins each return line item's ``return_reason`` with its ``return_reason_note``
    or ``customer_note`` ("size_too_small: too tight"), duplicates dropped. The count is the
    larger of ``total_return_line_items`` and the list's length (Shopify's sample sends a total
    of 2 with an empty list).
    """
    return_id = _id(payload.get("id"), "id")
    order = payload.get("order")
    if isinstance(order, Mapping):
        order_id = _id(order.get("id"), "order.id")
    elif payload.get("order_id") is not None:  # shape of the other returns/* topics
        order_id = _id(payload.get("order_id"), "order_id")
    else:
        raise ShopifyPayloadError("order.id is missing: no order object and no order_id")

    items = _records(payload.get("return_line_items"))
    reasons: list[str] = []
    for item in items:
        parts = (
            _text(item.get("return_reason")),
            _text(item.get("return_reason_note")) or _text(item.get("customer_note")),
        )
        text = ": ".join(p for p in parts if p)
        if text and text not in reasons:
            reasons.append(text)
    total = payload.get("total_return_line_items")
    count = total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else 0
    return ReturnRequest(
        request_id=f"shopify-return:{return_id}",
        kind="return",
        order_id=order_id,
        requested_at=None,
        reason="; ".join(reasons) or None,
        line_item_count=max(count, len(items)),
    )


def parse_return_request(topic: str, payload: Mapping[str, Any]) -> ReturnRequest:
    """A ``refunds/create`` or ``returns/request`` payload -> ReturnRequest.

    Raises ValueError for any other topic (a routing mistake, not a bad payload) and
    ShopifyPayloadError, naming the field, for a missing or non-integer id or order id or a
    malformed timestamp.
    """
    name = topic.strip().lower()
    if name not in RETURN_TOPICS:
        raise ValueError(f"not a return topic: {topic!r} (expected one of {sorted(RETURN_TOPICS)})")
    if not isinstance(payload, Mapping):
        raise ShopifyPayloadError("payload is not a JSON object")
    return _parse_refund(payload) if name == "refunds/create" else _parse_return(payload)
