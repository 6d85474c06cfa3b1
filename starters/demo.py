"""`trackflow up --demo`: sample orders through the real API, messages shown as they go out."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from activities.ledger import open_ledger
from starters.render import format_outbox_line

STEP_SECONDS = 2.0
QUIET_SECONDS = 45.0


@dataclass(frozen=True)
class Step:
    status: str
    exception: str | None = None
    location: str | None = None
    description: str | None = None


def _number(prefix: str, digits: int) -> str:
    return prefix + "".join(secrets.choice("0123456789") for _ in range(digits))


def _orders() -> list[tuple[dict[str, Any], list[Step]]]:
    run = secrets.token_hex(2)
    delivery = [
        Step("label_created", description="Shipping label created"),
        Step("in_transit", location="Louisville, KY", description="Departed facility"),
        Step("out_for_delivery", location="Brooklyn, NY", description="Out for delivery"),
        Step("delivered", location="Brooklyn, NY", description="Delivered, front door"),
    ]
    return [
        (
            _shipment(
                f"D{run}-1001",
                "1Z" + _number("", 16),
                "ups",
                "Ada Lovelace",
                "212.50",
                phone="+15025550123",
                order_count=1,
            ),
            delivery,
        ),
        (
            _shipment(
                f"D{run}-1002",
                _number("9400", 18),
                "usps",
                "Grace Hopper",
                "48.00",
                phone="+12125550188",
                order_count=5,
            ),
            [delivery[0], delivery[1], delivery[1], delivery[3]],
        ),
        (
            _shipment(
                f"D{run}-1003",
                _number("", 12),
                "fedex",
                "Linus Pauling",
                "89.00",
                speed="express",
            ),
            [delivery[2], delivery[1], delivery[3]],
        ),
        (
            _shipment(
                f"D{run}-1004",
                _number("", 10),
                "dhl",
                "Margaret Hamilton",
                "320.00",
                phone="+13055550142",
            ),
            [
                delivery[1],
                Step("exception", "weather_delay", "Memphis, TN", "Weather delay"),
                Step("in_transit", location="Atlanta, GA", description="Back on its way"),
                delivery[3],
            ],
        ),
    ]


def _shipment(
    order_id: str,
    tracking_number: str,
    carrier: str,
    name: str,
    value: str,
    *,
    phone: str | None = None,
    order_count: int = 1,
    speed: str = "standard",
) -> dict[str, Any]:
    first = name.split()[0].lower()
    return {
        "order_id": order_id,
        "order_name": f"#{order_id}",
        "tracking_number": tracking_number,
        "carrier": carrier,
        "customer": {
            "name": name,
            "email": f"{first}@example.com",
            "phone": phone,
            "sms_consent": phone is not None,
            "timezone": "America/New_York",
        },
        "order_value": value,
        "currency": "USD",
        "shipping_speed": speed,
        "customer_order_count": order_count,
        "items": [{"title": "Trail running shoes", "quantity": 1}],
    }


def _shopify_split_fulfillment(run: str) -> dict[str, Any]:
    numbers = ["1Z" + _number("", 16), "1Z" + _number("", 16)]
    return {
        "id": int(_number("5", 12)),
        "order_id": int(_number("8", 17)),
        "status": "success",
        "name": f"#S{run}.1",
        "tracking_company": "UPS",
        "tracking_numbers": numbers,
        "tracking_urls": [f"https://www.ups.com/track?tracknum={n}" for n in numbers],
        "shipment_status": "in_transit",
        "updated_at": datetime.now(UTC).isoformat(),
        "email": "katherine@example.com",
        "destination": {"name": "Katherine Johnson", "country_code": "US", "province_code": "VA"},
        "line_items": [
            {"title": "Desk lamp", "quantity": 1, "price": "64.00"},
            {"title": "Lamp shade", "quantity": 2, "price": "15.00"},
        ],
    }


async def _play_order(
    http: httpx.AsyncClient, shipment: dict[str, Any], steps: list[Step], offset: float
) -> None:
    await asyncio.sleep(offset)
    (await http.post("/v1/shipments", json=shipment)).raise_for_status()
    clock = datetime.now(UTC)
    for number, step in enumerate(steps):
        await asyncio.sleep(STEP_SECONDS)
        event = {
            "tracking_number": shipment["tracking_number"],
            "status": step.status,
            "exception": step.exception,
            "occurred_at": (clock + timedelta(hours=number)).isoformat(),
            "location": step.location,
            "description": step.description,
            "estimated_delivery": (clock + timedelta(days=2)).date().isoformat(),
            "event_id": f"demo-{shipment['tracking_number']}-{number}-{step.status}",
        }
        (await http.post("/v1/events", json=event)).raise_for_status()


async def _post_shopify(http: httpx.AsyncClient, secret: str, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    headers = {
        "X-Shopify-Topic": "fulfillments/create",
        "X-Shopify-Hmac-Sha256": digest,
        "X-Shopify-Webhook-Id": secrets.token_hex(8),
        "Content-Type": "application/json",
    }
    (await http.post("/webhooks/shopify", content=body, headers=headers)).raise_for_status()


async def _print_outbox(ledger_url: str, done: asyncio.Event) -> None:
    ledger = open_ledger(ledger_url)
    seen = {record.idempotency_key for record in await ledger.list()}
    loop = asyncio.get_running_loop()
    last_new = loop.time()
    try:
        while not (done.is_set() and loop.time() - last_new > QUIET_SECONDS / 3):
            for record in await ledger.list():
                if record.idempotency_key not in seen:
                    seen.add(record.idempotency_key)
                    last_new = loop.time()
                    print("  " + format_outbox_line(record), flush=True)
            await asyncio.sleep(0.3)
    finally:
        await ledger.close()


async def _demo(api_url: str, api_token: str, shopify_secret: str, ledger_url: str) -> None:
    print("demo: playing sample orders; messages appear below as the outbox delivers them\n")
    done = asyncio.Event()
    printer = asyncio.create_task(_print_outbox(ledger_url, done))
    headers = {"Authorization": f"Bearer {api_token}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as http:
        plays = [
            _play_order(http, shipment, steps, offset=i * 0.7)
            for i, (shipment, steps) in enumerate(_orders())
        ]
        plays.append(_post_shopify(http, shopify_secret, _shopify_split_fulfillment("demo")))
        await asyncio.gather(*plays)
    done.set()
    await printer
    print(
        "\ndemo: done. Try `trackflow outbox` and `trackflow shipment show <tracking number>`,\n"
        "or filter by TrackflowStatus in the Web UI. The stack keeps running; Ctrl-C stops it.\n",
        flush=True,
    )


def play_demo(*, api_url: str, api_token: str, shopify_secret: str, ledger_url: str) -> None:
    asyncio.run(_demo(api_url, api_token, shopify_secret, ledger_url))
