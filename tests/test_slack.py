"""Slack alerts against the Slack double over HTTP: one post per alert key, Retry-After
honoured on 429, a permanent refusal recorded and not retried."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.alerts import AlertActivities
from activities.ledger import Ledger, open_ledger
from activities.slack import SLACK, SLACK_REFUSED, SlackAlerts
from starters.simulators.providers.server import serving
from starters.simulators.slack import SlackDouble, create_slack_app
from trackflow.effects import AlertKind, RaiseAlert

T0 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    opened = open_ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def slack() -> Iterator[tuple[SlackDouble, str]]:
    double = SlackDouble()
    with serving(create_slack_app(double)) as url:
        yield double, url


def lost_alert(key: str = "1Z999:alert:lost:1") -> RaiseAlert:
    return RaiseAlert(
        idempotency_key=key,
        alert=AlertKind.LOST,
        tracking_number="1Z999",
        order_id="#1001",
        summary="No carrier scan for 7 days after in transit.",
        raised_at=T0,
    )


async def test_webhook_posts_a_lost_alert_once(
    ledger: Ledger, slack: tuple[SlackDouble, str]
) -> None:
    double, url = slack
    transport = SlackAlerts(
        ledger,
        webhook_url=f"{url}/services/T000/B000/secret",
        temporal_ui_url="http://localhost:8233",
    )
    activities = AlertActivities(ledger, transport)
    env = ActivityEnvironment()
    first = await env.run(activities.raise_alert, lost_alert())
    again = await env.run(activities.raise_alert, lost_alert())
    assert (first.transport, first.already_recorded) == (SLACK, False)
    assert again.already_recorded
    assert len(double.messages) == 1
    blocks = double.messages[0]["blocks"]
    texts = str(blocks)
    assert "#1001" in texts and "1Z999" in texts
    assert "http://localhost:8233/namespaces/default/workflows/shipment-1Z999" in texts


async def test_chat_post_message_honours_retry_after(
    ledger: Ledger, slack: tuple[SlackDouble, str]
) -> None:
    double, url = slack
    double.script.append({"status": 429, "retry_after": 7})
    transport = SlackAlerts(
        ledger, bot_token="xoxb-test", channel="C0ALERTS", base_url=f"{url}/api/"
    )
    activities = AlertActivities(ledger, transport)
    env = ActivityEnvironment()
    with pytest.raises(ApplicationError) as raised:
        await env.run(activities.raise_alert, lost_alert())
    assert not raised.value.non_retryable
    assert raised.value.next_retry_delay == timedelta(seconds=7)
    assert await ledger.get("1Z999:alert:lost:1") is None
    receipt = await env.run(activities.raise_alert, lost_alert())
    assert receipt.transport == SLACK
    assert [m["channel"] for m in double.messages] == ["C0ALERTS"]
    record = await ledger.get("1Z999:alert:lost:1")
    assert record is not None and record.provider_message_id == double.messages[0]["ts"]


async def test_unknown_channel_is_recorded_as_refused(
    ledger: Ledger, slack: tuple[SlackDouble, str]
) -> None:
    double, url = slack
    transport = SlackAlerts(ledger, bot_token="xoxb-test", channel="C0NOPE", base_url=f"{url}/api/")
    activities = AlertActivities(ledger, transport)
    env = ActivityEnvironment()
    receipt = await env.run(activities.raise_alert, lost_alert())
    again = await env.run(activities.raise_alert, lost_alert())
    assert receipt.transport == SLACK_REFUSED and again.already_recorded
    record = await ledger.get("1Z999:alert:lost:1")
    assert record is not None and "channel_not_found" in record.body
    assert double.messages == [] and double.calls == 1
