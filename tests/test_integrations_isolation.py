"""An integration that is down never holds a customer message (issue 11, part 5), on the real
dev server with the ops doubles over HTTP (mounted as `trackflow simulate providers` does).

Gorgias answers 503 for the whole lifecycle of a delayed shipment: every customer message is
recorded within seconds of its carrier event while the helpdesk tag retries with backoff on the
integrations queue; the Gorgias outage raises one Slack alert after the policy's
`provider_outage_after`, and once Gorgias answers again the tag and its note land once and a
recovery alert follows. With Slack down too, the alert about Slack itself goes to the ledger
only. An integration that gives up leaves a note on the shipment."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from starters.shipments import register_shipment, shipment_view, signal_event
from starters.simulators.providers.app import create_providers_app
from starters.simulators.providers.ops import OpsDoubles, simulated_ops_env
from starters.simulators.providers.server import serving
from storage import LedgerRecord, open_ledger
from tests.factories import ANY_TIME_POLICY, at, make_event, make_shipment
from tests.harness import eventually, free_port, outbox, running_worker, sent
from trackflow import policy as tracking
from trackflow.carriers.samples import random_tracking_number
from trackflow.effects import AUTO_DELAY_NOTIFIED, AlertKind
from trackflow.models import CarrierStatus, ExceptionKind, Shipment
from trackflow.shipment_state import ShipmentState
from trackflow.tracking_policy import TrackingPolicy

PROMPT_S = 5.0  # a customer message goes out within seconds of its event, outage or not
OUTAGE_AFTER = timedelta(seconds=2)
POLICY: TrackingPolicy = ANY_TIME_POLICY.model_copy(
    update={"stale_message_enabled": False, "provider_outage_after": OUTAGE_AFTER}
)
OPS_SETTINGS = (
    "TRACKFLOW_SLACK_BOT_TOKEN",
    "TRACKFLOW_SLACK_CHANNEL",
    "TRACKFLOW_SLACK_BASE_URL",
    "TRACKFLOW_GORGIAS_BASE_URL",
    "TRACKFLOW_GORGIAS_USERNAME",
    "TRACKFLOW_GORGIAS_API_KEY",
)


@dataclass
class Doubles:
    ops: OpsDoubles
    url: str
    http: httpx.AsyncClient

    def settings(self, tmp_path: Path) -> dict[str, Any]:
        """Slack and Gorgias pointed at the doubles; the worker's policy (the one the API
        health workflows count with) has a short provider_outage_after."""
        env = simulated_ops_env(self.url)
        policy_file = tmp_path / "policy.json"
        policy_file.write_text(POLICY.model_dump_json())
        return {
            **{name.removeprefix("TRACKFLOW_").lower(): env[name] for name in OPS_SETTINGS},
            "policy_file": policy_file,
        }

    async def gorgias_down(self, down: bool) -> None:
        answer = await self.http.post("/gorgias/_double/script", json={"down": down})
        assert answer.json()["down"] is down

    async def slack_down(self) -> None:
        rule = {"status": 503, "count": 10_000, "error": "service_unavailable"}
        assert (await self.http.post("/slack/_double/script", json=rule)).status_code == 200

    async def slack_messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = (await self.http.get("/slack/_double/messages")).json()
        return messages

    async def gorgias_calls(self) -> list[dict[str, str]]:
        calls: list[dict[str, str]] = (await self.http.get("/gorgias/_double/calls")).json()
        return calls

    async def gorgias_tickets(self) -> list[dict[str, Any]]:
        tickets: list[dict[str, Any]] = (await self.http.get("/gorgias/_double/tickets")).json()
        return tickets


@pytest.fixture
def doubles() -> Iterator[Doubles]:
    ops = OpsDoubles()
    with serving(create_providers_app(ops=ops), port=free_port()) as url:
        yield Doubles(ops, url, httpx.AsyncClient(base_url=url, timeout=5))


def _shipment() -> Shipment:
    number = random_tracking_number("ups")
    return make_shipment(tracking_number=number, order_value="300")


async def _start(
    env: WorkflowEnvironment, client: Client, shipment: Shipment, task_queue: str
) -> WorkflowHandle[Any, Any]:
    with env.with_time_skipping_disabled():
        registered = await register_shipment(client, shipment, POLICY, task_queue=task_queue)
    return registered.handle


async def _promptly(
    client: Client,
    data_dir: Path,
    shipment: Shipment,
    status: CarrierStatus,
    hours: float,
    **kw: Any,
) -> list[LedgerRecord]:
    """Signal a carrier event; its customer messages must be in the outbox within PROMPT_S."""
    number = shipment.tracking_number
    await signal_event(client, make_event(status, at(hours), tracking_number=number, **kw))
    return await eventually(
        lambda: outbox(data_dir, number),
        lambda records: (status.value, "email") in sent(records),
        deadline_s=PROMPT_S,
        what=f"the {status.value} message within {PROMPT_S}s of its event",
    )


def _alerts(records: list[LedgerRecord], kind: AlertKind) -> list[LedgerRecord]:
    return [r for r in records if r.kind == "alert" and r.trigger == kind.value]


def _tags(records: list[LedgerRecord]) -> list[LedgerRecord]:
    return [r for r in records if r.kind == "helpdesk"]


def _slack_about(messages: list[dict[str, Any]], *words: str) -> list[dict[str, Any]]:
    return [m for m in messages if all(w in str(m) for w in words)]


async def _pending_tag_attempts(handle: WorkflowHandle[Any, Any]) -> int:
    pending = (await handle.describe()).raw_description.pending_activities
    return max((p.attempt for p in pending if p.activity_type.name == "tag_helpdesk"), default=0)


async def test_a_helpdesk_down_for_the_whole_lifecycle_never_holds_a_customer_message(
    temporal_env: WorkflowEnvironment,
    client: Client,
    task_queue: str,
    tmp_path: Path,
    doubles: Doubles,
) -> None:
    shipment = _shipment()
    number = shipment.tracking_number
    ticket = (
        await doubles.http.post(
            "/gorgias/_double/tickets", json={"customer_email": shipment.customer.email}
        )
    ).json()
    await doubles.gorgias_down(True)
    async with running_worker(client, task_queue, tmp_path, **doubles.settings(tmp_path)):
        handle = await _start(temporal_env, client, shipment, task_queue)
        await _promptly(client, tmp_path, shipment, CarrierStatus.IN_TRANSIT, 0)
        await _promptly(
            client,
            tmp_path,
            shipment,
            CarrierStatus.EXCEPTION,
            20,
            exception=ExceptionKind.CARRIER_DELAY,
        )
        # The tag is tried (and refused with a 503) on the integrations queue ...
        await eventually(doubles.gorgias_calls, bool, what="a call to Gorgias")
        await _promptly(client, tmp_path, shipment, CarrierStatus.OUT_FOR_DELIVERY, 40)
        # ... one outage alert reaches Slack once Gorgias has failed for OUTAGE_AFTER ...
        await eventually(
            doubles.slack_messages,
            lambda m: bool(_slack_about(m, "gorgias")),
            what="the Gorgias outage alert in Slack",
        )
        # ... and the delivered message goes out while the tag is still retrying.
        delivered = await _promptly(client, tmp_path, shipment, CarrierStatus.DELIVERED, 44)
        assert _tags(delivered) == []
        assert await _pending_tag_attempts(handle) >= 1
        # Failures after the alert do not raise another one.
        calls_at_alert = len(await doubles.gorgias_calls())
        await eventually(
            doubles.gorgias_calls,
            lambda calls: len(calls) > calls_at_alert,
            what="Gorgias retried after the outage alert",
        )
        assert await _pending_tag_attempts(handle) >= 2
        during = await outbox(tmp_path, "api:gorgias")
        during_slack = await doubles.slack_messages()

        await doubles.gorgias_down(False)
        tagged = await eventually(
            lambda: outbox(tmp_path, number),
            lambda records: bool(_tags(records)),
            deadline_s=40,
            what="the helpdesk tag once Gorgias answers again",
        )
        recovered = await eventually(
            lambda: outbox(tmp_path, "api:gorgias"),
            lambda records: bool(_alerts(records, AlertKind.PROVIDER_RECOVERED)),
            what="the Gorgias recovery alert",
        )
        slack = await doubles.slack_messages()
        tickets = await doubles.gorgias_tickets()

    assert sent(tagged)[: len(sent(delivered))] == sent(delivered)
    assert [t for t, _ in sent(delivered)] == [
        "in_transit",
        "in_transit",
        "exception",
        "exception",
        "out_for_delivery",
        "out_for_delivery",
        "delivered",
        "delivered",
    ]
    assert [r.kind for r in during] == ["alert"]
    assert [a.transport for a in _alerts(during, AlertKind.PROVIDER_OUTAGE)] == ["slack"]
    assert len(_slack_about(during_slack, "gorgias")) == 1
    assert len(_alerts(recovered, AlertKind.PROVIDER_OUTAGE)) == 1
    assert len(_alerts(recovered, AlertKind.PROVIDER_RECOVERED)) == 1
    assert len(_slack_about(slack, "gorgias")) == 2  # the outage, then the recovery
    (tag,) = _tags(tagged)
    assert tag.transport == "gorgias"
    (after,) = [t for t in tickets if t["id"] == ticket["id"]]
    assert AUTO_DELAY_NOTIFIED in after["tags"]
    notes = [m for m in after.get("messages", []) if not m.get("public", True)]
    assert len(notes) == 1, after.get("messages")


async def test_with_slack_down_too_the_alert_about_slack_goes_to_the_ledger_only(
    temporal_env: WorkflowEnvironment,
    client: Client,
    task_queue: str,
    tmp_path: Path,
    doubles: Doubles,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    shipment = _shipment()
    await doubles.gorgias_down(True)
    await doubles.slack_down()
    async with running_worker(client, task_queue, tmp_path, **doubles.settings(tmp_path)):
        await _start(temporal_env, client, shipment, task_queue)
        await _promptly(client, tmp_path, shipment, CarrierStatus.IN_TRANSIT, 0)
        await _promptly(
            client,
            tmp_path,
            shipment,
            CarrierStatus.EXCEPTION,
            20,
            exception=ExceptionKind.CARRIER_DELAY,
        )
        # The Gorgias outage alert fails against Slack, so Slack's own outage is counted ...
        about_slack = await eventually(
            lambda: outbox(tmp_path, "api:slack"),
            lambda records: bool(_alerts(records, AlertKind.PROVIDER_OUTAGE)),
            what="the Slack outage alert in the ledger",
        )
        # ... and customer messages keep flowing meanwhile.
        delivered = await _promptly(client, tmp_path, shipment, CarrierStatus.DELIVERED, 44)
        slack = await doubles.slack_messages()

    (alert,) = about_slack
    assert (alert.kind, alert.transport) == ("alert", "ledger")  # record_alert, not Slack
    assert slack == []  # every post to Slack was refused: nothing reached it
    logged = [r.getMessage() for r in caplog.records if "api:slack" in r.getMessage()]
    assert len(logged) == 1 and "slack API failing since" in logged[0], logged
    assert ("delivered", "sms") in sent(delivered)
    assert _tags(delivered) == []


# Regression: Note.kind had no "integration", so the give-up note raised a ValidationError in
# the workflow's background task, which died as an asyncio log line and noted nothing.
async def test_an_integration_that_gives_up_leaves_a_note_on_the_shipment(
    temporal_env: WorkflowEnvironment,
    client: Client,
    task_queue: str,
    tmp_path: Path,
    doubles: Doubles,
) -> None:
    """The 2-day retry window is a constant of workflows/effects.py; a non-retryable failure
    takes the same give-up path: the tag's ledger key already holds another kind of record."""
    shipment = _shipment()
    number = shipment.tracking_number
    await doubles.gorgias_down(True)
    async with running_worker(client, task_queue, tmp_path, **doubles.settings(tmp_path)):
        await _start(temporal_env, client, shipment, task_queue)
        await _promptly(
            client,
            tmp_path,
            shipment,
            CarrierStatus.EXCEPTION,
            0,
            exception=ExceptionKind.CARRIER_DELAY,
        )
        await eventually(doubles.gorgias_calls, bool, what="a call to Gorgias")
        view = await shipment_view(client, number)
        (key,) = [n.key for n in view.notes if n.kind == "helpdesk"]
        ledger = open_ledger(str(tmp_path / "ledger.sqlite3"))
        try:
            squatter = LedgerRecord(
                idempotency_key=key,
                kind="alert",
                tracking_number=number,
                order_id=shipment.order_id,
                trigger="squatter",
                channel="alert",
                to="nobody",
                body="a record of another kind under the tag's key",
                transport="test",
                sent_at=datetime.now(UTC),
            )
            await ledger.record_once(squatter)
        finally:
            await ledger.close()
        calls_before = len(await doubles.gorgias_calls())
        await doubles.gorgias_down(False)
        noted = await eventually(
            lambda: shipment_view(client, number),
            lambda v: any(str(n.kind) == "integration" for n in v.notes),
            deadline_s=15,
            what="the give-up note on the shipment",
        )
        calls_after = len(await doubles.gorgias_calls())

    (note,) = [n for n in noted.notes if str(n.kind) == "integration"]
    assert note.key == key and "tag_helpdesk gave up" in note.detail
    assert calls_after == calls_before  # the collision is found before any call to Gorgias


def test_on_integration_gave_up_notes_why_for_ops() -> None:
    state = ShipmentState()
    now = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
    after = tracking.on_integration_gave_up(state, "1Z:exception:1:helpdesk", "x" * 500, now)
    (note,) = after.notes
    assert (note.kind, note.key, note.at) == ("integration", "1Z:exception:1:helpdesk", now)
    assert note.detail == "x" * 300  # bounded
