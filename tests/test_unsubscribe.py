"""The unsubscribe link of a customer email: GET asks, POST (button or one-click) suppresses."""

from __future__ import annotations

import base64
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from activities.notify import outgoing
from starters.api import create_app
from storage import LedgerRecord, open_ledger
from tests.api_support import api_client, api_settings
from tests.factories import ANY_TIME_POLICY, make_shipment
from trackflow.effects import SendNotification
from trackflow.messages import Brand, MessageContext, render, unsubscribe_url
from trackflow.models import Channel, Trigger
from trackflow.settings import Settings
from workers.runtime import connect

SECRET = "test-unsubscribe-secret"
KEY = "1Z999AA10123456784/1001:in_transit:1:email"
EMAIL = "ada@example.com"


async def _sent_email(data_dir: Path, key: str = KEY, sent_at: datetime | None = None) -> None:
    ledger = open_ledger(str(data_dir / "ledger.sqlite3"))
    try:
        await ledger.record_once(
            LedgerRecord(
                idempotency_key=key,
                tracking_number=key.split("/", 1)[0],
                order_id="1001",
                trigger="in_transit",
                channel="email",
                to=EMAIL,
                subject="On its way",
                body="…",
                transport="outbox",
                sent_at=sent_at or datetime.now(UTC),
            )
        )
    finally:
        await ledger.close()


async def _suppressed(data_dir: Path) -> str | None:
    ledger = open_ledger(str(data_dir / "ledger.sqlite3"))
    try:
        return await ledger.suppressed("Acme", "email", EMAIL)
    finally:
        await ledger.close()


def _path(key: str = KEY) -> str:
    brand = Brand(store_name="Acme", public_url="https://shop.example", unsubscribe_secret=SECRET)
    url = unsubscribe_url(brand, key)
    assert url is not None
    return url.removeprefix("https://shop.example")


async def test_get_asks_and_post_unsubscribes_the_shipments_email_address(
    temporal_address: str, task_queue: str, tmp_path: Path
) -> None:
    await _sent_email(tmp_path)
    settings = api_settings(
        temporal_address, task_queue, tmp_path, unsubscribe_secret=SECRET, store_name="Acme"
    )
    async with api_client(settings) as api:
        asked = await api.get(_path())
        assert asked.status_code == 200
        assert "a••@example.com" in asked.text and '<form method="post">' in asked.text
        assert EMAIL not in asked.text
        assert await _suppressed(tmp_path) is None  # a link scanner's GET changes nothing

        one_click = await api.post(
            _path(), content="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        assert one_click.status_code == 200
        assert "You are unsubscribed" in one_click.text
        assert await _suppressed(tmp_path) == "unsubscribed"


async def test_a_token_we_did_not_sign_or_with_no_email_behind_it_is_a_plain_404(
    temporal_address: str, task_queue: str, tmp_path: Path
) -> None:
    await _sent_email(tmp_path)
    settings = api_settings(temporal_address, task_queue, tmp_path, unsubscribe_secret=SECRET)
    forged = _path().rstrip("A") + "B"
    unknown = _path("1Z999AA10123456784/9999:in_transit:1:email")
    async with api_client(settings) as api:
        for path in (forged, unknown, "/u/not-a-token"):
            answer = await api.post(path)
            assert (answer.status_code, answer.json()) == (404, {"detail": "Not Found"}), path
    assert await _suppressed(tmp_path) is None


def test_the_unsubscribe_headers_reach_the_transport() -> None:
    """The SendGrid transport copies OutgoingMessage.headers into the mail: the send activity
    must hand it the rendered List-Unsubscribe headers."""
    shipment = make_shipment()
    send = SendNotification(
        idempotency_key=KEY, trigger=Trigger.IN_TRANSIT, channel=Channel.EMAIL, to=EMAIL
    )
    brand = Brand(store_name="Acme", public_url="https://shop.example", unsubscribe_secret=SECRET)
    about = MessageContext.of(shipment)
    message = outgoing(about, send, render(about, send, brand))
    assert message.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"<https://shop.example{_path()}>" in message.headers["List-Unsubscribe"]


async def test_the_ledger_the_routes_open_is_closed_when_the_service_stops(
    temporal_address: str, task_queue: str, tmp_path: Path
) -> None:
    settings = api_settings(temporal_address, task_queue, tmp_path, unsubscribe_secret=SECRET)
    app = create_app(settings, lambda: connect(settings), ANY_TIME_POLICY)
    closed: list[bool] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://trackflow") as http:
            assert (await http.post("/u/not-a-token")).status_code == 404  # opens the ledger
        ledger = app.state.ledger
        real_close = ledger.close

        async def close() -> None:
            closed.append(True)
            await real_close()

        ledger.close = close
    assert closed == [True]


# --- issue 18, item 12: an opaque token, a page nobody caches ---------------------------------


async def _no_temporal() -> Client:
    raise AssertionError("the unsubscribe routes never ask Temporal")


@asynccontextmanager
async def _client(tmp_path: Path, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        data_dir=tmp_path, unsubscribe_secret=SECRET, store_name="Acme", **overrides
    )
    app = create_app(settings, _no_temporal, ANY_TIME_POLICY)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://shop.example") as http,
    ):
        yield http


async def test_the_link_names_neither_the_parcel_nor_the_order(tmp_path: Path) -> None:
    path = _path()
    readings = []
    for part in path.removeprefix("/u/").split("."):
        readings.append(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    assert not any(b"1Z999AA10123456784" in r or b"1001" in r for r in readings), readings

    await _sent_email(tmp_path)
    async with _client(tmp_path) as api:
        assert (await api.get(path)).status_code == 200
        assert (await api.post(path)).status_code == 200
    assert await _suppressed(tmp_path) == "unsubscribed"


async def test_the_page_is_never_cached_and_has_the_tracking_pages_security_headers(
    tmp_path: Path,
) -> None:
    await _sent_email(tmp_path)
    async with _client(tmp_path) as api:
        asked, done = await api.get(_path()), await api.post(_path())
        refused = await api.get("/u/not-a-token")
    assert (asked.status_code, done.status_code, refused.status_code) == (200, 200, 404)
    for answer in (asked, done, refused):
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-robots-tag"] == "noindex"
        assert answer.headers["x-content-type-options"] == "nosniff"
        policy = answer.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert "form-action 'self'" in policy  # the page's one button posts back to it


def _legacy_path(subject: str = "1Z999AA10123456784/1001") -> str:
    """A link of an email sent before the opaque token: `<base64url subject>.<mac>`."""
    mac = hmac.new(SECRET.encode(), b"trackflow-unsubscribe\x00" + subject.encode(), "sha256")

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return f"/u/{b64(subject.encode())}.{b64(mac.digest()[:16])}"


async def test_an_old_link_unsubscribes_while_its_email_is_within_the_retention_days(
    tmp_path: Path,
) -> None:
    """Old links are never issued again, but the emails already delivered carry them."""
    await _sent_email(tmp_path)
    async with _client(tmp_path, retention_days=30) as api:
        asked = await api.get(_legacy_path())
        done = await api.post(_legacy_path())
    assert (asked.status_code, done.status_code) == (200, 200)
    assert "a••@example.com" in asked.text and asked.headers["cache-control"] == "no-store"
    assert await _suppressed(tmp_path) == "unsubscribed"


async def test_an_old_link_whose_email_is_older_than_the_retention_days_is_a_404(
    tmp_path: Path,
) -> None:
    await _sent_email(tmp_path, sent_at=datetime.now(UTC) - timedelta(days=31))
    async with _client(tmp_path, retention_days=30) as api:
        old = await api.post(_legacy_path())
        new = await api.get(_path())
    assert old.status_code == 404
    assert new.status_code == 200  # a current link has no such limit
    assert await _suppressed(tmp_path) is None
