"""Hostile input at the HTTP edge: always a 4xx with a reason, never a 5xx, and nothing started."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from starters.api.errors import status_for_temporal_error
from tests.api_support import (
    aftership_signature,
    api_client,
    api_settings,
    easypost_signature,
    event_body,
    fulfillment,
    shipengine_headers,
    shipment_body,
    shopify_headers,
    tracking_number,
    workflow_started,
)
from tests.harness import eventually, running_worker
from trackflow.limits import MAX_BODY_BYTES

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
async def api(
    temporal_address: str, task_queue: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(api_settings(temporal_address, task_queue, tmp_path)) as http:
        yield http


def _locations(response: httpx.Response) -> list[str]:
    return [".".join(map(str, error["loc"])) for error in response.json()["detail"]]


# --- 2: NaN / Infinity -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_body", "field"),
    [
        ('"order_value": NaN', "order_value"),
        ('"order_value": Infinity', "order_value"),
        ('"order_value": 1, "customer_order_count": -Infinity', "customer_order_count"),
        ('"order_value": 1, "extra": [NaN]', "extra"),
    ],
)
async def test_nan_or_infinity_in_a_body_is_422_naming_the_field(
    api: httpx.AsyncClient, client: Client, raw_body: str, field: str
) -> None:
    number = tracking_number()
    base = shipment_body(number)
    del base["order_value"]
    text = json.dumps(base)[:-1] + ", " + raw_body + "}"
    response = await api.post(
        "/v1/shipments", content=text, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert "NaN" in response.text or field in response.text
    assert not await workflow_started(client, number)


async def test_a_422_does_not_echo_unbounded_input(api: httpx.AsyncClient) -> None:
    huge = "x" * 500_000
    body = shipment_body(tracking_number(), currency=huge)
    response = await api.post("/v1/shipments", json=body)
    assert response.status_code == 422
    assert "body.currency" in _locations(response)
    assert len(response.content) < 2_000


# --- 3: huge amounts in a signed Shopify webhook -----------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"total_price": "1e999999"},
        {"total_price": "9" * 400},
        {"total_price": None, "line_items": [{"title": "x", "price": "1e500000", "quantity": 3}]},
        {"total_price": None, "line_items": [{"title": "x", "price": "10", "quantity": 10**40}]},
    ],
)
async def test_shopify_webhook_with_a_huge_amount_is_422(
    api: httpx.AsyncClient, client: Client, overrides: dict[str, Any]
) -> None:
    number = tracking_number()
    payload = fulfillment(number, **overrides)
    payload.pop("current_total_price", None)
    body = json.dumps(payload).encode()
    response = await api.post("/webhooks/shopify", content=body, headers=shopify_headers(body))
    assert response.status_code == 422, response.text
    assert "price" in response.json()["detail"] or "quantity" in response.json()["detail"]
    assert not await workflow_started(client, number)


# --- 4: deeply nested JSON ----------------------------------------------------------------


def _deep(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


@pytest.mark.parametrize("route", ["shopify", "easypost", "aftership", "shipengine", "v1"])
async def test_json_nested_ten_thousand_deep_is_400(api: httpx.AsyncClient, route: str) -> None:
    body = _deep(10_000)
    headers: dict[str, str] = {"Content-Type": "application/json"}
    match route:
        case "shopify":
            headers |= shopify_headers(body)
        case "easypost":
            headers["X-Hmac-Signature"] = easypost_signature(body)
        case "aftership":
            headers["aftership-hmac-sha256"] = aftership_signature(body)
        case "shipengine":
            headers |= shipengine_headers(body)
    path = "/v1/shipments" if route == "v1" else f"/webhooks/{route}"
    response = await api.post(path, content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert "nested" in response.json()["detail"]


# --- 5: permanent errors are 4xx; sizes are capped -----------------------------------------


async def test_an_oversized_carrier_is_422_not_503(api: httpx.AsyncClient, client: Client) -> None:
    number = tracking_number()
    response = await api.post("/v1/shipments", json=shipment_body(number, carrier="u" * 3_000))
    assert response.status_code == 422, response.text
    assert "body.carrier" in _locations(response)
    assert not await workflow_started(client, number)


async def test_an_oversized_shopify_tracking_company_is_422(
    api: httpx.AsyncClient, client: Client
) -> None:
    number = tracking_number()
    body = json.dumps(fulfillment(number, tracking_company="U" * 3_000)).encode()
    response = await api.post("/webhooks/shopify", content=body, headers=shopify_headers(body))
    assert response.status_code == 422, response.text
    assert "carrier" in response.json()["detail"]
    assert not await workflow_started(client, number)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("order_name", "#" * 300),
        ("tracking_url", "https://example.com/" + "t" * 3_000),
        ("items", [{"title": "socks"}] * 201),
        ("items", [{"title": "s" * 300}]),
        ("customer", {"email": "ada@example.com", "name": "A" * 300}),
        ("customer", {"email": "ada@example.com", "timezone": "Z" * 100}),
        ("customer", {"email": "ada@example.com", "address": {"address1": "1" * 300}}),
    ],
)
async def test_every_free_text_field_has_a_maximum_length(
    api: httpx.AsyncClient, field: str, value: object
) -> None:
    response = await api.post(
        "/v1/shipments", json=shipment_body(tracking_number(), **{field: value})
    )
    assert response.status_code == 422, response.text
    assert any(location.startswith(f"body.{field}") for location in _locations(response))


@pytest.mark.parametrize("field", ["source", "description", "location"])
async def test_event_free_text_has_a_maximum_length(api: httpx.AsyncClient, field: str) -> None:
    body = event_body(tracking_number(), "in_transit", **{field: "x" * 5_000})
    response = await api.post("/v1/events", json=body)
    assert response.status_code == 422, response.text
    assert f"body.{field}" in _locations(response)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/shipments",
        "/v1/events",
        "/v1/shipments/1Z999AA10123456784/return-requests",
        "/webhooks/shopify",
        "/webhooks/easypost",
        "/webhooks/aftership",
        "/webhooks/shipengine",
    ],
)
async def test_a_body_over_the_limit_is_413_on_every_route(
    api: httpx.AsyncClient, path: str
) -> None:
    body = b'{"x": "' + b"y" * MAX_BODY_BYTES + b'"}'
    response = await api.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.json() == {"detail": f"request body is over {MAX_BODY_BYTES} bytes"}


async def test_a_streamed_body_over_the_limit_is_413(api: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 65_536 + 2):
            yield b"x" * 65_536

    response = await api.post("/webhooks/shopify", content=chunks())
    assert response.status_code == 413
    assert "detail" in response.json()


async def test_a_declared_length_over_the_limit_is_413_before_the_body_is_read(
    api: httpx.AsyncClient,
) -> None:
    async def trickle() -> AsyncIterator[bytes]:
        yield b"{"
        raise AssertionError("the body was read although its declared length is too large")

    headers = {"Content-Length": str(MAX_BODY_BYTES + 1), "Content-Type": "application/json"}
    response = await api.post("/webhooks/shopify", content=trickle(), headers=headers)
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (RPCStatusCode.INVALID_ARGUMENT, 422),
        (RPCStatusCode.UNAVAILABLE, 503),
        (RPCStatusCode.DEADLINE_EXCEEDED, 503),
        (RPCStatusCode.RESOURCE_EXHAUSTED, 503),
        (RPCStatusCode.PERMISSION_DENIED, 502),
    ],
)
def test_temporal_errors_map_to_permanent_or_retryable_statuses(
    status: RPCStatusCode, code: int
) -> None:
    assert status_for_temporal_error(RPCError("boom", status, b"")) == code


# --- 6: a non-ASCII bearer token ------------------------------------------------------------


@pytest.mark.parametrize("token", ["Bearer é", "Bearer 💥", "Bearer \x00", "Bearer test-tokén"])
async def test_a_non_ascii_bearer_token_is_401(api: httpx.AsyncClient, token: str) -> None:
    headers = [(b"Authorization", token.encode("utf-8"))]
    response = await api.get("/v1/shipments/1Z999AA10123456784", headers=headers)
    assert response.status_code == 401


# --- 7: implausible event times -------------------------------------------------------------


@pytest.mark.parametrize(
    "occurred_at",
    ["9999-12-31T23:59:59Z", "1999-12-31T23:59:59Z", "two days ahead"],
)
async def test_an_event_far_in_the_future_or_before_2000_is_422(
    api: httpx.AsyncClient, occurred_at: str
) -> None:
    if occurred_at == "two days ahead":
        occurred_at = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    body = event_body(tracking_number(), "delivered", occurred_at=occurred_at)
    response = await api.post("/v1/events", json=body)
    assert response.status_code == 422, response.text
    assert "body.occurred_at" in _locations(response)


async def test_an_event_a_few_hours_ahead_is_accepted(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """Carriers stamp scans in local time with offsets that can run ahead of our clock."""
    number = tracking_number()
    async with running_worker(client, task_queue, tmp_path):
        assert (await api.post("/v1/shipments", json=shipment_body(number))).status_code == 202
        ahead = (datetime.now(UTC) + timedelta(hours=6)).isoformat()
        response = await api.post(
            "/v1/events", json=event_body(number, "in_transit", occurred_at=ahead)
        )
    assert response.status_code == 202, response.text


async def test_a_webhook_event_with_a_wild_time_is_dropped_and_reported(
    api: httpx.AsyncClient, client: Client, task_queue: str, tmp_path: Path
) -> None:
    number = tracking_number()
    event = json.loads((FIXTURES / "easypost" / "easypost_tracker_updated_event.json").read_text())
    event["result"]["tracking_code"] = number
    event["result"]["tracking_details"][0]["datetime"] = "9999-12-31T00:00:00Z"
    body = json.dumps(event).encode()
    async with running_worker(client, task_queue, tmp_path):
        assert (await api.post("/v1/shipments", json=shipment_body(number))).status_code == 202
        response = await api.post(
            "/webhooks/easypost",
            content=body,
            headers={"X-Hmac-Signature": easypost_signature(body)},
        )
        assert response.status_code == 200, response.text
        assert response.json()["rejected"] == [
            {
                "event": response.json()["rejected"][0]["event"],
                "reason": "occurred_at is more than 1 day in the future",
            }
        ]
        view = await eventually(
            lambda: api.get(f"/v1/shipments/{number}"),
            lambda r: r.status_code == 200 and len(r.json()["timeline"]) >= 1,
        )
    assert all(e["occurred_at"] < "9999" for e in view.json()["timeline"])


# --- 11: strict customer timezone and order value -------------------------------------------


async def test_an_unknown_iana_timezone_is_422_naming_the_field(
    api: httpx.AsyncClient, client: Client
) -> None:
    number = tracking_number()
    customer = shipment_body(number)["customer"] | {"timezone": "Mars/Olympus_Mons"}
    response = await api.post("/v1/shipments", json=shipment_body(number, customer=customer))
    assert response.status_code == 422, response.text
    assert "body.customer.timezone" in _locations(response)
    assert not await workflow_started(client, number)


@pytest.mark.parametrize(
    "value", ["\uff11\uff12\uff13", "\u0663\u0664", "12.5\uff10", "1_000", "0x10"]
)
async def test_order_value_must_be_plain_ascii_decimal(
    api: httpx.AsyncClient, client: Client, value: str
) -> None:
    number = tracking_number()
    response = await api.post("/v1/shipments", json=shipment_body(number, order_value=value))
    assert response.status_code == 422, response.text
    assert "body.order_value" in _locations(response)
    assert not await workflow_started(client, number)


async def test_an_oversized_shopify_webhook_id_is_400(
    api: httpx.AsyncClient, client: Client
) -> None:
    number = tracking_number()
    body = json.dumps(fulfillment(number)).encode()
    headers = shopify_headers(body, webhook_id="w" * 5_000)
    response = await api.post("/webhooks/shopify", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert not await workflow_started(client, number)
