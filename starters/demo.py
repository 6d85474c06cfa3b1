"""`trackflow up --demo`: sample orders through the real API, messages shown as they go out.

The stack runs with time compressed (TRACKFLOW_TIME_SCALE, 10000 by default for the demo:
a day passes in under nine seconds), so stale and lost-package timers fire while you watch.
Send windows are wall-clock local hours and are not compressed: customers are placed in
time zones where it is daytime now, and one where it is night to show a held message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytz

from activities.ledger import open_ledger
from starters.render import format_outbox_line

DEMO_TIME_SCALE = 10_000.0
STEP_SECONDS = 2.0
DEADLINE_SECONDS = 150.0
CITY_ZONES = (
    "Pacific/Honolulu", "America/Los_Angeles", "America/Denver", "America/Chicago",
    "America/New_York", "America/Sao_Paulo", "Europe/London", "Europe/Berlin",
    "Africa/Nairobi", "Asia/Dubai", "Asia/Kolkata", "Asia/Singapore", "Asia/Tokyo",
    "Australia/Sydney", "Pacific/Auckland",
)  # fmt: skip


@dataclass(frozen=True)
class Step:
    status: str
    exception: str | None = None
    location: str | None = None
    description: str | None = None


@dataclass
class Order:
    story: str
    shipment: dict[str, Any]
    steps: list[Step]
    return_after_delivery: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def zone_where_local_hour_in(hours: range, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    for name in CITY_ZONES:
        if now.astimezone(pytz.timezone(name)).hour in hours:
            return name
    offset = (hours.start + 1 - now.hour) % 24
    return f"Etc/GMT{-(offset if offset <= 14 else offset - 24):+d}"


def _digits(count: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(count))


LABEL = Step("label_created", description="Shipping label created")
TRANSIT = Step("in_transit", location="Louisville, KY", description="Departed facility")
OUT = Step("out_for_delivery", location="Brooklyn, NY", description="Out for delivery")
DELIVERED = Step("delivered", location="Brooklyn, NY", description="Delivered, front door")


def _orders(run: str) -> list[Order]:
    day, night = zone_where_local_hour_in(range(9, 18)), zone_where_local_hour_in(range(1, 6))
    return [
        Order(
            "high value: email + SMS; a refund request after delivery starts the returns flow",
            _shipment(f"{run}-1001", "1Z" + _digits(16), "ups", "Ada Lovelace", "212.50", day,
                      phone="+15025550123"),
            [LABEL, TRANSIT, OUT, DELIVERED],
            return_after_delivery=True,
        ),
        Order(
            "returning customer, low value: email only, a duplicate scan changes nothing",
            _shipment(f"{run}-1002", "9400" + _digits(18), "usps", "Grace Hopper", "48.00", day,
                      order_count=5),
            [LABEL, TRANSIT, TRANSIT, DELIVERED],
        ),
        Order(
            "express, events out of order: the late in-transit scan sends nothing",
            _shipment(f"{run}-1003", _digits(12), "fedex", "Linus Pauling", "89.00", day,
                      speed="express"),
            [OUT, TRANSIT, DELIVERED],
        ),
        Order(
            "weather delay, then back on its way (no alarm), then delivered",
            _shipment(f"{run}-1004", _digits(10), "dhl", "Margaret Hamilton", "320.00", day,
                      phone="+13055550142"),
            [TRANSIT, Step("exception", "weather_delay", "Memphis, TN", "Weather delay"),
             Step("in_transit", location="Atlanta, GA", description="Back on its way"), DELIVERED],
        ),
        Order(
            "address issue: the customer is asked to act; once fixed it is delivered",
            _shipment(f"{run}-1005", "1Z" + _digits(16), "ups", "Alan Turing", "64.00", day),
            [TRANSIT, Step("exception", "address_issue", "Newark, NJ", "Address incomplete"),
             Step("in_transit", location="Newark, NJ", description="Address corrected"),
             DELIVERED],
        ),
        Order(
            "no scan after the first: a stale check-in, then lost (alert + helpdesk tag)",
            _shipment(f"{run}-1006", "9400" + _digits(18), "usps", "Rosalind Franklin", "120.00",
                      day),
            [LABEL, TRANSIT],
        ),
        Order(
            "night-time customer: out-for-delivery held, then dropped once delivered",
            _shipment(f"{run}-1007", "1Z" + _digits(16), "ups", "Hedy Lamarr", "75.00", night),
            [OUT, DELIVERED],
        ),
    ]  # fmt: skip


def _shipment(
    order_id: str,
    tracking_number: str,
    carrier: str,
    name: str,
    value: str,
    timezone: str,
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
            "timezone": timezone,
        },
        "order_value": value,
        "currency": "USD",
        "shipping_speed": speed,
        "customer_order_count": order_count,
        "items": [{"title": "Trail running shoes", "quantity": 1}],
    }


def _shopify_split_fulfillment(run: str) -> dict[str, Any]:
    """The address (Virginia) sets the time zone: at night there, its messages are held."""
    numbers = ["1Z" + _digits(16), "1Z" + _digits(16)]
    return {
        "id": int("5" + _digits(11)),
        "order_id": int("8" + _digits(16)),
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


def _event(number: str, index: int, step: Step, clock: datetime) -> dict[str, Any]:
    return {
        "tracking_number": number,
        "status": step.status,
        "exception": step.exception,
        "occurred_at": (clock + timedelta(hours=index)).isoformat(),
        "location": step.location,
        "description": step.description,
        "estimated_delivery": (clock + timedelta(days=2)).date().isoformat(),
        "event_id": f"demo-{number}-{index}-{step.status}",
    }


async def _play(http: httpx.AsyncClient, order: Order, offset: float) -> None:
    await asyncio.sleep(offset)
    number = order.shipment["tracking_number"]
    (await http.post("/v1/shipments", json=order.shipment)).raise_for_status()
    print(f"  [{order.shipment['order_id']}] {order.story}", flush=True)
    clock = datetime.now(UTC)
    for index, step in enumerate(order.steps):
        await asyncio.sleep(STEP_SECONDS)
        (await http.post("/v1/events", json=_event(number, index, step, clock))).raise_for_status()
    if order.return_after_delivery:
        await asyncio.sleep(STEP_SECONDS * 2)
        body = {"kind": "refund", "request_id": f"demo-refund-{number}", "reason": "too small"}
        response = await http.post(f"/v1/shipments/{number}/return-requests", json=body)
        response.raise_for_status()


async def _play_polled(http: httpx.AsyncClient, run: str, zone: str) -> None:
    shipment = _shipment(f"{run}-1008", "9400" + _digits(18), "usps", "Barbara Liskov", "55.00",
                         zone) | {"poll_via": "easypost"}  # fmt: skip
    (await http.post("/v1/shipments", json=shipment)).raise_for_status()
    print(f"  [{run}-1008] no webhooks: trackflow polls EasyPost (the carrier simulator)")


async def _play_easypost_webhooks(
    http: httpx.AsyncClient, simulator_url: str, run: str, zone: str
) -> None:
    number = "9400" + _digits(18)
    shipment = _shipment(f"{run}-1009", number, "usps", "Frances Allen", "180.00", zone,
                         phone="+16175550177")  # fmt: skip
    (await http.post("/v1/shipments", json=shipment)).raise_for_status()
    async with httpx.AsyncClient(base_url=simulator_url, auth=("EZTK-demo", "")) as sim:
        scenario = {"tracking_code": number, "scenario": "weather_delay"}
        (await sim.post("/simulator/scenarios", json=scenario)).raise_for_status()
        tracker = {"tracker": {"tracking_code": number, "carrier": "USPS"}}
        (await sim.post("/v2/trackers", json=tracker)).raise_for_status()
    print(f"  [{run}-1009] signed EasyPost webhooks from the simulator: a weather delay")


async def _play_shopify(http: httpx.AsyncClient, secret: str, run: str) -> None:
    payload = _shopify_split_fulfillment(run)
    body = json.dumps(payload).encode()
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    headers = {
        "X-Shopify-Topic": "fulfillments/create",
        "X-Shopify-Hmac-Sha256": digest,
        "X-Shopify-Webhook-Id": secrets.token_hex(8),
        "Content-Type": "application/json",
    }
    (await http.post("/webhooks/shopify", content=body, headers=headers)).raise_for_status()
    print("  [Shopify] one fulfillment, two tracking numbers: two workflows", flush=True)
    clock = datetime.now(UTC)
    for number in payload["tracking_numbers"]:
        await asyncio.sleep(STEP_SECONDS)
        event = _event(number, 1, DELIVERED, clock)
        (await http.post("/v1/events", json=event)).raise_for_status()


async def _print_outbox(ledger_url: str, stop: asyncio.Event, lost: asyncio.Event) -> None:
    ledger = open_ledger(ledger_url)
    seen = {record.idempotency_key for record in await ledger.list()}
    try:
        while not stop.is_set():
            for record in await ledger.list():
                if record.idempotency_key not in seen:
                    seen.add(record.idempotency_key)
                    print("    " + format_outbox_line(record), flush=True)
                    if record.trigger == "lost" and record.kind == "message":
                        lost.set()
            await asyncio.sleep(0.3)
    finally:
        await ledger.close()


async def _demo(
    api_url: str, api_token: str, shopify_secret: str, ledger_url: str, simulator_url: str
) -> None:
    print("demo: sample orders go through the real API; the outbox shows what goes out\n")
    run = secrets.token_hex(2).upper()
    orders = _orders(run)
    stop, lost = asyncio.Event(), asyncio.Event()
    printer = asyncio.create_task(_print_outbox(ledger_url, stop, lost))
    headers = {"Authorization": f"Bearer {api_token}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as http:
        plays = [_play(http, order, offset=i * 0.7) for i, order in enumerate(orders)]
        plays.append(_play_shopify(http, shopify_secret, run))
        day = orders[0].shipment["customer"]["timezone"]
        plays.append(_play_polled(http, run, day))
        plays.append(_play_easypost_webhooks(http, simulator_url, run, day))
        await asyncio.gather(*plays)
        print("\n  (waiting for the stale and lost-package timers…)\n", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lost.wait(), timeout=DEADLINE_SECONDS)
        await asyncio.sleep(3.0)  # the alert and helpdesk tags follow the message
        stop.set()
        await printer
        night = orders[-1].shipment["tracking_number"]
        held = (await http.get(f"/v1/shipments/{night}")).json()
    action = held["next_action"]
    for note in held["notes"]:
        what = note["key"].split(":")[1]
        print(f"  [{orders[-1].shipment['order_id']}] {note['kind']}: {what} ({note['detail']})")
    print(
        f"  [{orders[-1].shipment['order_id']}] waiting: {action['kind']} at {action['due_local']}"
        "\n\ndemo: done. Try `.venv/bin/trackflow outbox`, `.venv/bin/trackflow shipment show "
        f"{night}`,\nor filter by TrackflowStatus / TrackflowNextAction in the Web UI. "
        "The stack keeps running; Ctrl-C stops it.\n",
        flush=True,
    )


def play_demo(
    *, api_url: str, api_token: str, shopify_secret: str, ledger_url: str, simulator_url: str
) -> None:
    asyncio.run(_demo(api_url, api_token, shopify_secret, ledger_url, simulator_url))
