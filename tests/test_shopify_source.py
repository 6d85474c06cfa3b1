"""Shopify input: HMAC check, fulfillment, refund and return payloads -> domain models."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from trackflow.models import CarrierStatus, ExceptionKind, ReturnRequest, ShippingSpeed
from trackflow.sources.shopify import (
    RETURN_TOPICS,
    ShopifyPayloadError,
    carrier_code,
    parse_fulfillment,
    parse_return_request,
    verify_hmac,
)

FIXTURES = Path(__file__).parent / "fixtures" / "shopify"
SHOP = "example.myshopify.com"
SECRET = "hush"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


@pytest.fixture
def fulfillment() -> dict[str, Any]:
    return _load("shopify_fulfillments_create.json")


# --- HMAC -----------------------------------------------------------------------------------


def _sign(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


BODY = (FIXTURES / "shopify_fulfillments_create.json").read_bytes()


@pytest.mark.parametrize(
    ("body", "header", "secret", "valid"),
    [
        (BODY, _sign(BODY), SECRET, True),
        (BODY, f"  {_sign(BODY)}\n", SECRET, True),
        (BODY, _sign(BODY, "other"), SECRET, False),
        (BODY + b" ", _sign(BODY), SECRET, False),
        (BODY.replace(b"89.99", b"0.01"), _sign(BODY), SECRET, False),
        (BODY, None, SECRET, False),
        (BODY, "", SECRET, False),
        (BODY, "not base64 !!", SECRET, False),
        (BODY, "é" + _sign(BODY), SECRET, False),
        (BODY, _sign(BODY)[:-4], SECRET, False),
        (BODY, _sign(BODY, ""), "", False),
    ],
    ids=[
        "valid",
        "valid-padded-header",
        "wrong-secret",
        "body-appended",
        "body-tampered",
        "header-missing",
        "header-empty",
        "header-garbled",
        "header-non-ascii",
        "header-truncated",
        "empty-secret-refused",
    ],
)
def test_verify_hmac(body: bytes, header: str | None, secret: str, valid: bool) -> None:
    assert verify_hmac(body, header, secret) is valid


# --- fulfillments/create --------------------------------------------------------------------


def test_sample_fulfillment_parses(fulfillment: dict[str, Any]) -> None:
    result = parse_fulfillment(fulfillment, shop_domain=SHOP)

    assert not result.cancelled and result.events == [] and result.ignored_statuses == []
    [shipment] = result.shipments
    assert shipment.order_id == "820982911946154508"  # > 2**53, exact digits
    assert shipment.fulfillment_id == "123456"
    assert shipment.order_name == "#9999"
    assert shipment.tracking_number == "1Z827WK74630"
    assert shipment.tracking_url == fulfillment["tracking_url"]
    assert shipment.carrier == "ups"
    # 89.99 + 19.99 + 24.99 + 159.99 + 119.99 - 5.00 discount on the lounger
    assert shipment.order_value == Decimal("409.95")
    assert shipment.currency == "USD"
    assert shipment.shipping_speed is ShippingSpeed.STANDARD
    assert shipment.customer_order_count == 1
    assert (shipment.source, shipment.shop_domain) == ("shopify", SHOP)
    assert [(i.title, i.quantity, i.sku) for i in shipment.items][:2] == [
        ("Aviator sunglasses", 1, "SKU2006-001"),
        ("Lens Protection Plan (2 Year)", 1, "LENS-PROTECT-2YR"),
    ]
    assert len(shipment.items) == 5

    customer = shipment.customer
    assert (customer.name, customer.email) == ("Steve Shipper", "jon@example.com")
    assert customer.phone is None  # "555-555-SHIP" dropped, payload still valid
    assert customer.sms_consent is False and customer.timezone is None
    assert customer.address is not None
    assert (customer.address.city, customer.address.province_code) == ("Shippington", "KY")
    assert (customer.address.zip, customer.address.country_code) == ("40003", "US")


def test_big_ids_survive_json_round_trip(fulfillment: dict[str, Any]) -> None:
    fulfillment["order_id"] = 2**63 - 1
    fulfillment["id"] = 9007199254740993  # 2**53 + 1: not representable as a float
    raw = json.dumps(fulfillment).encode()
    [shipment] = parse_fulfillment(json.loads(raw), shop_domain=None).shipments
    assert shipment.order_id == "9223372036854775807"
    assert shipment.fulfillment_id == "9007199254740993"


def test_split_shipment_one_per_tracking_number(fulfillment: dict[str, Any]) -> None:
    fulfillment["tracking_numbers"] = [
        "1z111aa0001",
        "9400 1000 0000 0000 0000 00",
        "1Z-111-AA0001",
    ]
    fulfillment["tracking_urls"] = ["https://t/1", "https://t/2", "https://t/dup"]
    shipments = parse_fulfillment(fulfillment, shop_domain=SHOP).shipments
    assert [(s.tracking_number, s.tracking_url) for s in shipments] == [
        ("1Z111AA0001", "https://t/1"),
        ("9400100000000000000000", "https://t/2"),
    ]
    assert {s.order_id for s in shipments} == {"820982911946154508"}


def test_scalar_tracking_number_used_when_array_absent(fulfillment: dict[str, Any]) -> None:
    del fulfillment["tracking_numbers"], fulfillment["tracking_urls"]
    fulfillment["tracking_number"] = "1z 999 zz9"
    [shipment] = parse_fulfillment(fulfillment, shop_domain=SHOP).shipments
    assert shipment.tracking_number == "1Z999ZZ9"
    assert shipment.tracking_url == fulfillment["tracking_url"]


SHIPMENT_STATUSES = [
    ("label_printed", CarrierStatus.LABEL_CREATED, None),
    ("label_purchased", CarrierStatus.LABEL_CREATED, None),
    ("confirmed", CarrierStatus.LABEL_CREATED, None),
    ("in_transit", CarrierStatus.IN_TRANSIT, None),
    ("picked_up", CarrierStatus.IN_TRANSIT, None),
    ("out_for_delivery", CarrierStatus.OUT_FOR_DELIVERY, None),
    ("delivered", CarrierStatus.DELIVERED, None),
    ("attempted_delivery", CarrierStatus.EXCEPTION, ExceptionKind.FAILED_ATTEMPT),
    ("ready_for_pickup", CarrierStatus.AVAILABLE_FOR_PICKUP, None),
    ("failure", CarrierStatus.EXCEPTION, ExceptionKind.UNKNOWN),
]


@pytest.mark.parametrize(("raw", "status", "exception"), SHIPMENT_STATUSES)
def test_shipment_status_becomes_event(
    fulfillment: dict[str, Any],
    raw: str,
    status: CarrierStatus,
    exception: ExceptionKind | None,
) -> None:
    fulfillment["shipment_status"] = raw
    fulfillment["updated_at"] = "2026-11-20T09:15:00-05:00"
    result = parse_fulfillment(fulfillment, shop_domain=SHOP)
    [event] = result.events
    assert (event.status, event.exception) == (status, exception)
    assert event.tracking_number == "1Z827WK74630"
    assert event.occurred_at == datetime(2026, 11, 20, 14, 15, tzinfo=UTC)
    assert event.event_id == f"shopify-fulfillment:123456:{raw}"
    assert event.source == "shopify"
    assert result.ignored_statuses == []


def test_unknown_shipment_status_is_ignored_not_fatal(fulfillment: dict[str, Any]) -> None:
    fulfillment["shipment_status"] = "teleported"
    result = parse_fulfillment(fulfillment, shop_domain=SHOP)
    assert result.events == [] and result.ignored_statuses == ["teleported"]
    assert len(result.shipments) == 1


def test_cancelled_fulfillment_flagged(fulfillment: dict[str, Any]) -> None:
    fulfillment["status"] = "cancelled"
    assert parse_fulfillment(fulfillment, shop_domain=SHOP).cancelled is True


def test_fulfillment_updated_at_orders_updates(fulfillment: dict[str, Any]) -> None:
    result = parse_fulfillment(fulfillment, shop_domain=SHOP)
    # "2021-12-31T19:00:00-05:00" in the sample: kept with its offset, compared as an instant
    assert result.updated_at == datetime(2022, 1, 1, 0, 0, tzinfo=UTC)
    assert result.updated_at is not None and result.updated_at.utcoffset() is not None


@pytest.mark.parametrize("absent", [None, "", "  "])
def test_fulfillment_without_updated_at_has_no_order(
    fulfillment: dict[str, Any], absent: str | None
) -> None:
    fulfillment["updated_at"] = absent
    assert parse_fulfillment(fulfillment, shop_domain=SHOP).updated_at is None
    del fulfillment["updated_at"]
    assert parse_fulfillment(fulfillment, shop_domain=SHOP).updated_at is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("yesterday", "updated_at is not an ISO 8601 timestamp"),
        ("2026-11-20T09:15:00", "updated_at has no time zone offset"),
    ],
)
def test_malformed_updated_at_is_rejected(
    fulfillment: dict[str, Any], value: str, reason: str
) -> None:
    fulfillment["updated_at"] = value
    with pytest.raises(ShopifyPayloadError, match=reason):
        parse_fulfillment(fulfillment, shop_domain=SHOP)


@pytest.mark.parametrize(
    ("phone", "country_code", "expected"),
    [
        ("555-555-SHIP", "US", None),
        ("(502) 555-0123", "US", "+15025550123"),
        ("1 502 555 0123", "US", "+15025550123"),
        ("+44 20 7946 0958", "GB", "+442079460958"),
        ("020 7946 0958", "GB", None),
        ("5025550123", None, None),
    ],
)
def test_destination_phone(
    fulfillment: dict[str, Any], phone: str, country_code: str | None, expected: str | None
) -> None:
    fulfillment["destination"].update(phone=phone, country_code=country_code)
    [shipment] = parse_fulfillment(fulfillment, shop_domain=SHOP).shipments
    assert shipment.customer.phone == expected


def test_phone_alone_is_enough_and_name_falls_back(fulfillment: dict[str, Any]) -> None:
    fulfillment["email"] = None
    fulfillment["destination"].update(phone="(502) 555-0123", name=None)
    [shipment] = parse_fulfillment(fulfillment, shop_domain=SHOP).shipments
    assert (shipment.customer.email, shipment.customer.phone) == (None, "+15025550123")
    assert shipment.customer.name == "Steve Shipper"


def test_order_level_enrichment_fields(fulfillment: dict[str, Any]) -> None:
    fulfillment.update(
        total_price="1234.50",
        shipping_speed="express",
        customer={"orders_count": 7, "sms_marketing_consent": {"state": "subscribed"}},
    )
    [shipment] = parse_fulfillment(fulfillment, shop_domain=SHOP).shipments
    assert shipment.order_value == Decimal("1234.50")
    assert shipment.shipping_speed is ShippingSpeed.EXPRESS
    assert shipment.customer_order_count == 7
    assert shipment.customer.sms_consent is True


def test_explicit_sms_consent_flag_wins(fulfillment: dict[str, Any]) -> None:
    fulfillment.update(
        sms_consent=False, customer={"sms_marketing_consent": {"state": "subscribed"}}
    )
    [shipment] = parse_fulfillment(fulfillment, shop_domain=SHOP).shipments
    assert shipment.customer.sms_consent is False


def test_currency_from_line_items_then_payload(fulfillment: dict[str, Any]) -> None:
    for item in fulfillment["line_items"]:
        item["price_set"]["shop_money"]["currency_code"] = "cad"
    assert parse_fulfillment(fulfillment, shop_domain=SHOP).shipments[0].currency == "CAD"
    for item in fulfillment["line_items"]:
        del item["price_set"]
    fulfillment["currency"] = "EUR"
    assert parse_fulfillment(fulfillment, shop_domain=SHOP).shipments[0].currency == "EUR"


@pytest.mark.parametrize(
    ("company", "code"),
    [
        ("UPS", "ups"),
        ("FedEx", "fedex"),
        ("USPS", "usps"),
        ("DHL Express", "dhl"),
        ("Canada Post", "canada_post"),
        ("Royal Mail", "royal_mail"),
        ("  ", None),
        (None, None),
    ],
)
def test_carrier_code(company: str | None, code: str | None) -> None:
    assert carrier_code(company) == code


def _without_tracking(p: dict[str, Any]) -> None:
    p.update(tracking_numbers=[], tracking_urls=[], tracking_number=None)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (_without_tracking, "no tracking number"),
        (lambda p: p.update(tracking_numbers=["1Z??"]), "tracking number '1Z??' is unusable"),
        (lambda p: p.pop("order_id"), "order_id is missing"),
        (lambda p: p.update(order_id=8.209829119461545e17), "order_id arrived as a float"),
        (lambda p: p.update(email="not-an-email"), "customer unreachable"),
        (lambda p: p.update(shipping_speed="teleport"), "shipping_speed 'teleport'"),
        (lambda p: p.update(shipment_status="delivered", updated_at=None), "updated_at is missing"),
    ],
    ids=[
        "no-tracking",
        "bad-tracking",
        "no-order-id",
        "float-order-id",
        "unreachable",
        "speed",
        "no-updated-at",
    ],
)
def test_bad_payload_names_the_field(fulfillment: dict[str, Any], mutate: Any, reason: str) -> None:
    payload = copy.deepcopy(fulfillment)
    mutate(payload)
    with pytest.raises(ShopifyPayloadError) as caught:
        parse_fulfillment(payload, shop_domain=SHOP)
    assert reason in caught.value.reason
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("raw", "status", "exception"),
    [
        ("carrier_picked_up", CarrierStatus.IN_TRANSIT, None),
        ("delayed", CarrierStatus.EXCEPTION, ExceptionKind.CARRIER_DELAY),
        ("buyer_action_required", CarrierStatus.EXCEPTION, ExceptionKind.ADDRESS_ISSUE),
        ("returning_to_sender", CarrierStatus.RETURNED, None),
        ("returned", CarrierStatus.RETURNED, None),
        ("OUT_FOR_DELIVERY", CarrierStatus.OUT_FOR_DELIVERY, None),  # GraphQL enum spelling
    ],
)
def test_fulfillment_event_statuses_map_too(
    fulfillment: dict[str, Any],
    raw: str,
    status: CarrierStatus,
    exception: ExceptionKind | None,
) -> None:
    fulfillment["shipment_status"] = raw
    [event] = parse_fulfillment(fulfillment, shop_domain=SHOP).events
    assert (event.status, event.exception) == (status, exception)


# --- refunds/create and returns/request -----------------------------------------------------


@pytest.fixture
def refund() -> dict[str, Any]:
    return _load("shopify_refunds_create.json")


@pytest.fixture
def return_request() -> dict[str, Any]:
    return _load("shopify_returns_request.json")


def test_return_topics() -> None:
    assert frozenset({"refunds/create", "returns/request"}) == RETURN_TOPICS


def test_refund_fixture_parses(refund: dict[str, Any]) -> None:
    result = parse_return_request("refunds/create", refund)
    assert result == ReturnRequest(
        request_id="shopify-refund:890088186047892319",
        kind="refund",
        order_id="820982911946154508",  # > 2**53, exact digits
        requested_at=datetime(2022, 1, 3, 15, 14, tzinfo=UTC),  # processed_at, not created_at
        reason="Arrived scratched; customer is sending both items back",
        line_item_count=2,
    )
    assert result.requested_at is not None and result.requested_at.utcoffset() == timedelta(
        hours=-5
    )


def test_refund_falls_back_to_created_at_then_none(refund: dict[str, Any]) -> None:
    refund["processed_at"] = None
    result = parse_return_request("refunds/create", refund)
    assert result.requested_at == datetime(2022, 1, 3, 15, 15, 42, tzinfo=UTC)
    del refund["created_at"]
    assert parse_return_request("refunds/create", refund).requested_at is None


def test_refund_without_note_or_lines(refund: dict[str, Any]) -> None:
    refund.update(note="  ", refund_line_items=[])
    result = parse_return_request("refunds/create", refund)
    assert (result.reason, result.line_item_count) == (None, 0)
    assert result.request_id == "shopify-refund:890088186047892319"


def test_return_request_fixture_parses(return_request: dict[str, Any]) -> None:
    result = parse_return_request("returns/request", return_request)
    assert result == ReturnRequest(
        request_id="shopify-return:123134564567890",
        kind="return",
        order_id="4783296544821",
        requested_at=None,  # the payload has no timestamp; the caller uses receive time
        reason=None,  # return_line_items is empty in Shopify's sample
        line_item_count=2,  # from total_return_line_items
    )


def test_return_request_reasons_joined(return_request: dict[str, Any]) -> None:
    return_request["return_line_items"] = [
        {"id": 1, "quantity": 1, "return_reason": "size_too_small", "customer_note": "too tight"},
        {"id": 2, "quantity": 1, "return_reason": "defective", "return_reason_note": ""},
        {"id": 3, "quantity": 2, "return_reason": "defective"},
    ]
    return_request["total_return_line_items"] = 3
    result = parse_return_request("returns/request", return_request)
    assert result.reason == "size_too_small: too tight; defective"
    assert result.line_item_count == 3


def test_return_order_ids_stay_exact_through_json(
    refund: dict[str, Any], return_request: dict[str, Any]
) -> None:
    refund["order_id"] = 2**63 - 1
    return_request["order"]["id"] = 9007199254740993  # 2**53 + 1: not representable as a float
    return_request["id"] = 2**53 + 3
    refund_result = parse_return_request("refunds/create", json.loads(json.dumps(refund)))
    return_result = parse_return_request("returns/request", json.loads(json.dumps(return_request)))
    assert refund_result.order_id == "9223372036854775807"
    assert return_result.order_id == "9007199254740993"
    assert return_result.request_id == "shopify-return:9007199254740995"


def test_return_order_id_as_digit_string(return_request: dict[str, Any]) -> None:
    return_request["order"]["id"] = "4783296544821"
    assert parse_return_request("returns/request", return_request).order_id == "4783296544821"


@pytest.mark.parametrize(
    ("topic", "fixture", "mutate", "reason"),
    [
        ("refunds/create", "refund", lambda p: p.pop("order_id"), "order_id is missing"),
        (
            "refunds/create",
            "refund",
            lambda p: p.update(order_id=8.209829119461545e17),
            "order_id arrived as a float",
        ),
        ("refunds/create", "refund", lambda p: p.pop("id"), "id is missing"),
        (
            "refunds/create",
            "refund",
            lambda p: p.update(processed_at="yesterday"),
            "processed_at is not an ISO 8601 timestamp",
        ),
        ("returns/request", "return_request", lambda p: p.pop("order"), "order.id is missing"),
        (
            "returns/request",
            "return_request",
            lambda p: p["order"].pop("id"),
            "order.id is missing",
        ),
        (
            "returns/request",
            "return_request",
            lambda p: p["order"].update(id="gid://shopify/Order/4783296544821"),
            "order.id is missing or not an integer id",
        ),
    ],
    ids=[
        "refund-no-order-id",
        "refund-float-order-id",
        "refund-no-id",
        "refund-bad-time",
        "return-no-order",
        "return-no-order-id",
        "return-gid-order-id",
    ],
)
def test_bad_return_payload_names_the_field(
    request: pytest.FixtureRequest, topic: str, fixture: str, mutate: Any, reason: str
) -> None:
    payload = copy.deepcopy(request.getfixturevalue(fixture))
    mutate(payload)
    with pytest.raises(ShopifyPayloadError) as caught:
        parse_return_request(topic, payload)
    assert caught.value.reason.startswith(reason)


def test_return_request_falls_back_to_top_level_order_id(return_request: dict[str, Any]) -> None:
    del return_request["order"]
    return_request["order_id"] = 4783296544821  # how returns/cancel and returns/close carry it
    assert parse_return_request("returns/request", return_request).order_id == "4783296544821"


@pytest.mark.parametrize("topic", ["returns/cancel", "fulfillments/create", "refunds", ""])
def test_unknown_return_topic_is_value_error(refund: dict[str, Any], topic: str) -> None:
    with pytest.raises(ValueError, match="not a return topic") as caught:
        parse_return_request(topic, refund)
    assert not isinstance(caught.value, ShopifyPayloadError)


def test_return_topic_header_is_normalized(refund: dict[str, Any]) -> None:
    assert parse_return_request(" Refunds/Create ", refund).kind == "refund"


def test_return_request_is_frozen(return_request: dict[str, Any]) -> None:
    result = parse_return_request("returns/request", return_request)
    with pytest.raises(ValidationError):
        result.order_id = "1"  # type: ignore[misc]
