"""The SendGrid transport through the official SDK against the SendGrid double, over HTTP:
the provider id is kept, each error class maps to the seam's exceptions, Retry-After is
reported, and reconciliation can only tell from Event Webhook records."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.channels.base import (
    CannotTell,
    OutgoingMessage,
    PermanentFailure,
    ProviderUnavailable,
)
from activities.channels.sendgrid import SendGridTransport
from activities.exactly_once import Delivery, send_once
from starters.embedded import free_port
from starters.shipments import register_shipment, signal_event
from starters.simulators.providers import ProviderDoubles, Rule, create_providers_app
from starters.simulators.providers.server import serving
from storage import LedgerRecord, open_ledger
from tests.factories import ANY_TIME_POLICY, at, make_event, make_shipment
from tests.harness import eventually, outbox, running_worker
from trackflow.carriers.samples import random_tracking_number
from trackflow.models import CarrierStatus, Channel

KEY = "1Z999/o-1:shipped:0:email"


@pytest.fixture
def double() -> Iterator[tuple[str, ProviderDoubles]]:
    state = ProviderDoubles(sendgrid_api_key="SG.key", auto_events=False)
    with serving(create_providers_app(state)) as base_url:
        yield base_url, state


def message(key: str = KEY, to: str = "ada@example.com") -> OutgoingMessage:
    return OutgoingMessage(
        idempotency_key=key,
        channel=Channel.EMAIL,
        to=to,
        subject="Your order is on its way",
        body="Track it: https://example.com/t/1Z999",
        html='<p>Track it: <a href="https://example.com/t/1Z999">here</a></p>',
        tracking_number="1Z999",
        order_id="o-1",
        headers={
            "List-Unsubscribe": "<https://example.com/u/abc>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


def transport(base_url: str, api_key: str = "SG.key", **kwargs: object) -> SendGridTransport:
    return SendGridTransport(
        api_key=api_key,
        sender="Acme <shop@example.com>",
        base_url=base_url,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_a_sent_email_keeps_sendgrids_message_id(
    double: tuple[str, ProviderDoubles],
) -> None:
    base_url, state = double
    receipt = await transport(base_url).send(message())
    (mail,) = state.mail
    assert receipt.transport == "sendgrid"
    assert receipt.provider_message_id == mail.message_id
    request = mail.request
    assert request["from"] == {"email": "shop@example.com", "name": "Acme"}
    assert [c["type"] for c in request["content"]] == ["text/plain", "text/html"]
    assert request["content"][0]["value"] == "Track it: https://example.com/t/1Z999"
    assert mail.custom_args == {"trackflow_key": KEY}
    assert mail.headers == {
        "List-Unsubscribe": "<https://example.com/u/abc>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert mail.subject == "Your order is on its way"


@pytest.mark.parametrize("status", [400, 401, 403, 413])
async def test_refusals_are_permanent_with_the_status_as_code(
    double: tuple[str, ProviderDoubles], status: int
) -> None:
    base_url, state = double
    state.script(Rule("sendgrid", "error", code=status))
    with pytest.raises(PermanentFailure) as refused:
        await transport(base_url).send(message())
    assert refused.value.code == str(status)
    assert refused.value.detail  # SendGrid's own message
    assert state.mail == []


async def test_a_wrong_key_and_an_invalid_address_are_permanent(
    double: tuple[str, ProviderDoubles],
) -> None:
    base_url, _ = double
    with pytest.raises(PermanentFailure) as unauthorized:
        await transport(base_url, api_key="SG.wrong").send(message())
    assert unauthorized.value.code == "401"
    # An address SendGrid would answer 400 is refused before the request (SendGrid's own
    # 400 is permanent too: test_refusals_are_permanent_with_the_status_as_code).
    with pytest.raises(PermanentFailure) as invalid:
        await transport(base_url).send(message(to="ada@localhost"))
    assert invalid.value.code == "invalid_address"


@pytest.mark.parametrize(
    "to", ["a,b@example.com", "a>b@example.com", "x<victim@example.com", "a(c)@example.com"]
)
async def test_an_address_the_helper_reads_differently_is_refused_before_any_request(
    double: tuple[str, ProviderDoubles], tmp_path: Path, to: str
) -> None:
    """An address that reached the transport although it is not one plain address (a row
    from before the check) is a permanent refusal with nothing sent: never an exception
    that leaves the message uncertain, never a mail to the address the helper extracts."""
    base_url, state = double
    with pytest.raises(PermanentFailure) as refused:
        await transport(base_url).send(message(to=to))
    assert refused.value.code == "invalid_address"
    ledger = open_ledger(str(tmp_path / "ledger.sqlite3"))
    alerts: list[str] = []

    async def alert(message: OutgoingMessage, why: str) -> None:
        alerts.append(why)

    try:
        delivery = await send_once(
            ledger,
            transport(base_url),
            message(to=to),
            template(),
            owner="worker-1",
            lease=timedelta(seconds=30),
            on_uncertain=alert,
        )
        assert (delivery.outcome, delivery.error_code, alerts) == ("failed", "invalid_address", [])
    finally:
        await ledger.close()
    assert state.mail == []


async def test_429_reports_retry_after(double: tuple[str, ProviderDoubles]) -> None:
    base_url, state = double
    state.script(Rule("sendgrid", "429", retry_after=7))
    with pytest.raises(ProviderUnavailable) as limited:
        await transport(base_url).send(message())
    assert limited.value.retry_after == 7
    assert limited.value.may_have_sent is False
    # Without Retry-After, SendGrid's X-RateLimit-Reset (epoch seconds) says how long.
    state.script(Rule("sendgrid", "429"))
    with pytest.raises(ProviderUnavailable) as reset:
        await transport(base_url).send(message())
    assert reset.value.retry_after is not None
    assert 0 <= reset.value.retry_after <= 2
    assert (await transport(base_url).send(message())).provider_message_id == state.mail[
        0
    ].message_id


@pytest.mark.parametrize("action", ["500", "503", "drop"])
async def test_server_errors_and_a_dropped_connection_are_unavailable(
    double: tuple[str, ProviderDoubles], action: str
) -> None:
    base_url, state = double
    state.script(Rule("sendgrid", action))  # type: ignore[arg-type]
    with pytest.raises(ProviderUnavailable) as unavailable:
        await transport(base_url).send(message())
    # Dropped after acceptance: the double has it although the sender never heard back.
    assert [m.outcome for m in state.mail] == (["dropped"] if action == "drop" else [])
    # An answer means it did not take the message; a dropped connection may have.
    assert unavailable.value.may_have_sent is (action == "drop")


async def test_a_stall_past_the_timeout_and_a_closed_port_are_unavailable(
    double: tuple[str, ProviderDoubles],
) -> None:
    base_url, state = double
    state.script(Rule("sendgrid", "stall", seconds=5))
    with pytest.raises(ProviderUnavailable) as stalled:
        await transport(base_url, timeout_s=0.5).send(message())
    assert [m.outcome for m in state.mail] == ["stalled"]
    assert stalled.value.may_have_sent is True
    with pytest.raises(ProviderUnavailable) as refused:
        await transport(f"http://127.0.0.1:{free_port()}").send(message())
    assert refused.value.may_have_sent is False


async def test_find_knows_a_message_only_from_its_event_webhook_records(
    double: tuple[str, ProviderDoubles],
) -> None:
    base_url, _ = double
    since = datetime.now(UTC)
    with pytest.raises(CannotTell):
        await transport(base_url).find(message(), since)

    seen = {KEY: "14c5d75ce93.filterdrecv-4A1B-1.0"}

    async def feedback(key: str) -> str | None:
        return seen.get(key)

    found = await transport(base_url, feedback=feedback).find(message(), since)
    assert found is not None and found.provider_message_id == "14c5d75ce93"
    with pytest.raises(CannotTell):
        await transport(base_url, feedback=feedback).find(message(key="other"), since)


def template(key: str = KEY) -> LedgerRecord:
    return LedgerRecord(
        idempotency_key=key,
        tracking_number="1Z999",
        order_id="o-1",
        trigger="in_transit",
        channel="email",
        to="ada@example.com",
        subject="Your order is on its way",
        body="Track it",
        transport="sendgrid",
        sent_at=datetime.now(UTC),
    )


async def test_send_once_stores_the_id_honours_retry_after_and_never_resends_a_drop(
    double: tuple[str, ProviderDoubles], tmp_path: Path
) -> None:
    """Through the send activity's exactly-once step on a real ledger: a 429's Retry-After is
    the next retry's delay, the accepted message's X-Message-Id lands on the ledger row, a
    refusal is recorded with its code, and a dropped connection ends uncertain (one alert),
    never in a second email."""
    base_url, state = double
    ledger = open_ledger(str(tmp_path / "ledger.sqlite3"))
    alerts: list[str] = []

    async def alert(message: OutgoingMessage, why: str) -> None:
        alerts.append(message.idempotency_key)

    async def send(key: str, owner: str = "worker-1") -> Delivery:
        return await send_once(
            ledger,
            transport(base_url),
            message(key),
            template(key),
            owner=owner,
            lease=timedelta(seconds=30),
            on_uncertain=alert,
        )

    try:
        state.script(Rule("sendgrid", "429", retry_after=7))
        with pytest.raises(ApplicationError) as limited:
            await send(KEY)
        assert limited.value.next_retry_delay == timedelta(seconds=7)
        sent = await send(KEY)
        (mail,) = state.mail
        assert (sent.outcome, sent.provider_message_id) == ("sent", mail.message_id)
        row = await ledger.state(KEY)
        assert row is not None
        assert (row.status, row.transport, row.provider_message_id) == (
            "sent",
            "sendgrid",
            mail.message_id,
        )
        assert (await send(KEY)).already  # a retry after success sends nothing

        state.script(Rule("sendgrid", "error", code=403))
        refused = await send("k-refused")
        assert (refused.outcome, refused.error_code) == ("failed", "403")
        refused_row = await ledger.state("k-refused")
        assert refused_row is not None and refused_row.error_code == "403"

        state.script(Rule("sendgrid", "drop"))
        with pytest.raises(ApplicationError):
            await send("k-dropped")
        after = await send("k-dropped", owner="worker-2")
        assert after.outcome == "uncertain"
        assert alerts == ["k-dropped"]
        assert [m.custom_args["trackflow_key"] for m in state.mail] == [KEY, "k-dropped"]
    finally:
        await ledger.close()


async def test_a_workflows_email_waits_out_retry_after_then_keeps_the_message_id(
    temporal_env: WorkflowEnvironment,
    client: Client,
    task_queue: str,
    tmp_path: Path,
    double: tuple[str, ProviderDoubles],
) -> None:
    """Through Temporal: a worker whose email goes to SendGrid (the double); the first call
    is answered 429 with Retry-After: 3, and the send activity's next attempt comes no
    sooner, then the ledger row keeps SendGrid's X-Message-Id."""
    base_url, state = double
    shipment = make_shipment(
        tracking_number=random_tracking_number("ups"),
        order_value="20",  # email only
        email="retry-after@example.com",
    )
    state.script(Rule("sendgrid", "429", retry_after=3))
    async with running_worker(
        client,
        task_queue,
        tmp_path,
        sendgrid_api_key="SG.key",
        email_from="Acme <shop@example.com>",
        sendgrid_base_url=base_url,
    ):
        with temporal_env.with_time_skipping_disabled():
            await register_shipment(client, shipment, ANY_TIME_POLICY, task_queue=task_queue)
            await signal_event(
                client,
                make_event(
                    CarrierStatus.LABEL_CREATED, at(0), tracking_number=shipment.tracking_number
                ),
            )
            rows = await eventually(
                lambda: outbox(tmp_path, shipment.tracking_number),
                lambda records: len(records) == 1,
                what="the email sent",
            )
    (mail,) = state.mail
    assert (rows[0].transport, rows[0].provider_message_id) == ("sendgrid", mail.message_id)
    first, second = (at for provider, at in state.arrivals if provider == "sendgrid")
    assert (second - first).total_seconds() >= 3
