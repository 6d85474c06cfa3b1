"""`trackflow up --demo`: its orders, numbers, links, event dates, output and quiet hours.

The demo's HTTP calls go to an in-memory API that runs the real pure policy (no Temporal), so
what the demo would show (held messages, event dates) is decided by the same code as in the stack.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytz

from starters import demo
from starters.cli import _parser
from starters.demo_history import seed_history
from starters.render import format_outbox_line
from starters.simulators.klaviyo import DELAYED_LIST_ID
from starters.simulators.providers.app import create_providers_app
from starters.simulators.providers.ops import OpsDoubles
from storage import LedgerRecord, open_ledger
from tests.harness import eventually
from trackflow.carriers import detect_best
from trackflow.effects import SendNotification
from trackflow.messages import Brand, render
from trackflow.models import CarrierEvent, Channel, ExceptionKind, Shipment, Trigger
from trackflow.pinning import pin
from trackflow.policy import customer_zone, on_event, on_start, view
from trackflow.settings import Settings
from trackflow.shipment_state import ShipmentState
from trackflow.sources.shopify import parse_fulfillment
from trackflow.tracking_policy import TrackingPolicy

CARRIER_SITES = {"ups": "ups.com", "usps": "usps.com", "fedex": "fedex.com", "dhl": "dhl.com"}
EVERY_SEND = [(t, None) for t in Trigger if t != Trigger.EXCEPTION] + [
    (Trigger.EXCEPTION, k) for k in ExceptionKind
]
RUNS = 200


class FakeApi:
    """The routes the demo calls, backed by the real policy. A shipment is answered with the
    policy's view, which shares with the API's document the fields the demo reads (timeline
    statuses, waiting due times, time zone, note kind and detail)."""

    def __init__(self, policy: TrackingPolicy | None = None) -> None:
        self.policy = policy or TrackingPolicy()
        self.shipments: dict[str, Shipment] = {}
        self.states: dict[str, ShipmentState] = {}
        self.events: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        now = datetime.now(UTC)
        body: dict[str, Any] = json.loads(request.content) if request.content else {}
        if request.method == "POST" and request.url.path == "/v1/shipments":
            shipment = pinned(Shipment.model_validate(body))
            self.shipments[shipment.tracking_number] = shipment
            self.states[shipment.tracking_number] = on_start(ShipmentState(), now)
            return httpx.Response(202, json={"workflow_id": shipment.workflow_id})
        if request.method == "GET" and request.url.path.startswith("/v1/shipments/"):
            number = request.url.path.rsplit("/", 1)[1]
            shown = view(self.states[number], self.shipments[number], self.policy)
            return httpx.Response(200, json=shown.model_dump(mode="json"))
        if request.method == "POST" and request.url.path == "/webhooks/shopify":
            fulfillment = parse_fulfillment(body, shop_domain=None)
            for shipment in fulfillment.shipments:
                prepared = pinned(shipment)
                self.shipments[prepared.tracking_number] = prepared
                self.states[prepared.tracking_number] = on_start(ShipmentState(), now)
            for event in fulfillment.events:
                self.events.append(event.model_dump(mode="json"))
                self._apply(event, now)
            return httpx.Response(200, json={})
        if request.method == "POST" and request.url.path == "/v1/events":
            self.events.append(body)
            self._apply(CarrierEvent.model_validate(body), now)
            return httpx.Response(202, json={"accepted": True})
        if request.url.path.endswith("/return-requests") or request.url.host == "simulator":
            return httpx.Response(202, json={})
        return httpx.Response(404, json={"detail": "not in the fake"})

    def _apply(self, event: CarrierEvent, now: datetime) -> None:
        number = event.tracking_number
        decision = on_event(self.states[number], event, self.shipments[number], self.policy, now)
        self.states[number] = decision.state

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle), base_url="http://api")


@pytest.fixture
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo paces its events for a human watching; tests need no pacing."""
    monkeypatch.setattr(demo, "STEP_SECONDS", 0.0)


@pytest.fixture
def columns_80(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "24")
    yield


def _demo_orders(runs: int = RUNS) -> Iterator[demo.Order]:
    for index in range(runs):
        yield from demo._orders(f"T{index:03d}")


def _links(text: str) -> list[str]:
    return re.findall(r"https?://[^\s\"'<>]+", text)


# --- 1. valid numbers -----------------------------------------------------------------------


def test_every_demo_number_is_detected_as_its_declared_carrier() -> None:
    wrong = []
    for order in _demo_orders():
        number, carrier = order.shipment["tracking_number"], order.shipment["carrier"]
        best = detect_best(number)
        if best is None or best.courier != carrier:
            wrong.append((number, carrier, best.courier if best else None))
    assert wrong == []


def test_the_shopify_numbers_are_valid_ups_numbers() -> None:
    for index in range(RUNS):
        payload = demo._shopify_split_fulfillment(f"S{index:03d}")
        assert payload["tracking_company"] == "UPS"
        for number in payload["tracking_numbers"]:
            best = detect_best(number)
            assert best is not None and best.courier == "ups", number


# --- 2. a tracking link in every message ----------------------------------------------------


def _send(trigger: Trigger, kind: ExceptionKind | None, channel: Channel, to: str) -> Any:
    return SendNotification(
        idempotency_key=f"k:{trigger}:{kind}:{channel}",
        trigger=trigger,
        channel=channel,
        to=to,
        exception=kind,
    )


def _demo_shipments() -> Iterator[Shipment]:
    for order in _demo_orders(runs=20):
        yield pinned(Shipment.model_validate(order.shipment))
    payload = demo._shopify_split_fulfillment("S001")
    yield from (pinned(s) for s in parse_fulfillment(payload, shop_domain=None).shipments)


def test_every_demo_message_links_to_the_carriers_tracking_page() -> None:
    brand = Brand(store_name="Demo store")
    for shipment in _demo_shipments():
        site = CARRIER_SITES[shipment.carrier or ""]
        for trigger, kind in EVERY_SEND:
            channels = [(Channel.EMAIL, shipment.customer.email)]
            if shipment.customer.phone:
                channels.append((Channel.SMS, shipment.customer.phone))
            for channel, to in channels:
                message = render(shipment, _send(trigger, kind, channel, to or ""), brand)
                texts = [message.body] if channel == Channel.SMS else [message.body, message.html]
                for text in texts:
                    tracking = [
                        link for link in _links(text or "") if shipment.tracking_number in link
                    ]
                    where = f"{shipment.tracking_number} {trigger}/{kind} {channel}"
                    assert tracking, f"no tracking link: {where}\n{text}"
                    host = urlsplit(tracking[0]).hostname or ""
                    assert host == site or host.endswith("." + site), where
                if channel == Channel.EMAIL:
                    assert "Track your package" in (message.html or ""), where
                    assert "Track your package: http" in message.body, where


# --- 4. event dates -------------------------------------------------------------------------


async def test_demo_events_are_never_dated_in_the_future(no_pauses: None) -> None:
    api = FakeApi()
    async with api.client() as http:
        orders = [o for o in demo._orders("D001") if o.steps]
        await asyncio.gather(*(demo._play(http, order, offset=0) for order in orders))
        await demo._play_shopify(http, "secret-not-checked-by-the-fake", "D001")
    done = datetime.now(UTC)
    dates = [datetime.fromisoformat(e["occurred_at"]) for e in api.events]
    assert dates and max(dates) <= done, [d.isoformat() for d in dates if d > done]


async def test_the_late_scan_of_the_out_of_order_story_is_dated_before_the_newer_one(
    no_pauses: None,
) -> None:
    api = FakeApi()
    [order] = [o for o in demo._orders("D002") if "out of order" in o.story]
    async with api.client() as http:
        await demo._play(http, order, offset=0)
    dated = [(e["status"], datetime.fromisoformat(e["occurred_at"])) for e in api.events]
    assert [status for status, _ in dated] == ["out_for_delivery", "in_transit", "delivered"]
    (_, out), (_, late), (_, delivered) = dated
    assert late < out < delivered


# --- 7. output ------------------------------------------------------------------------------


def _record(number: str, channel: str, subject: str | None, body: str) -> LedgerRecord:
    return LedgerRecord(
        idempotency_key=f"shipment-{number}:in_transit:1:{channel}",
        tracking_number=number,
        order_id="#A1B2-1001",
        trigger="exception",
        exception="weather_delay",
        channel=channel,
        to="margaret@example.com" if channel == "email" else "+13055550142",
        subject=subject,
        body=body,
        transport="outbox",
        sent_at=datetime.now(UTC),
    )


LONG_SMS = (
    "Demo store: Hi Margaret! Weather is slowing down your order #A1B2-1004 (DHL). Track: "
    "http://www.dhl.com/en/express/tracking.html?brand=DHL&AWB=3318810025"
)


async def test_the_outbox_lines_of_the_demo_fit_the_terminal(
    tmp_path: Path, columns_80: None, capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(tmp_path / "ledger.sqlite3")
    writer = open_ledger(url)
    await writer.list()  # creates the schema before the printer opens it read-only
    stop, lost = asyncio.Event(), asyncio.Event()
    printer = asyncio.create_task(demo._print_outbox(url, stop, lost, seen=set()))
    try:
        subject = "Update on your order #A1B2-1004: weather is slowing down your package"
        await writer.record_once(_record("3318810025", "email", subject, "Hi\n..."))
        await writer.record_once(_record("3318810025", "sms", None, LONG_SMS))
        printed: list[str] = []

        async def shown() -> list[str]:
            printed.extend(capsys.readouterr().out.splitlines())
            return printed

        def both(lines: list[str]) -> bool:
            return "margaret@example.com" in "".join(lines) and "+13055550142" in "".join(lines)

        await eventually(shown, both, what="both records printed")
    finally:
        stop.set()
        await printer
        await writer.close()
    wide = [line for line in printed if len(line) > 80 and "://" not in line]
    assert wide == [], "\n".join(printed)
    links = [word for line in printed for word in line.split() if "://" in word]
    assert links == ["http://www.dhl.com/en/express/tracking.html?brand=DHL&AWB=3318810025"]


async def test_story_lines_fit_the_terminal(
    no_pauses: None, columns_80: None, capsys: pytest.CaptureFixture[str]
) -> None:
    api = FakeApi()
    async with api.client() as http:
        for order in demo._orders("W001"):
            if order.steps:
                await demo._play(http, order, offset=0)
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(len(line) <= 80 for line in lines), "\n".join(lines)
    held = [line for line in lines if "held for quiet hours" in line]
    assert len(held) == 1 and "W001-1007" in held[0], held


async def test_a_scenario_whose_messages_are_all_held_says_so(
    no_pauses: None, capsys: pytest.CaptureFixture[str]
) -> None:
    api = FakeApi()
    [night] = [o for o in demo._orders("H001") if "night" in o.story]
    zone = night.shipment["customer"]["timezone"]
    async with api.client() as http:
        await demo._play(http, night, offset=0)
    out = capsys.readouterr().out
    local = datetime.now(UTC).astimezone(pytz.timezone(zone))
    assert local.hour < 8  # the story's premise: it is night where the customer lives
    expected = f"1 message held for quiet hours until 08:00 {zone}"
    assert expected in out, out


def _hours(day: datetime) -> Iterator[datetime]:
    for hour in range(24):
        for minute in (0, 59):
            yield day.replace(hour=hour, minute=minute)


SAMPLE_DAYS = [datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 7, 15, tzinfo=UTC)]


@pytest.mark.parametrize("day", SAMPLE_DAYS, ids=["january", "july"])
@pytest.mark.parametrize("hours", [demo.DAY_HOURS, demo.NIGHT_HOURS], ids=["day", "night"])
def test_a_zone_is_found_for_every_utc_hour(day: datetime, hours: range) -> None:
    for now in _hours(day):
        zone = demo.zone_where_local_hour_in(hours, now)
        assert zone in pytz.all_timezones_set
        assert now.astimezone(pytz.timezone(zone)).hour in hours, (now, zone)


@pytest.mark.parametrize("day", SAMPLE_DAYS, ids=["january", "july"])
def test_customers_live_where_it_is_day_except_in_the_quiet_hours_story(day: datetime) -> None:
    for now in _hours(day):
        for order in demo._orders("Q001", now):
            zone = pytz.timezone(order.shipment["customer"]["timezone"])
            hours = demo.NIGHT_HOURS if order.shows_quiet_hours else demo.DAY_HOURS
            assert now.astimezone(zone).hour in hours, (now, order.story, zone)


@pytest.mark.parametrize("day", SAMPLE_DAYS, ids=["january", "july"])
def test_the_shopify_customer_is_in_daytime_at_every_utc_hour(day: datetime) -> None:
    """Its zone comes from the address (Shopify sends no time zone): the address must be one
    where it is daytime, or the scenario shows nothing."""
    policy = TrackingPolicy()
    for now in _hours(day):
        payload = demo._shopify_split_fulfillment("Z001", now)
        [first, *_] = parse_fulfillment(payload, shop_domain=None).shipments
        zone = customer_zone(first, policy)
        assert now.astimezone(pytz.timezone(zone)).hour in demo.DAY_HOURS, (now, zone)


@pytest.mark.parametrize("place", demo.PLACES, ids=[p.zone for p in demo.PLACES])
def test_every_place_address_resolves_to_its_zone(place: demo.Place) -> None:
    shipment = Shipment.model_validate(
        {
            "order_id": "1",
            "tracking_number": "1Z999AA10123456784",
            "customer": {
                "email": "a@example.com",
                "address": {
                    "country_code": place.country_code,
                    "province_code": place.province_code,
                },
            },
            "order_value": "1.00",
        }
    )
    assert customer_zone(shipment, TrackingPolicy()) == place.zone


# --- 9. once per data dir -------------------------------------------------------------------


@pytest.fixture
def instant_demo(monkeypatch: pytest.MonkeyPatch, no_pauses: None) -> None:
    names = (
        "STAGGER_SECONDS",
        "DEADLINE_SECONDS",
        "SETTLE_SECONDS",
        "FEED_DELIVERED_WITHIN_SECONDS",
    )
    for name in names:
        monkeypatch.setattr(demo, name, 0.0)
    monkeypatch.setattr(demo, "HISTORY_PER_WEEK", 3)  # a few simulated shipments a week


async def _run_demo(data_dir: Path, api: FakeApi) -> None:
    await demo._demo(
        "http://api",
        "token",
        "shopify-secret",
        str(data_dir / "ledger.sqlite3"),
        "http://simulator",
        data_dir,
        transport=httpx.MockTransport(api.handle),
        store_name="Acme Goods",
    )


async def test_the_demo_plays_once_per_data_dir_then_shows_the_outbox(
    tmp_path: Path, instant_demo: None, capsys: pytest.CaptureFixture[str]
) -> None:
    first = FakeApi()
    await _run_demo(tmp_path, first)
    registered = [r for r in first.requests if r == ("POST", "/v1/shipments")]
    assert len(registered) == len(demo._orders("X"))
    out = capsys.readouterr().out
    assert "demo: done" in out
    # The history is seeded before the first order, the report written before the end.
    seeded = out.index("demo: seeded 8 simulated weeks of history")
    assert seeded < out.index("-1001] ") < out.index("report.html") < out.index("demo: done")
    page = (tmp_path / "report.html").read_text()
    assert "<title>Acme Goods" in page and page.count("<svg") >= 3
    assert "shipment" in (tmp_path / "report.csv").read_text()
    headline = re.search(r"^  (WISMO tickets per 100 shipments: [0-9.]+ → .*)$", out, re.M)
    assert headline is not None and headline.group(1) in page
    assert '  curl -H "Authorization: Bearer $TOKEN" \\\n       http://api/v1/metrics/report' in out

    ledger = open_ledger(str(tmp_path / "ledger.sqlite3"))
    await ledger.record_once(_record("3318810025", "email", "Your order #A1B2-1004 ...", "Hi"))
    await ledger.close()
    again = FakeApi()
    await _run_demo(tmp_path, again)

    out = capsys.readouterr().out
    assert again.requests == []
    assert "already played in this data dir" in out
    assert "margaret@example.com" in out
    assert "make clean" in out
    assert "seeded" not in out and "DEMOHIST" not in out  # once; not in the outbox listing
    assert "WISMO tickets per 100 shipments: " in out  # the report, written afresh


def test_without_a_data_dir_the_marker_goes_beside_a_sqlite_ledger(tmp_path: Path) -> None:
    assert demo._marker_dir(None, f"sqlite:///{tmp_path}/ledger.sqlite3") == tmp_path
    assert demo._marker_dir(None, str(tmp_path / "ledger.sqlite3")) == tmp_path
    assert demo._marker_dir(None, "postgresql://db/trackflow") is None


def test_the_parcels_of_a_split_shipment_are_told_apart_in_the_demo_output() -> None:
    """One Shopify fulfillment, two numbers: the same message twice must not look like a
    duplicate."""
    subject = "Your order #SE907 is on its way"
    first = format_outbox_line(_record("1Z999AA10123456784", "email", subject, ""), width=80)
    second = format_outbox_line(_record("1Z999AA10123456795", "email", subject, ""), width=80)
    assert first != second
    assert "…6784" in first and "…6795" in second


def pinned(shipment: Shipment) -> Shipment:
    return pin(shipment, TrackingPolicy())


# --- 10. the ops doubles: tickets opened before the orders, what they received at the end --


ALL_OPS = ("slack", "gorgias", "zendesk", "klaviyo")


def _ops_app(doubles: OpsDoubles) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_providers_app(ops=doubles))
    return httpx.AsyncClient(transport=transport, base_url="http://ops")


def _as_the_worker_would(doubles: OpsDoubles, emails: list[str], lost: str) -> None:
    """What trackflow's integrations leave in the doubles: tags and a private note on each
    ticket, the lost parcel's alert, a Klaviyo event and a list member."""
    agent = doubles.gorgias.user("trackflow@example.com")
    for ticket in doubles.gorgias.tickets:
        for tag in ("auto_delay_notified", "lost_package"):
            ticket["tags"].append(doubles.gorgias.tag(tag))
        note = {"channel": "internal-note", "body_text": "trackflow told the customer: lost\nx"}
        doubles.gorgias.add_message(ticket, note, sender=agent)
    author = doubles.zendesk.user("trackflow@example.com", role="agent")
    for ticket in doubles.zendesk.tickets:
        comment = {"body": "trackflow told the customer: lost", "public": False}
        changes = {"additional_tags": ["auto_delay_notified", "lost_package"], "comment": comment}
        doubles.zendesk.update(ticket, changes, author)
    doubles.slack.messages.append({"channel": "#ops", "text": f"Package lost: {lost} (order 1)"})
    doubles.klaviyo.events.append(
        {"metric": "Trackflow Delayed", "profile": {"phone_number": "+13055550142"},
         "properties": {"order_name": "#O001-1004"}}
    )  # fmt: skip
    doubles.klaviyo.profiles["p1"] = {"email": emails[-1]}
    doubles.klaviyo.lists[DELAYED_LIST_ID].append("p1")


async def test_the_demo_opens_tickets_then_shows_what_the_ops_doubles_received(
    columns_80: None, capsys: pytest.CaptureFixture[str]
) -> None:
    doubles = OpsDoubles()
    orders = demo._orders("O001")
    writers = [o.shipment["customer"]["email"] for o in orders if o.writes_in]
    assert writers == ["margaret@example.com", "rosalind@example.com"]  # a delay, a lost parcel
    [lost] = [o.shipment["tracking_number"] for o in orders if o.gets_lost and o.writes_in]
    async with _ops_app(doubles) as http:
        ops = demo.Ops(http, "http://ops", ALL_OPS, klaviyo_channels=("sms",))
        await ops.open_tickets(orders)
        assert [t["customer"]["email"] for t in doubles.gorgias.tickets] == writers
        assert all(t["status"] == "open" for t in doubles.gorgias.tickets)
        requesters = [
            doubles.zendesk.user_by_id(t["requester_id"]) for t in doubles.zendesk.tickets
        ]
        assert [(r or {}).get("email") for r in requesters] == writers
        assert ops.missing(await ops.received()) == [
            "the lost parcel's Slack alert",
            "the Gorgias tags",
            "the Zendesk tags",
            "a Klaviyo event",
            "a member of the Klaviyo delayed list",
        ]
        _as_the_worker_would(doubles, writers, lost)
        assert await ops.show(within=5) == []
    printed = capsys.readouterr().out
    out = " ".join(printed.split())  # as read, whatever the wrapping
    assert "Margaret and Rosalind wrote in" in out
    assert "[Slack] 1 alert in #ops: http://ops/slack/_double/messages" in out
    assert f"• Package lost: {lost} (order 1)" in out
    assert "[Gorgias] 2 of 2 tickets tagged, with a note" in out
    tagged = "[auto_delay_notified, lost_package] note: trackflow told the customer: lost"
    assert out.count(tagged) == 4  # two tickets in each helpdesk
    assert "• Trackflow Delayed → +13055550142 (#O001-1004)" in out
    assert f"1 member of the delayed list {DELAYED_LIST_ID}" in out and "• rosalind@" in out
    assert "Not there" not in out and "waiting" not in out
    assert all(len(line) <= 80 for line in printed.splitlines() if "://" not in line), printed


async def test_the_demo_waits_for_delivered_customers_to_leave_the_delayed_list() -> None:
    """CI saw the polled parcel's customer still on the list when the demo listed it."""
    doubles = OpsDoubles()
    orders = demo._orders("L001")
    writers = [o.shipment["customer"]["email"] for o in orders if o.writes_in]
    [lost] = [o.shipment["tracking_number"] for o in orders if o.gets_lost and o.writes_in]
    async with _ops_app(doubles) as http:
        ops = demo.Ops(http, "http://ops", ALL_OPS, klaviyo_channels=("sms",))
        await ops.open_tickets(orders)
        _as_the_worker_would(doubles, writers, lost)
        assert ops.missing(await ops.received()) == []
        [polled] = [o.shipment["customer"]["email"] for o in orders if o.feed == "polling"]
        doubles.klaviyo.profiles["p2"] = {"email": polled}
        doubles.klaviyo.lists[DELAYED_LIST_ID].append("p2")  # its delivery not yet seen
        assert ops.missing(await ops.received()) == [
            "the delivered customers leaving the Klaviyo delayed list"
        ]


async def test_the_demo_says_what_never_reached_the_ops_doubles_instead_of_hanging(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with _ops_app(OpsDoubles()) as http:
        ops = demo.Ops(http, "http://ops", ALL_OPS)  # no channel in klaviyo mode: no event due
        ops.writers = [o for o in demo._orders("N001") if o.writes_in]
        started = asyncio.get_running_loop().time()
        missing = await ops.show(within=0.5)
        took = asyncio.get_running_loop().time() - started
    assert took < 5
    assert "a Klaviyo event" not in missing and "the lost parcel's Slack alert" in missing
    out = " ".join(capsys.readouterr().out.split())
    assert "waiting for the ops integrations" in out
    assert "Not there after 0.5s: the lost parcel's Slack alert, the Gorgias tags" in out
    assert "no events: no channel is in klaviyo delivery mode here" in out


async def test_a_double_that_does_not_answer_is_said_so() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    transport = httpx.MockTransport(refuse)
    async with httpx.AsyncClient(transport=transport, base_url="http://ops") as http:
        ops = demo.Ops(http, "http://ops", ("slack",))
        assert await ops.received() == {"slack": None}
        assert await ops.show(within=0) == ["a Slack alert"]


def test_trackflow_outbox_after_the_demo_lists_its_messages_not_the_seeded_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo ends with "Try `trackflow outbox`": the simulated weeks (hundreds of DEMOHIST
    rows) must not bury what the demo sent. Fails until starters/cli.py `_run_outbox` leaves
    out `starters.demo_history.is_history` rows unless `--tracking-number` names one. Sync:
    the CLI runs its own event loop."""

    async def history_and_a_demo_message() -> None:
        ledger = open_ledger(str(tmp_path / "ledger.sqlite3"))
        try:
            await seed_history(ledger, datetime.now(UTC), merchant="Acme", weeks=1, per_week=2)
            await ledger.record_once(_record("3318810025", "email", "Your order #A1B2", "Hi"))
        finally:
            await ledger.close()

    asyncio.run(history_and_a_demo_message())
    args = _parser().parse_args(["outbox"])
    assert args.run(args, Settings(data_dir=tmp_path)) == 0
    out = capsys.readouterr().out
    assert "margaret@example.com" in out
    assert "DEMOHIST" not in out, out


README = Path(__file__).parent.parent / "README.md"


def _readme_bodies() -> list[Any]:
    """The JSON bodies of the README's curl examples (`curl … -d '{…}'`)."""
    bodies = re.findall(r"-d '(\{.*?\})'", README.read_text(), re.DOTALL)
    return [json.loads(body) for body in bodies]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _demo_identities(run: str) -> set[str]:
    """Who and what the demo's orders are: customers' names (and first names), emails,
    phones, and the tracking numbers, in lower case."""
    found: set[str] = set()
    for order in demo._orders(run):
        customer = order.shipment["customer"]
        found |= {customer["name"], customer["name"].split()[0], customer["email"]}
        found |= {customer["phone"] or "", order.shipment["tracking_number"]}
    shopify = demo._shopify_split_fulfillment(run)
    name = shopify["destination"]["name"]
    found |= {name, name.split()[0], shopify["email"], *shopify["tracking_numbers"]}
    return {value.lower() for value in found} - {""}


def test_the_readme_examples_use_a_customer_the_demo_does_not_have() -> None:
    """Following the README while the demo plays must not touch the demo's customers: the
    README's shipment of the demo's Ada, delayed, put ada@example.com on the Klaviyo delayed
    list after the demo's Ada was delivered, and the demo waited 30 s for her to leave it."""
    bodies = _readme_bodies()
    customers = [body["customer"] for body in bodies if "customer" in body]
    assert customers, "no curl example with a customer in the README"
    demo_has = _demo_identities("r1")
    shared = set()
    for text in (s.strip().lower() for body in bodies for s in _strings(body)):
        words = text.split()
        first = words[0] if words else ""
        shared |= {text, first, text.partition("@")[0]} & demo_has
    assert not shared, f"the README's curl examples use the demo's {sorted(shared)}"


async def test_the_readme_customer_on_the_delayed_list_is_not_waited_for() -> None:
    """The README's example, followed while the demo plays, delays its shipment: its customer
    joins the Klaviyo delayed list and stays there (the parcel is not delivered). The demo
    must not take her for one of its delivered customers and wait 30 s for her to leave."""
    [readme_email] = [b["customer"]["email"] for b in _readme_bodies() if "customer" in b]
    doubles = OpsDoubles()
    orders = demo._orders("R001")
    writers = [o.shipment["customer"]["email"] for o in orders if o.writes_in]
    [lost] = [o.shipment["tracking_number"] for o in orders if o.gets_lost and o.writes_in]
    async with _ops_app(doubles) as http:
        ops = demo.Ops(http, "http://ops", ALL_OPS, klaviyo_channels=("sms",))
        await ops.open_tickets(orders)
        _as_the_worker_would(doubles, writers, lost)
        doubles.klaviyo.profiles["readme"] = {"email": readme_email}
        doubles.klaviyo.lists[DELAYED_LIST_ID].append("readme")
        assert ops.missing(await ops.received()) == []
