"""End to end on the real dev server: a parcel declared lost (time skipping to the policy's real
lost_after) posts exactly one Slack message through the worker to the Slack double over HTTP,
even though the double first answers 429 with Retry-After."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.slack import SLACK
from devstack.doubles.providers.server import serving
from devstack.doubles.slack import SlackDouble, blocks_problem, create_slack_app
from starters.shipments import register_shipment, signal_event
from tests.factories import at, make_event, make_shipment
from tests.harness import eventually, outbox, running_worker, sent, zone_at_local_hour
from trackflow.carriers.samples import random_tracking_number
from trackflow.models import CarrierStatus
from trackflow.tracking_policy import TrackingPolicy

UI = "http://localhost:8233"


@pytest.fixture
def slack() -> Iterator[tuple[SlackDouble, str]]:
    double = SlackDouble()
    with serving(create_slack_app(double)) as url:
        yield double, url


def _texts(blocks: list[dict[str, Any]]) -> str:
    """Every text of the blocks, joined (field, section, context and button texts)."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("text", "url") and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks)
    return "\n".join(found)


async def test_a_lost_parcel_posts_one_slack_alert_after_a_429(
    temporal_env: WorkflowEnvironment,
    client: Client,
    task_queue: str,
    tmp_path: Path,
    slack: tuple[SlackDouble, str],
) -> None:
    double, url = slack
    double.script.append({"status": 429, "retry_after": 1, "error": "ratelimited"})
    number = random_tracking_number("ups")
    parcel = make_shipment(
        tracking_number=number, order_value="300", timezone=zone_at_local_hour(12)
    )
    policy = TrackingPolicy().model_copy(update={"stale_message_enabled": False})
    slack_settings = {
        "slack_bot_token": "xoxb-test",
        "slack_channel": "C0ALERTS",
        "slack_base_url": f"{url}/api/",
        "temporal_ui_url": UI,
    }
    async with running_worker(client, task_queue, tmp_path, **slack_settings):
        with temporal_env.with_time_skipping_disabled():
            registered = await register_shipment(client, parcel, policy, task_queue=task_queue)
        await signal_event(
            client, make_event(CarrierStatus.IN_TRANSIT, at(0), tracking_number=number)
        )
        await eventually(
            lambda: outbox(tmp_path, number), lambda r: len(r) >= 2, what="in-transit messages"
        )
        assert double.calls == 0  # nothing for ops while the parcel moves

        await temporal_env.fast_forward(
            registered.handle, policy.standard.lost_after + timedelta(minutes=5)
        )
        settled = await eventually(
            lambda: outbox(tmp_path, number),
            lambda r: (
                any(x.kind == "alert" and x.transport == SLACK for x in r)
                and ("lost", "sms") in sent(r)
            ),
            what="the lost alert posted to Slack and the lost messages sent",
        )

    alerts = [r for r in settled if r.kind == "alert"]
    assert [(a.trigger, a.transport, a.to) for a in alerts] == [("lost", SLACK, "C0ALERTS")]
    assert double.calls == 2  # the 429, then the post after Retry-After: nothing more
    (message,) = double.messages
    assert message["channel"] == "C0ALERTS"
    assert alerts[0].provider_message_id == message["ts"]
    blocks = message["blocks"]
    assert blocks_problem(blocks) is None
    text = _texts(blocks)
    assert "Package lost" in text and number in text and parcel.order_id in text
    assert f"{UI}/namespaces/default/workflows/shipment-{number}" in text
    # What the policy tells the alert (trackflow.policy): carrier, first name, what was sent.
    assert "*Carrier*\nUPS" in text and "*Customer*\nAda" in text
    assert "Already sent to the customer" in text and "Carrier tracking page" in text
    assert "ada@example.com" not in str(message) and "+15025550123" not in str(message)
    assert "Lovelace" not in str(message)  # a first name at most
