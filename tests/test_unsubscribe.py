"""The unsubscribe link of a customer email: GET asks, POST (button or one-click) suppresses."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx

from activities.ledger import LedgerRecord, open_ledger
from activities.notify import outgoing
from starters.api import create_app
from tests.api_support import api_client, api_settings
from tests.factories import ANY_TIME_POLICY, make_shipment
from trackflow.effects import SendNotification
from trackflow.messages import Brand, MessageContext, render, unsubscribe_url
from trackflow.models import Channel, Trigger
from workers.runtime import connect

SECRET = "test-unsubscribe-secret"
KEY = "1Z999AA10123456784/1001:in_transit:1:email"
EMAIL = "ada@example.com"


async def _sent_email(data_dir: Path, key: str = KEY) -> None:
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
                sent_at=datetime.now(UTC),
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
