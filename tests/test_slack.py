"""Slack alerts against the Slack double over HTTP: one post per alert key, Retry-After
honoured on 429, a permanent refusal recorded and not retried."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.alerts import AlertActivities
from activities.slack import (
    SLACK,
    SLACK_REFUSED,
    Posted,
    SlackAlerts,
    SlackPoster,
    alert_blocks,
    alert_text,
)
from starters.simulators.providers.server import serving
from starters.simulators.slack import SlackDouble, blocks_problem, create_slack_app
from storage import Ledger, open_ledger
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


# --- what an alert says ----------------------------------------------------------------------

UI = "http://localhost:8233"


def rich_alert(kind: AlertKind = AlertKind.LOST, **fields: object) -> RaiseAlert:
    values: dict[str, object] = {
        "idempotency_key": f"1Z999:alert:{kind.value}:1",
        "alert": kind,
        "tracking_number": "1Z999",
        "order_id": "#1001",
        "summary": "No carrier scan for 10 days after in transit.",
        "raised_at": T0,
        "carrier": "ups",
        "first_name": "Ada",
        "already_sent": [
            "in_transit email 2026-11-10 09:02 UTC",
            "lost email 2026-11-20 14:00 UTC",
        ],
        "carrier_url": "https://www.ups.com/track?tracknum=1Z999",
        "workflow_id": "shipment-1Z999",
        **fields,
    }
    return RaiseAlert.model_validate(values)


def _buttons(blocks: list[dict[str, Any]]) -> dict[str, str]:
    return {
        element["text"]["text"]: element["url"]
        for block in blocks
        if block["type"] == "actions"
        for element in block["elements"]
    }


def test_a_lost_alert_has_everything_an_agent_needs_and_no_more() -> None:
    blocks = alert_blocks(rich_alert(), temporal_ui_url=UI, namespace="shop")
    text = str(blocks)
    assert blocks[0]["text"]["text"] == ":rotating_light: Package lost"
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert fields == [
        "*Order*\n#1001",
        "*Tracking number*\n`1Z999`",
        "*Carrier*\nUPS",
        "*Customer*\nAda",
    ]
    assert blocks[3]["text"]["text"] == (
        "*Already sent to the customer*\n"
        "• in_transit email 2026-11-10 09:02 UTC\n"
        "• lost email 2026-11-20 14:00 UTC"
    )
    assert "Nothing was sent" not in text
    assert _buttons(blocks) == {
        "Carrier tracking page": "https://www.ups.com/track?tracknum=1Z999",
        "Workflow in Temporal": f"{UI}/namespaces/shop/workflows/shipment-1Z999",
    }
    assert blocks_problem(blocks) is None


def test_only_the_first_name_and_no_address_reaches_the_channel() -> None:
    alert = rich_alert(
        kind=AlertKind.UNCERTAIN_SEND,
        first_name="Ada Lovelace",
        summary="The sms to +1 502 555 0123 and the email to ada@example.com may not have gone.",
        already_sent=["stale email to ada@example.com"],
    )
    text = str(alert_blocks(alert, temporal_ui_url=UI, namespace="default"))
    assert "*Customer*\\nAda'" in text and "Lovelace" not in text
    assert "ada@example.com" not in text and "555" not in text
    assert "The sms to [phone] and the email to [email]" in text
    assert "stale email to [email]" in text


def test_without_a_workflow_id_the_link_is_derived_from_the_tracking_number() -> None:
    alert = rich_alert(workflow_id=None, carrier_url=None, carrier=None, first_name=None)
    blocks = alert_blocks(alert, temporal_ui_url=UI, namespace="default")
    assert _buttons(blocks) == {
        "Workflow in Temporal": f"{UI}/namespaces/default/workflows/shipment-1Z999"
    }
    assert [f["text"] for f in blocks[1]["fields"]] == [
        "*Order*\n#1001",
        "*Tracking number*\n`1Z999`",
    ]
    assert _buttons(alert_blocks(alert, temporal_ui_url=None, namespace="default")) == {}


def test_a_carrier_url_that_is_not_a_web_address_is_left_out() -> None:
    blocks = alert_blocks(
        rich_alert(carrier_url="javascript:alert(1)"), temporal_ui_url=None, namespace="d"
    )
    assert _buttons(blocks) == {}


@pytest.mark.parametrize(
    ("number", "summary", "title", "kind"),
    [
        (
            "api:sendgrid",
            "sendgrid API failing since 2026-11-20 14:00 UTC",
            ":red_circle: Provider outage: sendgrid",
            "message provider",
        ),
        (
            "api:easypost",
            "easypost API answers again",
            ":large_green_circle: Carrier API recovered: easypost",
            "carrier API",
        ),
        (
            "api:gorgias",
            "gorgias API failing for 2 hours",
            ":red_circle: Provider outage: gorgias",
            "integration",
        ),
        (
            "-",
            "klaviyo answers 503 since 10:00 UTC",
            ":red_circle: Provider outage: klaviyo",
            "integration",
        ),
    ],
)
def test_outage_alerts_name_the_provider_not_a_parcel(
    number: str, summary: str, title: str, kind: str
) -> None:
    alert_kind = (
        AlertKind.CARRIER_API_RECOVERED
        if "recovered" in title.lower()
        else AlertKind.PROVIDER_OUTAGE
    )
    alert = RaiseAlert(
        idempotency_key=f"provider:{number}:1",
        alert=alert_kind,
        tracking_number=number,
        order_id="-",
        summary=summary,
        raised_at=T0,
    )
    blocks = alert_blocks(alert, temporal_ui_url=UI, namespace="default")
    provider = title.rsplit(": ", 1)[1]
    assert blocks[0]["text"]["text"] == title
    assert [f["text"] for f in blocks[1]["fields"]] == [
        f"*Provider*\n{provider}",
        f"*Kind*\n{kind}",
    ]
    assert "Order" not in str(blocks) and _buttons(blocks) == {}  # no shipment workflow to open
    assert alert_text(alert) == title.split(" ", 1)[1]
    assert blocks_problem(blocks) is None


def test_an_integration_outage_links_to_its_workflow_when_it_has_one() -> None:
    alert = RaiseAlert(
        idempotency_key="integration:zendesk:provider_outage:1",
        alert=AlertKind.PROVIDER_OUTAGE,
        tracking_number="api:zendesk",
        order_id="-",
        summary="zendesk answers 503",
        raised_at=T0,
        workflow_id="carrier-api-zendesk-trackflow",
    )
    blocks = alert_blocks(alert, temporal_ui_url=UI, namespace="default")
    assert _buttons(blocks) == {
        "Workflow in Temporal": f"{UI}/namespaces/default/workflows/carrier-api-zendesk-trackflow"
    }


@pytest.mark.parametrize("kind", list(AlertKind))
def test_every_alert_kind_renders_as_valid_block_kit(kind: AlertKind) -> None:
    long = rich_alert(
        kind=kind,
        summary="x <y> & z " * 500,
        already_sent=[f"message {n}" for n in range(40)],
    )
    blocks = alert_blocks(long, temporal_ui_url=UI, namespace="default")
    assert blocks_problem(blocks) is None
    assert blocks[0]["text"]["text"].strip(": ")
    assert "&lt;y&gt; &amp; z" in str(blocks) and "… and 28 more" in str(blocks)
    assert kind.value in str(blocks[-2])  # the context line names the kind


def test_a_return_opened_alert_reads_as_one() -> None:
    alert = rich_alert(
        kind=AlertKind.RETURN_OPENED, summary="Return requested: damaged.", already_sent=[]
    )
    blocks = alert_blocks(alert, temporal_ui_url=UI, namespace="default")
    assert blocks[0]["text"]["text"] == ":leftwards_arrow_with_hook: Return opened"
    assert alert_text(alert) == "Return opened: 1Z999 (order #1001)"
    assert "Nothing was sent to the customer" in str(blocks)


async def test_the_double_refuses_blocks_slack_would_refuse(
    ledger: Ledger, slack: tuple[SlackDouble, str]
) -> None:
    double, url = slack
    bad = [{"type": "header", "text": {"type": "mrkdwn", "text": "x" * 200}}]
    poster = SlackPoster(bot_token="xoxb-test", channel="C0ALERTS", base_url=f"{url}/api/")
    hook = SlackPoster(webhook_url=f"{url}/services/T000/B000/secret")
    assert await poster.post("fallback", bad) == Posted(ok=False, error="invalid_blocks")
    assert await hook.post("fallback", bad) == Posted(ok=False, error="400 invalid_blocks")
    assert double.messages == []


async def test_a_rich_alert_goes_through_the_webhook_as_sent(
    ledger: Ledger, slack: tuple[SlackDouble, str]
) -> None:
    double, url = slack
    transport = SlackAlerts(
        ledger, webhook_url=f"{url}/services/T000/B000/secret", temporal_ui_url=UI
    )
    record = await transport.raise_alert(rich_alert(summary="Customer ada@example.com waits."))
    assert record.transport == SLACK and record.to == "webhook"
    assert "ada@example.com" not in record.body
    (message,) = double.messages
    assert message["text"] == "Package lost: 1Z999 (order #1001)"
    assert message["blocks"] == alert_blocks(
        rich_alert(summary="Customer ada@example.com waits."),
        temporal_ui_url=UI,
        namespace="default",
    )
