"""Speed goals, measured here rather than in timed tests: `make bench` (or python -m bench).

- carrier detection: at least 20,000 numbers/s on one core (a webhook burst of a whole
  shop's backlog must not be slowed by it);
- the pure policy: at least 1,000 full lifecycles/s (event folding, quiet-hour scheduling,
  timers) — the workflow spends its CPU here on every signal;
- message rendering: at least 500 messages/s;
- polling: at least 100 EasyPost tracker fetches/s (HTTP round trip to the carrier simulator,
  in process, plus parsing and normalizing), so one worker keeps up with 10,000 express
  shipments polled every 30-60 minutes.
Exits non-zero when a goal is missed.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from activities.polling import EasyPostTrackers
from devstack.carrier_simulator import create_simulator_app
from trackflow.carriers import detect
from trackflow.effects import SendNotification
from trackflow.messages import Brand, render
from trackflow.models import CarrierEvent, CarrierStatus, Channel, Customer, Shipment, Trigger
from trackflow.policy import on_event, on_start, on_tick
from trackflow.shipment_state import ShipmentState
from trackflow.tracking_policy import TrackingPolicy

NUMBERS = [
    "1Z5R89390357567127",
    "9400111206206406260787",
    "4201028200009261290113185417468510",
    "287809468872",
    "RB123456785GB",
    "not a number",
]
START = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
SHIPMENT = Shipment(
    order_id="1001",
    tracking_number="1Z5R89390357567127",
    carrier="ups",
    customer=Customer(
        name="Ada", email="ada@example.com", phone="+15025550123", sms_consent=True,
        timezone="America/New_York",
    ),
    order_value=Decimal("212.50"),
)  # fmt: skip
POLICY = TrackingPolicy()


def _lifecycle() -> None:
    state = on_start(ShipmentState(), START)
    for hour, status in enumerate(
        [CarrierStatus.LABEL_CREATED, CarrierStatus.IN_TRANSIT, CarrierStatus.OUT_FOR_DELIVERY,
         CarrierStatus.DELIVERED]
    ):  # fmt: skip
        now = START + timedelta(hours=hour)
        event = CarrierEvent(
            tracking_number=SHIPMENT.tracking_number, status=status, occurred_at=now
        )
        state = on_event(state, event, SHIPMENT, POLICY, now).state
    on_tick(state, SHIPMENT, POLICY, START + timedelta(days=2))


def _render() -> None:
    send = SendNotification(
        idempotency_key="k", trigger=Trigger.IN_TRANSIT, channel=Channel.EMAIL, to="a@b.co"
    )
    render(SHIPMENT, send, Brand(store_name="Acme"))


async def _poll_rate(seconds: float = 1.0) -> float:
    app = create_simulator_app(time_scale=86_400.0)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://simulator") as http:
        trackers = EasyPostTrackers(http, "EZTK-bench")
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            await trackers.fetch(f"9400111206206406{count:06d}", "usps")
            count += 1
    return count / elapsed


def _rate(work: Callable[[], object], seconds: float = 1.0) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        work()
        count += 1
    return count / elapsed


def main() -> int:
    goals = {
        "carrier detection (numbers/s)": (
            _rate(lambda: [detect(n) for n in NUMBERS]) * len(NUMBERS),
            20_000,
        ),
        "policy lifecycles (/s)": (_rate(_lifecycle), 1_000),
        "message renders (/s)": (_rate(_render), 500),
        "simulator tracker polls (/s)": (asyncio.run(_poll_rate()), 100),
    }
    missed = 0
    for name, (measured, goal) in goals.items():
        verdict = "ok" if measured >= goal else "MISSED"
        missed += measured < goal
        print(f"{name:<32} {measured:>12,.0f}   goal {goal:>8,}   {verdict}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
