"""Gorgias tagging against the Gorgias double over HTTP (mounted under a path prefix, as
`trackflow simulate providers` does): the customer's open tickets get the tags and one
internal note per tag key, closed tickets are left alone, 429 Retry-After is honoured, a
refusal is recorded and not retried, and a retry after a crash does not note twice."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.helpdesk import (
    HELPDESK_REFUSED,
    HELPDESK_UNAVAILABLE,
    HelpdeskActivities,
    marker_for,
)
from activities.helpdesks import GorgiasHelpdesk
from starters.simulators.gorgias import GorgiasDouble, create_gorgias_app
from starters.simulators.providers.server import serving
from storage import Ledger, open_ledger
from tests.harness import free_port
from trackflow.effects import AUTO_DELAY_NOTIFIED, LOST_PACKAGE_TAG, TagHelpdesk

API_USER = "api@shop.example"
API_KEY = "gorgias-key"
KEY = "1Z999:lost:helpdesk:lost_package"


@dataclass
class Gorgias:
    double: GorgiasDouble
    url: str  # the double's base URL, path prefix included

    def seed(self, **ticket: Any) -> dict[str, Any]:
        answer = httpx.post(f"{self.url}/_double/tickets", json=ticket)
        answer.raise_for_status()
        return dict(answer.json())

    def tickets(self) -> dict[int, dict[str, Any]]:
        return {t["id"]: t for t in httpx.get(f"{self.url}/_double/tickets").json()}

    def posts(self, suffix: str) -> int:
        return sum(
            1 for c in self.double.calls if c["method"] == "POST" and c["path"].endswith(suffix)
        )

    def helpdesk(self, ledger: Ledger | None, api_key: str = API_KEY) -> GorgiasHelpdesk:
        return GorgiasHelpdesk(ledger, base_url=self.url, username=API_USER, api_key=api_key)


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    opened = open_ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def gorgias() -> Iterator[Gorgias]:
    double = GorgiasDouble(api_key=API_KEY)
    root = FastAPI()
    root.mount("/gorgias", create_gorgias_app(double))
    with serving(root, port=free_port()) as url:
        yield Gorgias(double, f"{url}/gorgias")


def lost_tag(email: str | None = "ada@example.com", key: str = KEY) -> TagHelpdesk:
    return TagHelpdesk(
        idempotency_key=key,
        tag=AUTO_DELAY_NOTIFIED,
        tags=[AUTO_DELAY_NOTIFIED, LOST_PACKAGE_TAG],
        customer_email=email,
        customer_phone=None,
        tracking_number="1Z999",
        order_id="#1001",
        note="Sent: lost-parcel email, 20 Nov 14:00 UTC.\nLive status: no scan for 7 days.",
    )


def notes(ticket: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in ticket["messages"] if m["channel"] == "internal-note"]


async def test_open_tickets_get_the_tags_and_one_internal_note(
    ledger: Ledger, gorgias: Gorgias
) -> None:
    first = gorgias.seed(customer_email="ada@example.com", tags=["vip"])
    second = gorgias.seed(customer_email="ada@example.com", subject="Order #1001?")
    closed = gorgias.seed(customer_email="ada@example.com", status="closed")
    other = gorgias.seed(customer_email="bob@example.com")
    activities = HelpdeskActivities(ledger, gorgias.helpdesk(ledger))
    env = ActivityEnvironment()

    receipt = await env.run(activities.tag_helpdesk, lost_tag())
    again = await env.run(activities.tag_helpdesk, lost_tag())

    assert (receipt.transport, receipt.already_recorded) == ("gorgias", False)
    assert again.already_recorded
    tickets = gorgias.tickets()
    for ticket_id, before in ((first["id"], ["vip"]), (second["id"], [])):
        assert tickets[ticket_id]["tags"] == [*before, AUTO_DELAY_NOTIFIED, LOST_PACKAGE_TAG]
        [note] = notes(tickets[ticket_id])
        assert note["from_agent"] is True and note["public"] is False
        assert note["via"] == "internal-note"
        assert note["sender"]["email"] == API_USER
        assert "no scan for 7 days" in note["body_text"]
        assert marker_for(KEY) in note["body_text"].splitlines()
        assert "Live status" in note["body_html"]
    for untouched in (closed, other):
        assert tickets[untouched["id"]]["tags"] == []
        assert notes(tickets[untouched["id"]]) == []
    assert gorgias.posts("/messages") == 2  # one note per open ticket, none on the repeat
    record = await ledger.get(KEY)
    assert record is not None and record.kind == "helpdesk"
    assert record.transport == "gorgias"
    assert set((record.provider_message_id or "").split(",")) == {
        str(first["id"]),
        str(second["id"]),
    }
    assert record.subject == f"tag {AUTO_DELAY_NOTIFIED}, {LOST_PACKAGE_TAG}"


async def test_a_429_is_retried_after_retry_after_and_the_note_is_posted_once(
    ledger: Ledger, gorgias: Gorgias
) -> None:
    ticket = gorgias.seed(customer_email="ada@example.com")
    # the tags went on, then Gorgias rate-limited the note
    gorgias.double.script.append(
        {"status": 429, "retry_after": 7, "path": "/messages", "method": "POST"}
    )
    activities = HelpdeskActivities(ledger, gorgias.helpdesk(ledger))
    env = ActivityEnvironment()

    with pytest.raises(ApplicationError) as raised:
        await env.run(activities.tag_helpdesk, lost_tag())

    assert raised.value.type == HELPDESK_UNAVAILABLE
    assert not raised.value.non_retryable
    assert raised.value.next_retry_delay == timedelta(seconds=7)
    assert await ledger.get(KEY) is None
    receipt = await env.run(activities.tag_helpdesk, lost_tag())
    assert receipt.transport == "gorgias"
    after = gorgias.tickets()[ticket["id"]]
    assert after["tags"] == [AUTO_DELAY_NOTIFIED, LOST_PACKAGE_TAG]
    assert len(notes(after)) == 1


async def test_a_5xx_and_a_helpdesk_that_is_down_are_retryable(
    ledger: Ledger, gorgias: Gorgias
) -> None:
    gorgias.seed(customer_email="ada@example.com")
    gorgias.double.script.append({"status": 502})
    env = ActivityEnvironment()
    activities = HelpdeskActivities(ledger, gorgias.helpdesk(ledger))
    with pytest.raises(ApplicationError) as raised:
        await env.run(activities.tag_helpdesk, lost_tag())
    assert raised.value.type == HELPDESK_UNAVAILABLE and not raised.value.non_retryable
    assert raised.value.next_retry_delay is None

    nobody = GorgiasHelpdesk(
        ledger, base_url=f"http://127.0.0.1:{free_port()}", username=API_USER, api_key=API_KEY
    )
    with pytest.raises(ApplicationError) as refused_connection:
        await env.run(HelpdeskActivities(ledger, nobody).tag_helpdesk, lost_tag())
    assert refused_connection.value.type == HELPDESK_UNAVAILABLE
    assert not refused_connection.value.non_retryable
    assert await ledger.get(KEY) is None


async def test_a_retry_after_a_crash_before_the_ledger_write_does_not_note_twice(
    ledger: Ledger, gorgias: Gorgias
) -> None:
    ticket = gorgias.seed(customer_email="ada@example.com")
    # The first attempt reached Gorgias and died before writing the ledger.
    await gorgias.helpdesk(None).apply(lost_tag())
    assert await ledger.get(KEY) is None

    receipt = await ActivityEnvironment().run(
        HelpdeskActivities(ledger, gorgias.helpdesk(ledger)).tag_helpdesk, lost_tag()
    )

    assert receipt.transport == "gorgias"
    after = gorgias.tickets()[ticket["id"]]
    assert len(notes(after)) == 1
    assert after["tags"] == [AUTO_DELAY_NOTIFIED, LOST_PACKAGE_TAG]
    record = await ledger.get(KEY)
    assert record is not None and f"note already on {ticket['id']}" in record.body
    # another key is another note on the same ticket
    await ActivityEnvironment().run(
        HelpdeskActivities(ledger, gorgias.helpdesk(ledger)).tag_helpdesk,
        lost_tag(key=f"{KEY}:2"),
    )
    assert len(notes(gorgias.tickets()[ticket["id"]])) == 2


@pytest.mark.parametrize(
    ("email", "outcome"),
    [
        ("ada@example.com", "no open ticket"),
        ("nobody@example.com", "no customer with this email"),
        (None, "no customer email"),
    ],
)
async def test_no_open_ticket_is_recorded_not_retried(
    ledger: Ledger, gorgias: Gorgias, email: str | None, outcome: str
) -> None:
    closed = gorgias.seed(customer_email="ada@example.com", status="closed", tags=["refund"])
    activities = HelpdeskActivities(ledger, gorgias.helpdesk(ledger))

    receipt = await ActivityEnvironment().run(activities.tag_helpdesk, lost_tag(email=email))

    assert receipt.transport == "gorgias"
    record = await ledger.get(KEY)
    assert record is not None
    assert record.provider_message_id is None
    assert f"[gorgias: {outcome}]" in record.body
    after = gorgias.tickets()[closed["id"]]
    assert after["tags"] == ["refund"] and notes(after) == []
    assert gorgias.posts("/tags") == gorgias.posts("/messages") == 0


async def test_bad_credentials_are_recorded_as_refused(ledger: Ledger, gorgias: Gorgias) -> None:
    ticket = gorgias.seed(customer_email="ada@example.com")
    activities = HelpdeskActivities(ledger, gorgias.helpdesk(ledger, api_key="revoked"))
    env = ActivityEnvironment()

    receipt = await env.run(activities.tag_helpdesk, lost_tag())
    again = await env.run(activities.tag_helpdesk, lost_tag())

    assert receipt.transport == "gorgias-refused" and again.already_recorded
    record = await ledger.get(KEY)
    assert record is not None and "HTTP 401" in record.body and "Unauthorized" in record.body
    assert len(gorgias.double.calls) == 1  # refused once, not asked again
    assert gorgias.tickets()[ticket["id"]]["tags"] == []


async def test_annotate_ticket_tags_and_notes_once_and_refuses_an_unknown_ticket(
    gorgias: Gorgias,
) -> None:
    ticket = gorgias.seed(customer_email="ada@example.com", tags=["wismo"])
    annotator = gorgias.helpdesk(None)
    note = "Live status: in transit, next scan expected tomorrow."

    await annotator.annotate_ticket(str(ticket["id"]), ["wismo", "already_notified"], note)
    await annotator.annotate_ticket(str(ticket["id"]), ["wismo", "already_notified"], note)

    after = gorgias.tickets()[ticket["id"]]
    assert after["tags"] == ["wismo", "already_notified"]
    [posted] = notes(after)
    assert posted["body_text"].startswith(note)
    with pytest.raises(ApplicationError) as raised:
        await annotator.annotate_ticket("999999", ["wismo"], note)
    assert raised.value.type == HELPDESK_REFUSED and raised.value.non_retryable
