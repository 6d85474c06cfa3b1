"""The shopper's tracking page (issue 12, part 2): its view model and HTML (trackflow.page),
`GET /t/<token>` on the read model (starters.api.pages), and the link every message carries
(activities.notify)."""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.notify import NotificationActivities, with_page_link
from activities.read_model import ReadModel
from starters import demo
from starters.api import create_app
from starters.api.pages import page_brand
from storage import open_ledger
from tests.api_support import api_client, api_settings, event_body, shipment_body, tracking_number
from tests.factories import ANY_TIME_POLICY, at, make_event, make_shipment
from tests.harness import eventually, outbox, running_worker, sent
from trackflow import policy as tracking
from trackflow.contracts import SendBatch
from trackflow.effects import SendNotification
from trackflow.messages import Brand, MessageContext
from trackflow.models import CarrierStatus, Channel, ExceptionKind, Shipment, Trigger
from trackflow.page import (
    PROBLEMS,
    PageBrand,
    expired,
    message_ref,
    page_link,
    render_page,
    shown_until,
    tracking_page,
)
from trackflow.page_token import page_key, page_token
from trackflow.projection import project
from trackflow.settings import Settings
from trackflow.shipment_state import ShipmentProjection, ShipmentState

ZONE = "America/Chicago"
WRITTEN_AT = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
Step = tuple[CarrierStatus, float, dict[str, Any]]

LABEL: Step = (CarrierStatus.LABEL_CREATED, 0, {})
MOVING: Step = (
    CarrierStatus.IN_TRANSIT,
    20,
    {"location": "Louisville, KY", "description": "Departed facility",
     "estimated_delivery": datetime(2026, 11, 24).date()},
)  # fmt: skip
OUT: Step = (CarrierStatus.OUT_FOR_DELIVERY, 40, {"location": "Chicago, IL"})
DELIVERED: Step = (CarrierStatus.DELIVERED, 46, {"location": "Chicago, IL"})
WEATHER: Step = (
    CarrierStatus.EXCEPTION,
    30,
    {"exception": ExceptionKind.WEATHER_DELAY, "location": "Memphis, TN",
     "description": "Severe weather", "estimated_delivery": datetime(2026, 11, 26).date()},
)  # fmt: skip

STATES: dict[str, tuple[Step, ...]] = {
    "in_transit": (LABEL, MOVING),
    "out_for_delivery": (LABEL, MOVING, OUT),
    "delivered": (LABEL, MOVING, OUT, DELIVERED),
    "weather_delay": (LABEL, MOVING, WEATHER),
    "lost": (LABEL, MOVING),  # then the lost timer fires
}


def shipment_for(name: str) -> Shipment:
    number = {"in_transit": "1Z999AA10123456784", "out_for_delivery": "1Z999AA10000000019",
              "delivered": "1Z999AA10000000027", "weather_delay": "1Z999AA10000000035",
              "lost": "1Z999AA10000000043"}[name]  # fmt: skip
    return make_shipment(tracking_number=number, order_value="300", timezone=ZONE, carrier="ups")


def row_for(name: str, written_at: datetime = WRITTEN_AT) -> ShipmentProjection:
    """The read-model row the workflow would write for the shipment in state `name`."""
    shipment = shipment_for(name)
    state = tracking.on_start(ShipmentState(), at(0))
    for status, hours, extra in STATES[name]:
        event = make_event(status, at(hours), tracking_number=shipment.tracking_number, **extra)
        state = tracking.on_event(state, event, shipment, ANY_TIME_POLICY, at(hours)).state
    if name == "lost":
        later = at(20) + ANY_TIME_POLICY.standard.lost_after + timedelta(hours=1)
        state = tracking.on_tick(state, shipment, ANY_TIME_POLICY, later).state
    return project(state, shipment, ANY_TIME_POLICY, written_at, 1)


BRAND = PageBrand(
    store_name="Acme Goods",
    color="#7c3aed",
    support_email="help@acme.test",
    support_phone="+1 502 555 0100",
    return_url="https://acme.test/returns",
    resolution_url="https://acme.test/make-it-right",
)
PUBLIC_URL = "https://track.acme.test"
SECRET = "page-test-secret"


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "public_url": PUBLIC_URL,
        "unsubscribe_secret": SECRET,
        "store_name": "Acme Goods",
        "brand_color": "#7c3aed",
        "support_email": "help@acme.test",
        "return_url": "https://acme.test/returns",
    }
    return Settings(**(values | overrides))


def _key(settings: Settings) -> bytes:
    key = page_key(settings)
    assert key is not None
    return key


def _text(page: str) -> str:
    """The page's words, without tags or styles."""
    body = page.split("<body>", 1)[1]
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


# --- the view model --------------------------------------------------------------------------


def test_each_state_reads_as_the_shopper_expects_in_their_zone() -> None:
    moving = tracking_page(row_for("in_transit"), BRAND, WRITTEN_AT)
    assert (moving.greeting, moving.headline, moving.tone) == ("Hi Ada,", "On its way", "ok")
    assert [s.state for s in moving.steps] == ["done", "current", "todo", "todo"]
    assert (moving.eta_label, moving.eta) == ("Estimated delivery", "Tuesday, November 24")
    # 20 h after T0 (12:00 UTC) is 08:00 UTC on the 21st: 2 AM in Chicago.
    assert moving.last_scan_at == "Saturday, November 21, 2:00 AM CST"
    assert (moving.last_scan_place, moving.last_scan_detail) == (
        "Louisville, KY",
        "Departed facility",
    )
    assert moving.steps[1].at == "Nov 21, 2:00 AM"
    assert moving.problem is None
    assert moving.carrier_link is not None
    assert moving.carrier_link.href.startswith("https://") and "1Z999AA10123456784" in (
        moving.carrier_link.href
    )

    out = tracking_page(row_for("out_for_delivery"), BRAND, WRITTEN_AT)
    assert (out.headline, out.eta_label, out.eta) == (
        "Out for delivery", "Arriving", "Today, Tuesday, November 24"
    )  # fmt: skip
    assert [s.state for s in out.steps] == ["done", "done", "current", "todo"]

    delivered = tracking_page(row_for("delivered"), BRAND, WRITTEN_AT)
    assert (delivered.headline, delivered.tone) == ("Delivered", "good")
    assert [s.state for s in delivered.steps] == ["done"] * 4
    assert (delivered.eta_label, delivered.eta) == ("Delivered", "Sunday, November 22, 4:00 AM CST")

    weather = tracking_page(row_for("weather_delay"), BRAND, WRITTEN_AT)
    assert (weather.headline, weather.tone) == ("Delayed by weather", "problem")
    assert [s.state for s in weather.steps] == ["done", "problem", "todo", "todo"]
    assert weather.eta == "Thursday, November 26"  # the carrier's new estimate
    assert weather.problem is not None and "weather" in weather.problem.what
    assert weather.problem.next_steps and not weather.problem.offers_resolution
    assert weather.last_scan_place == "Memphis, TN"

    lost = tracking_page(row_for("lost"), BRAND, WRITTEN_AT)
    assert lost.headline == "Lost in transit" and lost.eta is None
    assert lost.problem is not None and lost.problem.offers_resolution
    assert "can't locate your package" in lost.problem.what
    assert [link.href for link in lost.links] == [
        "https://acme.test/make-it-right",
        "https://acme.test/returns",
    ]


def test_an_estimate_that_is_over_is_not_shown() -> None:
    """Issue 18: a page viewed on December 7 does not promise November 24 (the row keeps it
    for the analytics); "today" is the shopper's day (Chicago), not UTC's."""
    row = row_for("in_transit")
    assert row.estimated_delivery == datetime(2026, 11, 24).date()
    chicago_24th_late = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # 23:00 on the 24th there
    assert tracking_page(row, BRAND, chicago_24th_late).eta == "Tuesday, November 24"
    for now in (datetime(2026, 11, 25, 7, 0, tzinfo=UTC), datetime(2026, 12, 7, tzinfo=UTC)):
        view = tracking_page(row, BRAND, now)
        assert (view.eta_label, view.eta) == (None, None), now
        assert "November 24" not in _text(render_page(view, BRAND))


def test_before_the_first_scan_the_page_says_the_order_is_being_prepared() -> None:
    shipment = shipment_for("in_transit")
    state = tracking.on_start(ShipmentState(), at(0))
    view = tracking_page(
        project(state, shipment, ANY_TIME_POLICY, WRITTEN_AT, 1), BRAND, WRITTEN_AT
    )
    assert (view.headline, view.last_scan_at, view.eta, view.problem) == (
        "Order received", None, None, None
    )  # fmt: skip
    assert [s.state for s in view.steps] == ["todo"] * 4
    assert "Order received" in render_page(view, BRAND)


def test_every_exception_kind_says_what_happened_and_what_happens_next() -> None:
    for kind in ExceptionKind:
        headline, what, next_steps = PROBLEMS[kind]
        assert headline and what and next_steps, kind
    plain = PageBrand(store_name="Acme")  # no replacement-or-refund page
    row = row_for("weather_delay")
    for kind in ExceptionKind:
        document = row.document.model_copy(update={"exception": kind})
        view = tracking_page(row.model_copy(update={"document": document}), plain, WRITTEN_AT)
        assert view.problem is not None and view.tone == "problem", kind
        assert "{carrier}" not in view.headline + view.problem.what + "".join(
            view.problem.next_steps
        )
        assert not any("link below" in step for step in view.problem.next_steps), kind
    assert tracking_page(row, plain, WRITTEN_AT).support == ()


def test_without_a_support_contact_the_lost_page_gives_the_sender_address(tmp_path: Path) -> None:
    """Issue 18, item 6: the page said "Contact us" and showed no contact."""
    settings = Settings(data_dir=tmp_path, email_from="Acme Goods <shop@acme.test>")
    brand = page_brand(settings)

    page = render_page(tracking_page(row_for("lost"), brand, WRITTEN_AT), brand)

    assert 'href="mailto:shop@acme.test"' in page
    assert "Contact us" in _text(page)
    phone_only = page_brand(settings.model_copy(update={"support_phone": "+1 502 555 0100"}))
    assert "shop@acme.test" not in render_page(
        tracking_page(row_for("lost"), phone_only, WRITTEN_AT), phone_only
    )


def test_with_no_contact_at_all_the_page_never_asks_the_shopper_to_contact_us(
    tmp_path: Path,
) -> None:
    brand = page_brand(Settings(data_dir=tmp_path))
    row = row_for("weather_delay")
    for kind in ExceptionKind:
        for resolution in (None, "https://acme.test/claims"):
            shown = replace(brand, resolution_url=resolution)
            document = row.document.model_copy(update={"exception": kind})
            view = tracking_page(row.model_copy(update={"document": document}), shown, WRITTEN_AT)
            text = _text(render_page(view, shown))
            assert "contact us" not in text.lower(), (kind, resolution, text)
            assert view.problem is not None and view.problem.next_steps, kind


def test_the_page_shows_the_first_name_only_and_escapes_everything() -> None:
    row = row_for("weather_delay")
    hostile = row.model_copy(update={"first_name": '<script>alert("x")</script>'})
    document = hostile.document
    timeline = [
        entry.model_copy(update={"location": "<img src=x onerror=alert(1)>"})
        for entry in document.timeline
    ]
    hostile = hostile.model_copy(
        update={"document": document.model_copy(update={"timeline": timeline})}
    )
    brand = PageBrand(store_name='Acme "<b>"', support_url="javascript:alert(1)")
    page = render_page(tracking_page(hostile, brand, WRITTEN_AT), brand)
    assert "<script>" not in page and "<img src=x" not in page and "<b>" not in page
    assert "&lt;script&gt;" in page and "&lt;img src=x" in page
    assert "javascript:" not in page

    page = render_page(tracking_page(row, BRAND, WRITTEN_AT), BRAND)
    text = _text(page)
    assert "Hi Ada," in text and "Lovelace" not in page
    assert "ada@example.com" not in page and "5025550123" not in page and "Main St" not in page
    assert 'href="https://' not in page.split("</head>")[0]  # no external stylesheet
    assert "<script" not in page


def test_a_page_lives_tracking_page_days_after_tracking_ends() -> None:
    moving = row_for("in_transit", written_at=WRITTEN_AT)
    assert shown_until(moving, 30) is None
    assert not expired(moving, 30, WRITTEN_AT + timedelta(days=365))
    delivered = row_for("delivered", written_at=WRITTEN_AT)
    assert shown_until(delivered, 30) == WRITTEN_AT + timedelta(days=30)
    assert not expired(delivered, 30, WRITTEN_AT + timedelta(days=30))
    assert expired(delivered, 30, WRITTEN_AT + timedelta(days=30, seconds=1))
    assert expired(delivered, 1, WRITTEN_AT + timedelta(days=2))


def test_message_links_carry_a_short_ref_not_the_key() -> None:
    key = "1Z999AA10123456784/1001:in_transit:1:email"
    ref = message_ref(key)
    assert len(ref) == 8 and re.fullmatch(r"[A-Za-z0-9_-]+", ref)
    assert message_ref(key.replace("email", "sms")) != ref
    assert page_link("https://t.test/", "TOKEN", key) == f"https://t.test/t/TOKEN?m={ref}"
    assert page_link("https://t.test", "TOKEN") == "https://t.test/t/TOKEN"


# --- the link in every message ---------------------------------------------------------------


def _send(shipment: Shipment, channel: Channel = Channel.EMAIL) -> SendNotification:
    return SendNotification(
        idempotency_key=f"{tracking.shipment_key(shipment)}:in_transit:1:{channel}",
        trigger=Trigger.IN_TRANSIT,
        channel=channel,
        to="ada@example.com" if channel is Channel.EMAIL else "+15025550123",
    )


def test_a_message_links_to_the_page_only_with_a_public_url_and_a_page_key(
    tmp_path: Path,
) -> None:
    shipment = shipment_for("in_transit")
    about, send = MessageContext.of(shipment), _send(shipment)
    key = _key(_settings(tmp_path))
    token = page_token(key, row_for("in_transit").shipment_key)  # the row's token
    linked = with_page_link(about, send, PUBLIC_URL, key)
    assert linked.tracking_url == f"{PUBLIC_URL}/t/{token}?m={message_ref(send.idempotency_key)}"
    carrier = about.tracking_url
    assert carrier and "ups.com" in carrier
    assert with_page_link(about, send, None, key).tracking_url == carrier
    assert with_page_link(about, send, PUBLIC_URL, None).tracking_url == carrier
    assert with_page_link(about, send, "ftp://x", key).tracking_url == carrier
    assert page_key(Settings(data_dir=tmp_path)) is None  # no secret: no page


# --- GET /t/<token> --------------------------------------------------------------------------


async def _no_temporal() -> Client:
    raise AssertionError("the tracking page never asks Temporal")


@asynccontextmanager
async def _page_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, _no_temporal, ANY_TIME_POLICY)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://page.test") as http,
    ):
        yield http


async def test_a_message_link_opens_the_page_and_counts_as_that_messages_click(
    tmp_path: Path,
) -> None:
    """The send activity writes the row (with its token) and sends the message with the
    page's link; opening that link shows the page and records the click under the message's
    key, without Temporal."""
    settings = _settings(tmp_path)
    ledger = open_ledger(settings.resolved_ledger_url)
    shipment = shipment_for("in_transit")
    email, sms = _send(shipment), _send(shipment, Channel.SMS)
    activities = NotificationActivities(
        ledger,
        brand=Brand(store_name="Acme Goods", public_url=PUBLIC_URL),
        read_model=ReadModel(ledger, _key(settings)),
    )
    batch = SendBatch(
        about=MessageContext.of(shipment), sends=[email, sms], projection=row_for("in_transit")
    )
    try:
        await ActivityEnvironment().run(activities.send_notifications, batch)
        sent = {r.channel: r for r in await ledger.list(shipment.tracking_number)}
    finally:
        await ledger.close()
    link = re.search(rf"{re.escape(PUBLIC_URL)}/t/\S+?m=[A-Za-z0-9_-]+", sent["sms"].body)
    assert link is not None, sent["sms"].body
    email_link = link.group(0).replace(
        message_ref(sms.idempotency_key), message_ref(email.idempotency_key)
    )
    assert email_link in sent["email"].body and email_link in (sent["email"].html or "")
    assert "ups.com" not in sent["sms"].body
    path = link.group(0).removeprefix(PUBLIC_URL)
    # What `up --demo` prints at its end: the page, without a message's ref.
    shown = await demo.tracking_page_url(settings.resolved_ledger_url, shipment.tracking_number)
    assert shown == PUBLIC_URL + path.split("?")[0]
    assert await demo.tracking_page_url(settings.resolved_ledger_url, "1Z0000000000000000") is None

    started = datetime.now(UTC)
    async with _page_client(settings) as http:
        page = await http.get(path)
        again = await http.get(path)  # a reload: no second click
        plain = await http.get(path.split("?")[0])
        made_up = await http.get(path.split("?")[0] + "?m=AAAAAAAA")
    assert page.status_code == again.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    text = _text(page.text)
    assert "Hi Ada," in text and "On its way" in text
    assert "November 24" not in text  # the row's estimate is over by the time of this view
    assert plain.status_code == made_up.status_code == 200

    now = datetime.now(UTC)
    ledger = open_ledger(settings.resolved_ledger_url, read_only=True)
    try:
        visits = await ledger.page_visits()
    finally:
        await ledger.close()
    token = path.split("/")[2].split("?")[0]
    # The SMS's click once, and one view without a message: a ref of no message of this
    # shipment counts no click, and within the hour the page counts a (token, ref) once
    # (twice if the requests straddled the turn of an hour).
    hours = len({t.replace(minute=0, second=0, microsecond=0) for t in (started, now)})
    counted = Counter((v.page_token, v.message_key) for v in visits)
    assert set(counted) == {(token, sms.idempotency_key), (token, None)}
    assert all(1 <= n <= hours for n in counted.values()), counted


async def test_an_unknown_or_expired_token_is_a_plain_404(tmp_path: Path) -> None:
    settings = _settings(tmp_path, tracking_page_days=30)
    key = _key(settings)
    now = datetime.now(UTC)
    old = row_for("delivered", written_at=now - timedelta(days=31))
    recent = row_for("out_for_delivery", written_at=now - timedelta(days=400))  # still tracked
    ledger = open_ledger(settings.resolved_ledger_url)
    try:
        for row in (old, recent):
            await ledger.save_projection(row, page_token(key, row.shipment_key))
    finally:
        await ledger.close()

    async with _page_client(settings) as http:
        missing = await http.get("/t/" + "A" * 20)
        garbage = await http.get("/t/%3Cscript%3E")
        expired_page = await http.get(f"/t/{page_token(key, old.shipment_key)}")
        live = await http.get(f"/t/{page_token(key, recent.shipment_key)}")
        by_number = await http.get(f"/t/{old.tracking_number}")
    for response in (missing, garbage, expired_page, by_number):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert "not found" in response.text.lower()
        assert old.tracking_number not in response.text and "detail" not in response.text
    assert live.status_code == 200 and "Out for delivery" in live.text


async def test_the_worker_links_every_message_to_the_page_its_row_is_served_at(
    temporal_address: str, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """On the dev server with the real worker: the link in the messages and the token the read
    model stores with the row are the same, and the page shows the shipment as it stands."""
    extra = {"public_url": PUBLIC_URL, "unsubscribe_secret": SECRET, "store_name": "Acme Goods"}
    settings = api_settings(temporal_address, task_queue, tmp_path, **extra)
    number = tracking_number()
    async with api_client(settings) as http, running_worker(client, task_queue, tmp_path, **extra):
        assert (await http.post("/v1/shipments", json=shipment_body(number))).status_code == 202
        moving = event_body(number, "in_transit", location="Louisville, KY")
        assert (await http.post("/v1/events", json=moving)).status_code == 202
        records = await eventually(
            lambda: outbox(tmp_path, number),
            lambda rows: {("in_transit", "email"), ("in_transit", "sms")} <= set(sent(rows)),
            what="the in-transit email and SMS",
        )
        for record in (r for r in records if r.kind == "message"):
            assert f"{PUBLIC_URL}/t/" in record.body, record.body
            assert "example.com/track" not in record.body  # the platform's link, replaced
        sms = next(r for r in records if r.trigger == "in_transit" and r.channel == "sms")
        link = re.search(rf"{re.escape(PUBLIC_URL)}(/t/\S+)", sms.body)
        assert link is not None
        page = await eventually(
            lambda: http.get(link.group(1)),
            lambda response: response.status_code == 200 and "On its way" in response.text,
            what="the page of the in-transit row",
        )
    text = _text(page.text)
    assert "Hi Ada," in text and "Louisville, KY" in text and "ada@example.com" not in page.text
    ledger = open_ledger(settings.resolved_ledger_url, read_only=True)
    try:
        clicks = [v.message_key for v in await ledger.page_visits() if v.message_key]
    finally:
        await ledger.close()
    assert clicks and set(clicks) == {sms.idempotency_key}


def test_a_carrier_outside_the_table_is_named_as_the_platform_wrote_it() -> None:
    """Carriers are codes (`postnl`); the page names the courier by its label (`PostNL`)."""
    shipment = make_shipment(
        tracking_number="3SABCD1234567", carrier="PostNL", timezone=ZONE, order_value="300"
    )
    state = tracking.on_start(ShipmentState(), at(0))
    event = make_event(CarrierStatus.IN_TRANSIT, at(2), tracking_number=shipment.tracking_number)
    state = tracking.on_event(state, event, shipment, ANY_TIME_POLICY, at(2)).state
    row = project(state, shipment, ANY_TIME_POLICY, WRITTEN_AT, 1)
    assert (row.document.carrier, row.document.carrier_label) == ("postnl", "PostNL")
    view = tracking_page(row, BRAND, WRITTEN_AT)
    assert view.carrier == "PostNL"
    assert "PostNL" in view.summary and "Postnl" not in _text(render_page(view, BRAND))
