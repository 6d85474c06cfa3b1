"""`trackflow up --demo`: sample orders through the real API, messages shown as they go out.

The demo's shipments ask for a compressed clock (`time_scale` 10000: a day passes in under
nine seconds), so stale and lost-package timers fire while you watch; the stack itself and
any other shipment stay on real time.
Send windows are wall-clock local hours and are not compressed: customers are placed in
time zones where it is daytime now, and one where it is night to show a held message.

The demo plays once per data dir: it leaves a marker there, and a later `up --demo` on the
same data dir shows the outbox so far instead of adding another set of orders.

With the provider doubles (`trackflow up --demo --providers simulated`), email goes through
SendGrid's SDK and SMS through Twilio's: each message shows its provider id and, as the doubles'
signed callbacks reach the API, delivered / opened / clicked; one customer opens and clicks her
first email and replies STOP to her first SMS, and her later SMS are suppressed.

The ops integrations go to their doubles (`trackflow up` starts them for those the environment
does not configure): two customers have written in about their order, each with an open ticket
in the Gorgias and Zendesk doubles, which trackflow tags (`auto_delay_notified`, and
`lost_package` for the lost one) with a private note once it has told them of the trouble; the
lost package and the return raise Slack alerts; the delayed customers join the Klaviyo double's
"delayed shipments" list (and leave it once the delay is over). With the outbox, SMS are in
`klaviyo` delivery mode: each text is a Klaviyo event, which Klaviyo's flows would send. At the
end, the demo lists what the doubles received (they work in the background, on their own task
queue: it waits for them a while, and says what never came).

The merchant's report: before its orders, the demo seeds simulated weeks of history into the
ledger database once per data dir (`starters.demo_history`: shadow-mode weeks, then live ones;
its rows are left out of the demo's outbox listings), and at the end writes the report of the
last 8 weeks and this one (`<data dir>/report.html` and `report.csv`, as `trackflow report`)
and prints its headline and the `curl` line that fetches it from the API.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import pytz

from starters.demo_history import is_history, seed_history
from starters.render import format_outbox_line
from starters.report import load_summary, write_report
from starters.simulators.providers.local import SIMULATED_FROM
from starters.simulators.providers.ops import OPS_NAMES, SLACK_CHANNEL, ops_listings
from storage import LedgerRecord, MessageState, open_ledger
from trackflow.carriers.samples import random_tracking_number
from trackflow.insight import period
from trackflow.settings import Settings

DEMO_TIME_SCALE = 10_000.0
STEP_SECONDS = 2.0
STAGGER_SECONDS = 0.7
DEADLINE_SECONDS = 150.0
SETTLE_SECONDS = 3.0
PROCESSED_WITHIN_SECONDS = 20.0
OPS_WITHIN_SECONDS = 30.0
# The simulator's weather-delay scenario takes 90 carrier hours, 32 s at DEMO_TIME_SCALE, and
# polling adds its interval: the feed-driven orders get this long to be delivered.
FEED_DELIVERED_WITHIN_SECONDS = 90.0
SHOWN_PER_LISTING = 12
MARKER_NAME = "demo_played"
# Local hours the customers live in: inside the 08:00-21:00 send window with room to spare for
# the few minutes the demo lasts, and a night where the window opens hours later.
DAY_HOURS = range(9, 18)
NIGHT_HOURS = range(1, 6)
MIN_WIDTH = 40
HISTORY_WEEKS = 8
HISTORY_PER_WEEK = 30  # shipments a simulated week
REPORT_NAME = "report.html"


@dataclass(frozen=True)
class Place:
    zone: str
    city: str
    country_code: str | None = None
    province_code: str | None = None


# Where customers live: together they have every UTC hour in DAY_HOURS and NIGHT_HOURS
# (tests/test_demo.py checks). The address gives the same zone as `zone` (Shopify sends none).
PLACES = (
    Place("Pacific/Honolulu", "Honolulu, HI", "US", "HI"),
    Place("America/Los_Angeles", "Los Angeles, CA", "US", "CA"),
    Place("America/Denver", "Denver, CO", "US", "CO"),
    Place("America/Chicago", "Chicago, IL", "US", "IL"),
    Place("America/New_York", "Brooklyn, NY", "US", "NY"),
    Place("America/Sao_Paulo", "São Paulo", "BR"),
    Place("Europe/London", "London", "GB"),
    Place("Europe/Berlin", "Berlin", "DE"),
    Place("Africa/Nairobi", "Nairobi", "KE"),
    Place("Asia/Dubai", "Dubai", "AE"),
    Place("Asia/Kolkata", "Mumbai", "IN"),
    Place("Asia/Singapore", "Singapore", "SG"),
    Place("Asia/Tokyo", "Tokyo", "JP"),
    Place("Australia/Sydney", "Sydney, NSW", "AU", "NSW"),
    Place("Pacific/Auckland", "Auckland", "NZ"),
)
CITY_ZONES = tuple(place.zone for place in PLACES)


@dataclass(frozen=True)
class Step:
    status: str
    exception: str | None = None
    location: str | None = None
    description: str | None = None
    late: bool = False
    """A scan that reaches us after a newer one: dated an hour before the step it follows."""


@dataclass
class Order:
    story: str
    shipment: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    feed: Literal["api", "polling", "simulator"] = "api"
    return_after_delivery: bool = False
    shows_quiet_hours: bool = False
    replies_stop: bool = False
    """With the provider doubles: opens and clicks the second step's email and replies STOP to
    its SMS, so her later SMS are suppressed."""
    writes_in: bool = False
    """Has an open ticket in the helpdesk doubles before the first scan ("where is my order?"),
    which trackflow tags once it has told her of the trouble."""
    gets_lost: bool = False
    """No scan after the last step: declared lost (a Slack alert, `lost_package` tags)."""


def place_where_local_hour_in(hours: range, now: datetime | None = None) -> Place:
    now = now or datetime.now(UTC)
    for place in PLACES:
        if now.astimezone(pytz.timezone(place.zone)).hour in hours:
            return place
    offset = (hours.start + 1 - now.hour) % 24
    return Place(f"Etc/GMT{-(offset if offset <= 14 else offset - 24):+d}", city="")


def zone_where_local_hour_in(hours: range, now: datetime | None = None) -> str:
    return place_where_local_hour_in(hours, now).zone


LABEL = Step("label_created", description="Shipping label created")
TRANSIT = Step("in_transit", location="Louisville, KY", description="Departed facility")
OUT = Step("out_for_delivery", description="Out for delivery")
DELIVERED = Step("delivered", description="Delivered, front door")
_AT_THE_CUSTOMERS = {"out_for_delivery", "delivered"}  # located in the customer's city


def _orders(run: str, now: datetime | None = None) -> list[Order]:
    day = place_where_local_hour_in(DAY_HOURS, now)
    night = place_where_local_hour_in(NIGHT_HOURS, now)
    return [
        Order(
            "high value: email + SMS; a refund request after delivery starts the returns flow",
            _shipment(f"{run}-1001", "ups", "Ada Lovelace", "212.50", day, phone="+15025550123"),
            [LABEL, TRANSIT, OUT, DELIVERED],
            return_after_delivery=True,
            replies_stop=True,
        ),
        Order(
            "returning customer, low value: email only, a duplicate scan changes nothing",
            _shipment(f"{run}-1002", "usps", "Grace Hopper", "48.00", day, order_count=5),
            [LABEL, TRANSIT, TRANSIT, DELIVERED],
        ),
        Order(
            "express, events out of order: the late in-transit scan sends nothing",
            _shipment(f"{run}-1003", "fedex", "Linus Pauling", "89.00", day, speed="express"),
            [OUT, Step("in_transit", location="Memphis, TN", description="Departed facility",
                       late=True), DELIVERED],
        ),
        Order(
            "weather delay, then back on its way (no alarm), then delivered",
            _shipment(f"{run}-1004", "dhl", "Margaret Hamilton", "320.00", day,
                      phone="+13055550142"),
            [TRANSIT, Step("exception", "weather_delay", "Memphis, TN", "Weather delay"),
             Step("in_transit", location="Atlanta, GA", description="Back on its way"), DELIVERED],
            writes_in=True,
        ),
        Order(
            "address issue: the customer is asked to act; once fixed it is delivered",
            _shipment(f"{run}-1005", "ups", "Alan Turing", "64.00", day),
            [TRANSIT, Step("exception", "address_issue", "Newark, NJ", "Address incomplete"),
             Step("in_transit", location="Newark, NJ", description="Address corrected"),
             DELIVERED],
        ),
        Order(
            "no scan after the first: a stale check-in, then lost (alert + helpdesk tag)",
            _shipment(f"{run}-1006", "usps", "Rosalind Franklin", "120.00", day),
            [LABEL, TRANSIT],
            writes_in=True,
            gets_lost=True,
        ),
        Order(
            "night-time customer: out-for-delivery held, then dropped once delivered",
            _shipment(f"{run}-1007", "ups", "Hedy Lamarr", "75.00", night),
            [OUT, DELIVERED],
            shows_quiet_hours=True,
        ),
        Order(
            "no webhooks: trackflow polls EasyPost (the carrier simulator)",
            _shipment(f"{run}-1008", "usps", "Barbara Liskov", "55.00", day)
            | {"poll_via": "easypost"},
            feed="polling",
        ),
        Order(
            "signed EasyPost webhooks from the simulator: a weather delay",
            _shipment(f"{run}-1009", "usps", "Frances Allen", "180.00", day,
                      phone="+16175550177"),
            feed="simulator",
        ),
    ]  # fmt: skip


def _shipment(
    order_id: str,
    carrier: str,
    name: str,
    value: str,
    place: Place,
    *,
    phone: str | None = None,
    order_count: int = 1,
    speed: str = "standard",
) -> dict[str, Any]:
    first = name.split()[0].lower()
    return {
        "order_id": order_id,
        "order_name": f"#{order_id}",
        "tracking_number": random_tracking_number(carrier),
        "carrier": carrier,
        "customer": {
            "name": name,
            "email": f"{first}@example.com",
            "phone": phone,
            "sms_consent": phone is not None,
            "timezone": place.zone,
        },
        "order_value": value,
        "currency": "USD",
        "shipping_speed": speed,
        "customer_order_count": order_count,
        "items": [{"title": "Trail running shoes", "quantity": 1}],
        "time_scale": DEMO_TIME_SCALE,  # the demo's own clock; other shipments run on real time
    }


def _shopify_split_fulfillment(run: str, now: datetime | None = None) -> dict[str, Any]:
    """Shopify sends no time zone: the address sets it, so it is one where it is daytime."""
    now = now or datetime.now(UTC)
    place = place_where_local_hour_in(DAY_HOURS, now)
    numbers = [random_tracking_number("ups"), random_tracking_number("ups")]
    return {
        "id": int("5" + _digits(11)),
        "order_id": int("8" + _digits(16)),
        "status": "success",
        "name": f"#S{run}.1",
        "tracking_company": "UPS",
        "tracking_numbers": numbers,
        "tracking_urls": [f"https://www.ups.com/track?tracknum={n}" for n in numbers],
        "shipment_status": "in_transit",
        "updated_at": (now - timedelta(hours=2)).isoformat(),
        "email": "katherine@example.com",
        "time_scale": DEMO_TIME_SCALE,
        "destination": {
            "name": "Katherine Johnson",
            "city": place.city.split(",")[0],
            "country_code": place.country_code,
            "province_code": place.province_code,
        },
        "line_items": [
            {"title": "Desk lamp", "quantity": 1, "price": "64.00"},
            {"title": "Lamp shade", "quantity": 2, "price": "15.00"},
        ],
    }


def _digits(count: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(count))


def _event_times(steps: list[Step], now: datetime) -> list[datetime]:
    """An hour apart and all in the past (a scan is never dated ahead of the clock, and the
    API refuses events dated more than a day ahead); a late step goes before the one it follows."""
    times: list[datetime] = []
    for index, step in enumerate(steps):
        at = now - timedelta(hours=len(steps) - index)
        times.append(times[-1] - timedelta(hours=1) if step.late and times else at)
    return times


def _event(
    number: str, index: int, step: Step, at: datetime, city: str | None, now: datetime
) -> dict[str, Any]:
    here = city if step.status in _AT_THE_CUSTOMERS else None
    return {
        "tracking_number": number,
        "status": step.status,
        "exception": step.exception,
        "occurred_at": at.isoformat(),
        "location": step.location or here or None,
        "description": step.description,
        "estimated_delivery": (now + timedelta(days=2)).date().isoformat(),
        "event_id": f"demo-{number}-{index}-{step.status}",
    }


def _width() -> int:
    return max(MIN_WIDTH, shutil.get_terminal_size().columns)


def _say(label: str, text: str) -> None:
    """`  [label] text`, wrapped to the terminal."""
    prefix = f"  [{label}] "
    lines = textwrap.wrap(
        text, width=_width(), initial_indent=prefix, subsequent_indent=" " * len(prefix)
    )
    print("\n".join(lines), flush=True)


def _paragraph(text: str) -> None:
    print(textwrap.fill(text, width=_width(), break_on_hyphens=False), flush=True)


async def _register(http: httpx.AsyncClient, shipment: dict[str, Any]) -> None:
    """Every demo shipment is registered here."""
    (await http.post("/v1/shipments", json=shipment)).raise_for_status()


async def _play(
    http: httpx.AsyncClient,
    order: Order,
    offset: float = 0.0,
    simulator: httpx.AsyncClient | None = None,
    doubles: Doubles | None = None,
) -> None:
    await asyncio.sleep(offset)
    shipment = order.shipment
    number, label = shipment["tracking_number"], shipment["order_id"]
    await _register(http, shipment)
    _say(label, order.story)
    replies = doubles is not None and order.replies_stop
    if replies:
        _say(label, "she opens and clicks her in-transit email, and replies STOP to its SMS")
    if order.feed == "simulator" and simulator is not None:
        await _script_simulator(simulator, number)
    now = datetime.now(UTC)
    city = _city_of(shipment)
    for index, (step, at) in enumerate(
        zip(order.steps, _event_times(order.steps, now), strict=True)
    ):
        await asyncio.sleep(STEP_SECONDS)
        event = _event(number, index, step, at, city, now)
        (await http.post("/v1/events", json=event)).raise_for_status()
        if replies and doubles is not None and index == 1:
            phone = shipment["customer"]["phone"]
            await doubles.customer_reacts(label, number, step.status, phone)
    if order.steps:
        await _tell_if_held(http, label, [number], order.steps[-1].status)
    elif simulator is not None:  # the carrier drives it: the end's listings wait for its delivery
        within = FEED_DELIVERED_WITHIN_SECONDS
        if await _view_once_processed(http, number, DELIVERED.status, within) is None:
            _say(label, f"not delivered after {within:g}s; the carrier feed goes on behind")
    if order.return_after_delivery:
        await asyncio.sleep(STEP_SECONDS * 2)
        body = {"kind": "refund", "request_id": f"demo-refund-{number}", "reason": "too small"}
        response = await http.post(f"/v1/shipments/{number}/return-requests", json=body)
        response.raise_for_status()


def _city_of(shipment: dict[str, Any]) -> str | None:
    zone = shipment["customer"]["timezone"]
    return next((place.city for place in PLACES if place.zone == zone), None)


async def _script_simulator(simulator: httpx.AsyncClient, number: str) -> None:
    scenario = {"tracking_code": number, "scenario": "weather_delay"}
    (await simulator.post("/simulator/scenarios", json=scenario)).raise_for_status()
    tracker = {"tracker": {"tracking_code": number, "carrier": "USPS"}}
    (await simulator.post("/v2/trackers", json=tracker)).raise_for_status()


async def _play_shopify(http: httpx.AsyncClient, secret: str, run: str) -> None:
    now = datetime.now(UTC)
    payload = _shopify_split_fulfillment(run, now)
    body = json.dumps(payload).encode()
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    headers = {
        "X-Shopify-Topic": "fulfillments/create",
        "X-Shopify-Hmac-Sha256": digest,
        "X-Shopify-Webhook-Id": secrets.token_hex(8),
        "Content-Type": "application/json",
    }
    (await http.post("/webhooks/shopify", content=body, headers=headers)).raise_for_status()
    _say("Shopify", "one fulfillment, two tracking numbers: two workflows")
    for number in payload["tracking_numbers"]:
        await asyncio.sleep(STEP_SECONDS)
        delivered = _event(number, 1, DELIVERED, now - timedelta(hours=1), None, now)
        (await http.post("/v1/events", json=delivered)).raise_for_status()
    await _tell_if_held(http, "Shopify", payload["tracking_numbers"], DELIVERED.status)


async def _tell_if_held(
    http: httpx.AsyncClient, label: str, numbers: list[str], last_status: str
) -> None:
    """Messages held for the customer's morning would otherwise show as nothing at all."""
    views = [await _view_once_processed(http, number, last_status) for number in numbers]
    held = [(view, waiting) for view in views if view for waiting in view["waiting"]]
    if not held:
        return
    zone = held[0][0]["timezone"]
    due = min(datetime.fromisoformat(waiting["due_at"]) for _, waiting in held)
    count = f"{len(held)} message" + ("s" if len(held) > 1 else "")
    local = due.astimezone(pytz.timezone(zone))
    _say(label, f"{count} held for quiet hours until {local:%H:%M} {zone}")


async def _view_once_processed(
    http: httpx.AsyncClient,
    number: str,
    last_status: str,
    within: float = PROCESSED_WITHIN_SECONDS,
) -> dict[str, Any] | None:
    """The shipment once its timeline has the scenario's last event; None if it takes long."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while True:
        response = await http.get(f"/v1/shipments/{number}")
        if response.status_code == 200:
            view: dict[str, Any] = response.json()
            if any(entry["status"] == last_status for entry in view["timeline"]):
                return view
        if loop.time() > end:
            return None
        await asyncio.sleep(0.3)


@dataclass
class Doubles:
    """The SendGrid and Twilio doubles' knobs (`/_double/*`), and the ledger that shows what
    their callbacks did."""

    http: httpx.AsyncClient
    ledger_url: str

    async def _delivered(self, number: str, trigger: str, channel: str) -> MessageState | None:
        """The shipment's `trigger` message on `channel` once the provider reported it
        delivered (what the customer reacts to)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + PROCESSED_WITHIN_SECONDS
        while True:
            found = [
                state
                for state in await _states(self.ledger_url, number)
                if state.trigger == trigger and state.channel == channel
                if state.status == "sent" and state.delivery_status == "delivered"
            ]
            if found or loop.time() > end:
                return found[0] if found else None
            await asyncio.sleep(0.3)

    async def customer_reacts(self, label: str, number: str, trigger: str, phone: str) -> None:
        """Opens and clicks the `trigger` email; replies STOP to its SMS once that arrived
        (not while it is on its way: Twilio would refuse it, 21610). The doubles sign the
        events as SendGrid and Twilio do and post them to the API."""
        email = await self._delivered(number, trigger, "email")
        if email is not None:
            for event in ({"event": "open"}, {"event": "click", "url": "https://example.com"}):
                body = event | {"key": email.idempotency_key}
                (await self.http.post("/_double/sendgrid/events", json=body)).raise_for_status()
        if await self._delivered(number, trigger, "sms") is None:
            _say(label, "no SMS went out to reply STOP to")
            return
        stop = {"from": phone, "to": SIMULATED_FROM, "body": "STOP"}
        (await self.http.post("/_double/twilio/inbound", json=stop)).raise_for_status()
        calls = (await self.http.get("/_double/callbacks")).json()["callbacks"]
        inbound = [call for call in calls if call["kind"] == "twilio_inbound"]
        taken = bool(inbound) and inbound[-1]["status_code"] == 200
        _say(
            label,
            f"{phone} replied STOP: no more SMS to this customer"
            if taken
            else f"{phone} replied STOP, but the API did not take it",
        )


TAG = "auto_delay_notified"
LOST_TAG = "lost_package"
HELPDESK_TICKETS = {"gorgias": "/gorgias/_double/tickets", "zendesk": "/zendesk/_double/tickets"}
KLAVIYO_HINT = (
    "no events: no channel is in klaviyo delivery mode here (with "
    "TRACKFLOW_SMS_DELIVERY_MODE=klaviyo, each text would be one)"
)


@dataclass
class Ops:
    """The Slack, Gorgias, Zendesk and Klaviyo doubles standing in for the integrations in
    `doubled` (`http`'s base URL is theirs): the demo opens tickets there and, at the end,
    lists what they received."""

    http: httpx.AsyncClient
    url: str
    doubled: tuple[str, ...]
    klaviyo_channels: tuple[str, ...] = ()
    writers: list[Order] = field(default_factory=list)
    delivered_emails: set[str] = field(default_factory=set)

    @property
    def helpdesks(self) -> list[str]:
        return [name for name in HELPDESK_TICKETS if name in self.doubled]

    async def open_tickets(self, orders: list[Order]) -> None:
        """An open "where is my order?" ticket in each helpdesk double for every customer
        who writes in, before the first scan."""
        self.writers = [order for order in orders if order.writes_in]
        self.delivered_emails = {
            order.shipment["customer"]["email"] for order in orders if not order.gets_lost
        }
        if not self.writers or not self.helpdesks:
            return
        for order in self.writers:
            customer = order.shipment["customer"]
            subject = f"Where is my order {order.shipment['order_name']}?"
            text = "Hi, my order has not arrived yet. Any news?"
            seeds = {
                "gorgias": {
                    "customer_email": customer["email"],
                    "customer_name": customer["name"],
                    "subject": subject,
                    "message": text,
                },
                "zendesk": {
                    "requester_email": customer["email"],
                    "requester_name": customer["name"],
                    "subject": subject,
                    "description": text,
                },
            }
            for name in self.helpdesks:
                try:
                    answer = await self.http.post(HELPDESK_TICKETS[name], json=seeds[name])
                    answer.raise_for_status()
                except httpx.HTTPError as error:  # the demo goes on; the end says what lacks
                    _say("helpdesk", f"could not open a ticket in {OPS_NAMES[name]}: {error}")
        who = " and ".join(order.shipment["customer"]["name"].split()[0] for order in self.writers)
        where = " and ".join(OPS_NAMES[name] for name in self.helpdesks)
        _say("helpdesk", f"{who} wrote in: an open ticket each in {where}, for trackflow to tag")

    async def _get(self, path: str) -> Any:
        try:
            response = await self.http.get(path)
            return response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    async def received(self) -> dict[str, Any]:
        """Each doubled integration's listing (None where the double did not answer)."""
        got: dict[str, Any] = {}
        for name, path in ops_listings("").items():
            if name.split("_")[0] in self.doubled:
                got[name] = await self._get(path)
        return got

    def missing(self, got: dict[str, Any]) -> list[str]:
        """What the demo waits for and the doubles do not have yet."""
        missing: list[str] = []
        lost = [o.shipment["tracking_number"] for o in self.writers if o.gets_lost]
        if "slack" in got:
            texts = " ".join(str(message.get("text")) for message in got["slack"] or [])
            if not got["slack"] or not all(number in texts for number in lost):
                missing.append("the lost parcel's Slack alert" if lost else "a Slack alert")
        wanted = {
            order.shipment["customer"]["email"]: {TAG, LOST_TAG} if order.gets_lost else {TAG}
            for order in self.writers
        }
        for name in self.helpdesks:
            tagged = {
                _ticket_email(ticket): set(ticket.get("tags") or [])
                for ticket in got.get(name) or []
                if _tagged(name, ticket)
            }
            if any(not tags <= tagged.get(email, set()) for email, tags in wanted.items()):
                missing.append(f"the {OPS_NAMES[name]} tags")
        if "klaviyo" in got and self.klaviyo_channels and not got["klaviyo"]:
            missing.append("a Klaviyo event")
        if "klaviyo_list" in got:
            profiles = (got["klaviyo_list"] or {}).get("profiles") or []
            members = {profile.get("email") for profile in profiles}
            lost_emails = {o.shipment["customer"]["email"] for o in self.writers if o.gets_lost}
            if not members or not lost_emails <= members:
                missing.append("a member of the Klaviyo delayed list")
            if members & (self.delivered_emails - lost_emails):
                missing.append("the delivered customers leaving the Klaviyo delayed list")
        return missing

    async def show(self, within: float = OPS_WITHIN_SECONDS) -> list[str]:
        """Wait up to `within` seconds for what the demo expects, then print what the doubles
        received, one line each; returns what never came."""
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        got = await self.received()
        if self.missing(got):
            print("  (waiting for the ops integrations, on their own task queue…)", flush=True)
        while (missing := self.missing(got)) and loop.time() < end:
            await asyncio.sleep(0.5)
            got = await self.received()
        print(flush=True)
        _paragraph(f"demo: what the ops doubles received ({self.url}):")
        listings = ops_listings(self.url)
        for name in ("slack", "gorgias", "zendesk", "klaviyo", "klaviyo_list"):
            if name in got:
                self._print(name, got[name], listings[name])
        if missing:
            _paragraph(
                f"  Not there after {within:g}s: {', '.join(missing)}. The integrations retry "
                "in the background; the listings above show it once it lands."
            )
        return missing

    def _print(self, name: str, listing: Any, url: str) -> None:
        if listing is None:
            _say(_LABELS[name], f"the double did not answer: {url}")
            return
        items: list[str]
        if name == "slack":
            items = [_slack_title(message) for message in listing]
            head = f"{_count(len(items), 'alert')} in {SLACK_CHANNEL}"
        elif name in HELPDESK_TICKETS:
            tagged = [ticket for ticket in listing if _tagged(name, ticket)]
            items = [_ticket_line(name, ticket) for ticket in tagged]
            head = f"{len(tagged)} of {_count(len(listing), 'ticket')} tagged, with a note"
        elif name == "klaviyo":
            items = [_event_line(event) for event in listing]
            head = _count(len(items), "event")
            if not items and not self.klaviyo_channels:
                head = KLAVIYO_HINT
        else:
            profiles = listing.get("profiles") or []
            items = [p.get("email") or p.get("phone_number") or p["id"] for p in profiles]
            head = f"{_count(len(items), 'member')} of the delayed list {listing.get('id')}"
        _say(_LABELS[name], f"{head}: {url}")
        for item in items[:SHOWN_PER_LISTING]:
            _item(item)
        if len(items) > SHOWN_PER_LISTING:
            _item(f"… and {len(items) - SHOWN_PER_LISTING} more")


_LABELS = {
    "slack": "Slack",
    "gorgias": "Gorgias",
    "zendesk": "Zendesk",
    "klaviyo": "Klaviyo",
    "klaviyo_list": "Klaviyo",
}


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _item(text: str) -> None:
    print(
        textwrap.fill(
            text, width=_width(), initial_indent="      • ", subsequent_indent=" " * 8,
            break_on_hyphens=False, break_long_words=False,
        ),
        flush=True,
    )  # fmt: skip


def _slack_title(message: dict[str, Any]) -> str:
    """The alert's one-line text, else its header block's."""
    if message.get("text"):
        return str(message["text"])
    for block in message.get("blocks") or []:
        if block.get("type") == "header":
            return str(block.get("text", {}).get("text", ""))
    return "(no text)"


def _ticket_email(ticket: dict[str, Any]) -> str | None:
    found = ticket.get("requester_email") or (ticket.get("customer") or {}).get("email")
    return str(found) if found else None


def _notes(name: str, ticket: dict[str, Any]) -> list[str]:
    """A ticket's private notes (Gorgias internal notes, Zendesk private comments)."""
    if name == "gorgias":
        return [
            str(m.get("body_text") or "")
            for m in ticket.get("messages") or []
            if m.get("channel") == "internal-note"
        ]
    return [str(c.get("body") or "") for c in ticket.get("comments") or [] if not c.get("public")]


def _tagged(name: str, ticket: dict[str, Any]) -> bool:
    return TAG in (ticket.get("tags") or []) and bool(_notes(name, ticket))


def _ticket_line(name: str, ticket: dict[str, Any]) -> str:
    notes = _notes(name, ticket)  # the latest says the most (lost comes after stale)
    first = next((line for line in notes[-1].splitlines() if line.strip()), "") if notes else ""
    tags = ", ".join(ticket.get("tags") or [])
    return f"#{ticket['id']} {_ticket_email(ticket)} [{tags}] note: {first}"


def _event_line(event: dict[str, Any]) -> str:
    profile = event.get("profile") or {}
    who = profile.get("email") or profile.get("phone_number") or "?"
    order = (event.get("properties") or {}).get("order_name") or ""
    return f"{event.get('metric')} → {who}" + (f" ({order})" if order else "")


async def _states(ledger_url: str, tracking_number: str | None = None) -> list[MessageState]:
    """The message rows of the demo and of the stack (not the seeded history's)."""
    ledger = open_ledger(ledger_url, read_only=True)
    try:
        return [
            s for s in await ledger.states(tracking_number) if not is_history(s.tracking_number)
        ]
    finally:
        await ledger.close()


KLAVIYO_SAID = "*klaviyo-said*"  # in `seen`: the note below was printed


def _klaviyo_note(channel: str) -> str:
    what = "SMS" if channel == "sms" else channel
    return (
        f'      ↳ {what} in klaviyo delivery mode: each is a Klaviyo event ("Trackflow '
        "<status>\"), which the merchant's Klaviyo flow sends"
    )


# What a provider said about a message, as the demo shows it (SendGrid and Twilio words).
_FEEDBACK_SHOWN = ("delivered", "bounce", "dropped", "undelivered", "failed", "spamreport")


def _wrapped(line: str) -> str:
    """A feedback line wrapped to the terminal, continued under its text."""
    indent = " " * (len(line) - len(line.lstrip()) + 2)
    return textwrap.fill(
        line.strip(),
        width=_width(),
        initial_indent=line[: len(line) - len(line.lstrip())],
        subsequent_indent=indent,
        break_on_hyphens=False,
        break_long_words=False,
    )


def _feedback_lines(state: MessageState, shown: set[str]) -> list[str]:
    """What is new about a message since `shown` (updated): its provider id, its delivery,
    opened, clicked, its suppression or refusal."""
    if state.kind not in (None, "message") or "*" in shown:
        return []
    parcel = f"…{(state.tracking_number or '')[-4:]} {state.channel}/{state.trigger}:"
    facts: list[tuple[str, str]] = []
    if state.provider_message_id:
        facts.append(("id", f"{state.transport} id {state.provider_message_id}"))
    if state.delivery_status in _FEEDBACK_SHOWN:
        code = f" ({state.error_code})" if state.error_code else ""
        facts.append((f"delivery:{state.delivery_status}", f"{state.delivery_status}{code}"))
    if state.opened_at:
        facts.append(("opened", "opened"))
    if state.clicked_at:
        facts.append(("clicked", "clicked"))
    if state.status == "suppressed":
        why = "replied STOP" if state.error_code == "sms_stop" else f"({state.error_code})"
        facts.append(("suppressed", f"suppressed, not sent: {state.to} {why}"))
    elif state.status in ("failed", "uncertain"):
        facts.append((state.status, f"{state.status} ({state.error_code or '?'})"))
    new = [(fact, text) for fact, text in facts if fact not in shown]
    shown.update(fact for fact, _ in new)
    return [f"      ↳ {parcel} {text}" for _, text in new]


async def tracking_page_url(ledger_url: str, tracking_number: str) -> str | None:
    """The shopper's tracking page of a shipment, as its messages link to it (without the
    message's ref, so opening it here counts no click); None when they link elsewhere (no
    TRACKFLOW_PUBLIC_URL or no page key)."""
    for record in await _outbox(ledger_url):
        if record.tracking_number == tracking_number and record.kind == "message":
            found = _PAGE_LINK.search(record.body)
            if found:
                return found.group(1)
    return None


_PAGE_LINK = re.compile(r"(https?://[^\s?]+/t/[A-Za-z0-9_-]+)(?:\?m=[A-Za-z0-9_-]+)?")


async def _outbox(ledger_url: str) -> list[LedgerRecord]:
    """What the demo and the stack recorded (not the seeded history's rows)."""
    ledger = open_ledger(ledger_url, read_only=True)
    try:
        return [r for r in await ledger.list() if not is_history(r.tracking_number)]
    finally:
        await ledger.close()


async def _seed_history(ledger_url: str, store_name: str) -> None:
    """Simulated weeks for the merchant's report, once per ledger database."""
    ledger = open_ledger(ledger_url)
    try:
        seeded = await seed_history(
            ledger,
            datetime.now(UTC),
            merchant=store_name,
            weeks=HISTORY_WEEKS,
            per_week=HISTORY_PER_WEEK,
        )
    finally:
        await ledger.close()
    if seeded:
        _paragraph(
            f"demo: seeded {HISTORY_WEEKS} simulated weeks of history for the merchant's "
            "report (shadow mode first, then live; tracking numbers DEMOHIST…, left out of "
            "the outbox below)."
        )


async def _write_report(
    ledger_url: str, folder: Path | None, store_name: str, api_url: str, data_dir: Path | None
) -> None:
    """The report of the last 8 weeks and this one, as `trackflow report` writes it, into the
    data dir; its headline, and how to fetch it from the API."""
    now = datetime.now(UTC)
    ledger = open_ledger(ledger_url, read_only=True)
    try:
        summary = await load_summary(ledger, store_name, period(None, None, now.date()), now)
    finally:
        await ledger.close()
    print(flush=True)
    if folder is not None:
        page, sheet = write_report(summary, folder / REPORT_NAME, store_name)
        _paragraph(
            f"The merchant's report ({summary.period.start} to {summary.period.end}: the "
            f"simulated weeks, then this demo): {_shown(page)} (CSV: {_shown(sheet)})"
        )
    print(f"  {summary.wismo.headline}", flush=True)
    print("From the API (the same page; report.csv for the CSV):", flush=True)
    token_file = (data_dir or folder or Path(".")) / "api_token"
    if token_file.exists():
        print(f"  TOKEN=$(cat {_shown(token_file)})", flush=True)
    print('  curl -H "Authorization: Bearer $TOKEN" \\', flush=True)
    print(f"       {api_url}/v1/metrics/report > report.html", flush=True)
    print(flush=True)


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it, for copy and paste."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _print_record(record: LedgerRecord) -> None:
    print(format_outbox_line(record, width=_width(), indent="    "), flush=True)


async def _print_outbox(
    ledger_url: str,
    stop: asyncio.Event,
    lost: asyncio.Event,
    seen: set[str],
    feedback: dict[str, set[str]] | None = None,
) -> None:
    """Print every record not in `seen` as it appears, until `stop`; with `feedback` (the
    provider doubles), also what the providers said about each message since."""
    while not stop.is_set():
        for record in await _outbox(ledger_url):
            if record.idempotency_key not in seen:
                seen.add(record.idempotency_key)
                _print_record(record)
                # Once: every such line is one.
                klaviyo = record.transport == "klaviyo" and record.kind in (None, "message")
                if klaviyo and KLAVIYO_SAID not in seen:
                    seen.add(KLAVIYO_SAID)
                    print(_wrapped(_klaviyo_note(record.channel)), flush=True)
                if record.trigger == "lost" and record.kind == "message":
                    lost.set()
        if feedback is not None:
            for state in await _states(ledger_url):
                shown = feedback.setdefault(state.idempotency_key, set())
                for line in _feedback_lines(state, shown):
                    print(_wrapped(line), flush=True)
        await asyncio.sleep(0.3)


def _marker_dir(data_dir: Path | None, ledger_url: str) -> Path | None:
    """The data dir, else the folder of a SQLite ledger (the default one is in the data dir)."""
    if data_dir is not None:
        return data_dir
    if ledger_url.startswith(("postgresql://", "postgres://")):
        return None
    return Path(ledger_url.removeprefix("sqlite:///")).parent


def _mark_played(folder: Path | None, run: str) -> None:
    if folder is None:
        return
    note = {"run": run, "played_at": datetime.now(UTC).isoformat(timespec="seconds")}
    descriptor = os.open(folder / MARKER_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as marker:
        json.dump(note, marker)


def _played_before(folder: Path | None) -> dict[str, Any] | None:
    if folder is None:
        return None
    with contextlib.suppress(FileNotFoundError, ValueError):
        note = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
        return note if isinstance(note, dict) else {}
    return None


async def _show_earlier_demo(
    ledger_url: str, folder: Path, note: dict[str, Any], ops_url: str | None = None
) -> None:
    when = f" (run {note.get('run', '?')}, {note.get('played_at', '?')})" if note else ""
    _paragraph(
        f"demo: already played in this data dir, {folder}{when}; its shipments carry on from "
        "where they were. The outbox so far:"
    )
    records = await _outbox(ledger_url)
    for record in records:
        _print_record(record)
    if not records:
        print("    (nothing sent yet)")
    print()
    if ops_url:
        _paragraph(
            f"The ops doubles ({ops_url}) started afresh with this `up` (they keep what they "
            "receive in memory): alerts, tags and Klaviyo calls from now on land there."
        )
        print()
    _paragraph(
        "For a fresh demo: `make clean` (removes the data dir), or `trackflow up --demo "
        "--data-dir ANOTHER_DIR`. The stack keeps running; Ctrl-C stops it."
    )


async def _demo(
    api_url: str,
    api_token: str,
    shopify_secret: str,
    ledger_url: str,
    simulator_url: str,
    data_dir: Path | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    providers_url: str | None = None,
    ops_url: str | None = None,
    doubled: tuple[str, ...] = (),
    klaviyo_channels: tuple[str, ...] = (),
    store_name: str | None = None,
) -> None:
    store = store_name or Settings.from_env(os.environ).store_name
    folder = _marker_dir(data_dir, ledger_url)
    earlier = _played_before(folder)
    await _seed_history(ledger_url, store)
    if earlier is not None and folder is not None:
        await _show_earlier_demo(ledger_url, folder, earlier, ops_url)
        await _write_report(ledger_url, folder, store, api_url, data_dir)
        return
    _paragraph("demo: sample orders go through the real API; the outbox shows what goes out")
    if providers_url:
        _paragraph(
            f"Email goes through SendGrid's SDK and SMS through Twilio's, to the doubles at "
            f"{providers_url}; under each message: its provider id, then what the doubles' "
            "signed callbacks said (delivered, opened, clicked)."
        )
    if ops_url and doubled:
        names = ", ".join(OPS_NAMES[name] for name in doubled)
        texts = " Texts become Klaviyo events." if "sms" in klaviyo_channels else ""
        _paragraph(
            f"Ops integrations: {names} go to their doubles at {ops_url}; at the end, what "
            f"they received.{texts}"
        )
    print()
    run = secrets.token_hex(2).upper()
    orders = _orders(run)
    stop, lost = asyncio.Event(), asyncio.Event()
    seen = {record.idempotency_key for record in await _outbox(ledger_url)}
    # With the doubles, what providers said about each row from now on (a suppressed one is
    # in no outbox); rows from before count as shown.
    feedback = (
        {state.idempotency_key: {"*"} for state in await _states(ledger_url)}
        if providers_url
        else None
    )
    printer = asyncio.create_task(_print_outbox(ledger_url, stop, lost, seen, feedback))
    headers = {"Authorization": f"Bearer {api_token}"}
    async with (
        httpx.AsyncClient(
            base_url=api_url, headers=headers, timeout=30, transport=transport
        ) as http,
        httpx.AsyncClient(
            base_url=simulator_url, auth=("EZTK-demo", ""), timeout=30, transport=transport
        ) as sim,
        httpx.AsyncClient(
            base_url=providers_url or "http://providers.invalid", timeout=30, transport=transport
        ) as knobs,
        httpx.AsyncClient(
            base_url=ops_url or "http://ops.invalid", timeout=10, transport=transport
        ) as ops_http,
    ):
        _mark_played(folder, run)
        doubles = Doubles(knobs, ledger_url) if providers_url else None
        ops = Ops(ops_http, ops_url, doubled, klaviyo_channels) if ops_url and doubled else None
        if ops is not None:
            await ops.open_tickets(orders)
        plays = [
            _play(http, order, offset=i * STAGGER_SECONDS, simulator=sim, doubles=doubles)
            for i, order in enumerate(orders)
        ]
        plays.append(_play_shopify(http, shopify_secret, run))
        await asyncio.gather(*plays)
        print("\n  (waiting for the stale and lost-package timers…)\n", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lost.wait(), timeout=DEADLINE_SECONDS)
        await asyncio.sleep(SETTLE_SECONDS)  # the alert and helpdesk tags follow the message
        stop.set()
        await printer
        night = next(order for order in orders if order.shows_quiet_hours)
        number = night.shipment["tracking_number"]
        held = (await http.get(f"/v1/shipments/{number}")).json()
        for note in held["notes"]:
            _say(night.shipment["order_id"], f"{note['kind']}: {note['detail']}")
        if ops is not None:
            await ops.show()
    print()
    lost_order = next(order for order in orders if order.gets_lost)
    page = await tracking_page_url(ledger_url, lost_order.shipment["tracking_number"])
    if page:
        _paragraph(
            f"The shopper's tracking page, which every message links to (here the lost "
            f"parcel's, order {lost_order.shipment['order_name']}): {page}"
        )
    if providers_url:
        stopped = next(order for order in orders if order.replies_stop)
        _paragraph(
            f"Per message, provider id and delivery: `.venv/bin/trackflow shipment show "
            f"{stopped.shipment['tracking_number']}`; what the doubles received: "
            f"{providers_url}/_double/sendgrid/messages and /_double/twilio/messages."
        )
    await _write_report(ledger_url, folder, store, api_url, data_dir)
    _paragraph(
        "demo: done. Try `.venv/bin/trackflow outbox`, `.venv/bin/trackflow shipment show "
        f"{number}`, or filter by TrackflowStatus / TrackflowNextAction in the Web UI. "
        "The stack keeps running; Ctrl-C stops it."
    )


def play_demo(
    *,
    api_url: str,
    api_token: str,
    shopify_secret: str,
    ledger_url: str,
    simulator_url: str,
    data_dir: Path | None = None,
    providers_url: str | None = None,
    ops_url: str | None = None,
    doubled: tuple[str, ...] = (),
    klaviyo_channels: tuple[str, ...] = (),
    store_name: str | None = None,
) -> None:
    asyncio.run(
        _demo(
            api_url,
            api_token,
            shopify_secret,
            ledger_url,
            simulator_url,
            data_dir,
            providers_url=providers_url,
            ops_url=ops_url,
            doubled=doubled,
            klaviyo_channels=klaviyo_channels,
            store_name=store_name,
        )
    )
