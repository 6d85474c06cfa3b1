"""Zendesk tagging against the Zendesk double over HTTP (mounted under a path prefix): the
requester's unsolved tickets get `additional_tags` and one private comment per tag key
through `update_many`, solved and closed tickets are left alone, 429 Retry-After is honoured,
a refusal is recorded, a retry after a crash does not comment twice; and with Gorgias also
configured, both helpdesks are tagged under one ledger row."""

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
    LedgerHelpdesk,
    marker_for,
)
from activities.helpdesks import (
    GorgiasHelpdesk,
    Helpdesks,
    ZendeskHelpdesk,
    annotator_for,
    helpdesk_for,
)
from starters.simulators.gorgias import GorgiasDouble, create_gorgias_app
from starters.simulators.providers.server import serving
from starters.simulators.zendesk import ZendeskDouble, create_zendesk_app
from storage import Ledger, open_ledger
from tests.harness import free_port
from trackflow.effects import AUTO_DELAY_NOTIFIED, LOST_PACKAGE_TAG, TagHelpdesk
from trackflow.settings import Settings

AGENT = "agent@shop.example"
TOKEN = "zendesk-token"
KEY = "1Z999:lost:helpdesk:lost_package"


@dataclass
class Zendesk:
    double: ZendeskDouble
    url: str  # path prefix included

    def seed(self, **ticket: Any) -> dict[str, Any]:
        answer = httpx.post(f"{self.url}/_double/tickets", json=ticket)
        answer.raise_for_status()
        return dict(answer.json())

    def tickets(self) -> dict[int, dict[str, Any]]:
        return {t["id"]: t for t in httpx.get(f"{self.url}/_double/tickets").json()}

    def updates(self) -> int:
        return sum(1 for c in self.double.calls if c["method"] == "PUT")

    def helpdesk(self, ledger: Ledger | None, token: str = TOKEN) -> ZendeskHelpdesk:
        return ZendeskHelpdesk(ledger, base_url=self.url, email=AGENT, api_token=token)


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    opened = open_ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def zendesk() -> Iterator[Zendesk]:
    double = ZendeskDouble(api_token=TOKEN)
    root = FastAPI()
    root.mount("/zendesk", create_zendesk_app(double))
    with serving(root, port=free_port()) as url:
        yield Zendesk(double, f"{url}/zendesk")


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


def private(ticket: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in ticket["comments"] if not c["public"]]


async def test_unsolved_tickets_get_the_tags_and_one_private_comment(
    ledger: Ledger, zendesk: Zendesk
) -> None:
    open_one = zendesk.seed(requester_email="ada@example.com", tags=["vip"])
    pending = zendesk.seed(requester_email="ada@example.com", status="pending")
    solved = zendesk.seed(requester_email="ada@example.com", status="solved")
    closed = zendesk.seed(requester_email="ada@example.com", status="closed")
    other = zendesk.seed(requester_email="bob@example.com")
    activities = HelpdeskActivities(ledger, zendesk.helpdesk(ledger))
    env = ActivityEnvironment()

    receipt = await env.run(activities.tag_helpdesk, lost_tag())
    again = await env.run(activities.tag_helpdesk, lost_tag())

    assert (receipt.transport, receipt.already_recorded) == ("zendesk", False)
    assert again.already_recorded
    tickets = zendesk.tickets()
    agent = next(u for u in zendesk.double.users if u["email"] == AGENT)
    for ticket_id, before in ((open_one["id"], ["vip"]), (pending["id"], [])):
        assert tickets[ticket_id]["tags"] == [*before, AUTO_DELAY_NOTIFIED, LOST_PACKAGE_TAG]
        [comment] = private(tickets[ticket_id])
        assert comment["author_id"] == agent["id"]
        assert "no scan for 7 days" in comment["body"]
        assert marker_for(KEY) in comment["body"].splitlines()
    for untouched in (solved, closed, other):
        assert tickets[untouched["id"]]["tags"] == []
        assert private(tickets[untouched["id"]]) == []
    assert zendesk.updates() == 1  # one update_many for both tickets, none on the repeat
    record = await ledger.get(KEY)
    assert record is not None and record.transport == "zendesk"
    assert set((record.provider_message_id or "").split(",")) == {
        str(open_one["id"]),
        str(pending["id"]),
    }
    [job_id] = zendesk.double.jobs
    assert f"job {job_id}" in record.body


async def test_a_429_is_retried_after_retry_after(ledger: Ledger, zendesk: Zendesk) -> None:
    ticket = zendesk.seed(requester_email="ada@example.com")
    zendesk.double.script.append({"status": 429, "retry_after": 11, "method": "PUT"})
    activities = HelpdeskActivities(ledger, zendesk.helpdesk(ledger))
    env = ActivityEnvironment()

    with pytest.raises(ApplicationError) as raised:
        await env.run(activities.tag_helpdesk, lost_tag())

    assert raised.value.type == HELPDESK_UNAVAILABLE and not raised.value.non_retryable
    assert raised.value.next_retry_delay == timedelta(seconds=11)
    assert await ledger.get(KEY) is None
    assert private(zendesk.tickets()[ticket["id"]]) == []
    receipt = await env.run(activities.tag_helpdesk, lost_tag())
    assert receipt.transport == "zendesk"
    after = zendesk.tickets()[ticket["id"]]
    assert after["tags"] == [AUTO_DELAY_NOTIFIED, LOST_PACKAGE_TAG]
    assert len(private(after)) == 1


async def test_a_retry_after_a_crash_before_the_ledger_write_does_not_comment_twice(
    ledger: Ledger, zendesk: Zendesk
) -> None:
    ticket = zendesk.seed(requester_email="ada@example.com")
    await zendesk.helpdesk(None).apply(lost_tag())  # reached Zendesk, died before the ledger

    receipt = await ActivityEnvironment().run(
        HelpdeskActivities(ledger, zendesk.helpdesk(ledger)).tag_helpdesk, lost_tag()
    )

    assert receipt.transport == "zendesk"
    assert len(private(zendesk.tickets()[ticket["id"]])) == 1
    assert zendesk.updates() == 1
    record = await ledger.get(KEY)
    assert record is not None and record.provider_message_id == str(ticket["id"])
    assert f"note already on {ticket['id']}" in record.body


async def test_no_unsolved_ticket_is_recorded_not_retried(ledger: Ledger, zendesk: Zendesk) -> None:
    solved = zendesk.seed(requester_email="ada@example.com", status="solved", tags=["refund"])
    activities = HelpdeskActivities(ledger, zendesk.helpdesk(ledger))

    receipt = await ActivityEnvironment().run(activities.tag_helpdesk, lost_tag())

    assert receipt.transport == "zendesk"
    record = await ledger.get(KEY)
    assert record is not None and record.provider_message_id is None
    assert "[zendesk: no open ticket]" in record.body
    assert zendesk.tickets()[solved["id"]]["tags"] == ["refund"]
    assert zendesk.updates() == 0


async def test_bad_credentials_are_recorded_as_refused(ledger: Ledger, zendesk: Zendesk) -> None:
    zendesk.seed(requester_email="ada@example.com")
    activities = HelpdeskActivities(ledger, zendesk.helpdesk(ledger, token="revoked"))
    env = ActivityEnvironment()

    receipt = await env.run(activities.tag_helpdesk, lost_tag())
    again = await env.run(activities.tag_helpdesk, lost_tag())

    assert receipt.transport == "zendesk-refused" and again.already_recorded
    record = await ledger.get(KEY)
    assert record is not None and "HTTP 401" in record.body
    assert "Couldn't authenticate you" in record.body
    assert len(zendesk.double.calls) == 1


async def test_annotate_ticket_comments_once_and_refuses_a_closed_ticket(
    zendesk: Zendesk,
) -> None:
    ticket = zendesk.seed(requester_email="ada@example.com")
    closed = zendesk.seed(requester_email="ada@example.com", status="closed")
    annotator = zendesk.helpdesk(None)
    note = "Live status: in transit.\ntrackflow:inbound:zendesk:4242"

    await annotator.annotate_ticket(str(ticket["id"]), ["wismo"], note)
    await annotator.annotate_ticket(str(ticket["id"]), ["wismo", "already_notified"], note)

    after = zendesk.tickets()[ticket["id"]]
    assert after["tags"] == ["wismo", "already_notified"]
    [comment] = private(after)
    assert comment["body"] == note  # its own marker line: nothing appended
    with pytest.raises(ApplicationError) as raised:
        await annotator.annotate_ticket(str(closed["id"]), ["wismo"], note)
    assert raised.value.type == HELPDESK_REFUSED and raised.value.non_retryable
    assert "422" in str(raised.value)


async def test_both_helpdesks_are_tagged_under_one_ledger_row(
    ledger: Ledger, zendesk: Zendesk
) -> None:
    gorgias_double = GorgiasDouble()
    with serving(create_gorgias_app(gorgias_double), port=free_port()) as gorgias_url:
        httpx.post(
            f"{gorgias_url}/_double/tickets", json={"customer_email": "ada@example.com"}
        ).raise_for_status()
        zendesk_ticket = zendesk.seed(requester_email="ada@example.com")
        settings = Settings(
            gorgias_base_url=gorgias_url,
            gorgias_username="api@shop.example",
            gorgias_api_key="gorgias-key",
            zendesk_base_url=zendesk.url,
            zendesk_email=AGENT,
            zendesk_api_token=TOKEN,
        )
        helpdesk = helpdesk_for(settings, ledger)
        assert isinstance(helpdesk, Helpdesks) and helpdesk.name == "gorgias+zendesk"

        receipt = await ActivityEnvironment().run(
            HelpdeskActivities(ledger, helpdesk).tag_helpdesk, lost_tag()
        )

        [gorgias_ticket] = gorgias_double.tickets
    assert receipt.transport == "gorgias+zendesk"
    assert [t["name"] for t in gorgias_ticket["tags"]] == [AUTO_DELAY_NOTIFIED, LOST_PACKAGE_TAG]
    assert [m["channel"] for m in gorgias_ticket["messages"]] == ["email", "internal-note"]
    assert len(private(zendesk.tickets()[zendesk_ticket["id"]])) == 1
    record = await ledger.get(KEY)
    assert record is not None
    assert record.provider_message_id == (
        f"gorgias:{gorgias_ticket['id']};zendesk:{zendesk_ticket['id']}"
    )


async def test_the_settings_pick_the_helpdesk(ledger: Ledger) -> None:
    gorgias = {
        "gorgias_base_url": "https://shop.gorgias.com",
        "gorgias_username": "api@shop.example",
        "gorgias_api_key": "k",
    }
    zendesk = {
        "zendesk_base_url": "https://shop.zendesk.com",
        "zendesk_email": AGENT,
        "zendesk_api_token": "t",
    }
    assert isinstance(helpdesk_for(Settings(), ledger), LedgerHelpdesk)
    assert isinstance(helpdesk_for(Settings(**gorgias), ledger), GorgiasHelpdesk)
    assert isinstance(helpdesk_for(Settings(**zendesk), ledger), ZendeskHelpdesk)
    assert isinstance(helpdesk_for(Settings(**gorgias, **zendesk), ledger), Helpdesks)
    assert isinstance(annotator_for(Settings(**gorgias), "gorgias"), GorgiasHelpdesk)
    assert annotator_for(Settings(**gorgias), "zendesk") is None
    assert isinstance(annotator_for(Settings(**zendesk), "zendesk"), ZendeskHelpdesk)
    assert annotator_for(Settings(**zendesk), "freshdesk") is None
