"""Exactly once against providers that take no idempotency key: worker processes sending
through the SendGrid and Twilio doubles over HTTP are SIGKILLed before, during and after the
provider call, on the PostgreSQL ledger, then what the doubles received is counted.

* during: the double stalls the call (it has the message, the worker never hears back) and
  the worker holding it is killed;
* before: the text of that same decision was never claimed when the worker died;
* after: the double accepts the text, then drops the connection, and the worker is killed.

Every text must reach Twilio exactly once (Twilio's message list tells the recovering worker
what it already has). SendGrid cannot be asked: an email it received whose claim expired
without an id must end `uncertain` with one alert, never be sent again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from starters.embedded import free_port
from starters.shipments import register_shipment, signal_event
from starters.simulators.providers import ProviderDoubles, Rule, create_providers_app
from starters.simulators.providers.server import serving
from storage import MessageState, open_ledger
from tests.factories import ANY_TIME_POLICY, at, make_event, make_shipment
from tests.harness import eventually
from tests.test_worker_crash import worker_process
from trackflow.carriers.samples import random_tracking_number
from trackflow.models import CarrierStatus, Shipment

POSTGRES = os.environ.get(
    "TRACKFLOW_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
ACCOUNT = "AC" + "7" * 32
TOKEN = "crash-test-token"
SENDER = "+15005550006"
STALL_S = 120.0  # longer than the test: a stalled call never answers a live worker
FINAL = {"sent", "failed", "uncertain", "suppressed"}


@pytest.fixture
def doubles() -> Iterator[tuple[str, ProviderDoubles]]:
    # No callbacks: the crash test runs no API, and reconciliation must not need them.
    state = ProviderDoubles(
        sendgrid_api_key="SG.crash",
        twilio_account_sid=ACCOUNT,
        twilio_auth_token=TOKEN,
        auto_events=False,
    )
    with serving(create_providers_app(state)) as base_url:
        yield base_url, state


def provider_env(base_url: str) -> dict[str, str]:
    return {
        "TRACKFLOW_LEDGER_URL": POSTGRES,
        "TRACKFLOW_SENDGRID_API_KEY": "SG.crash",
        "TRACKFLOW_EMAIL_FROM": "Acme <shop@example.com>",
        "TRACKFLOW_SENDGRID_BASE_URL": base_url,
        "TRACKFLOW_TWILIO_ACCOUNT_SID": ACCOUNT,
        "TRACKFLOW_TWILIO_AUTH_TOKEN": TOKEN,
        "TRACKFLOW_TWILIO_FROM": SENDER,
        "TRACKFLOW_TWILIO_BASE_URL": base_url,
        "TRACKFLOW_PUBLIC_URL": f"http://127.0.0.1:{free_port()}",  # carries the key only
        # Under the send activity's 20 s timeout; a stalled call outlives it, so the worker
        # holding one is killed mid-call, or gives up and leaves the claim to reconcile.
        "TRACKFLOW_PROVIDER_TIMEOUT_S": "15",
    }


def new_shipment(n: int) -> Shipment:
    tag = uuid.uuid4().hex[:8]
    return make_shipment(
        tracking_number=random_tracking_number("ups"),
        order_value="300.00",
        email=f"crash-{tag}-{n}@example.com",
        phone=f"+1502555{int(tag[:4], 16) % 10000:04d}",
    )


async def message_rows(number: str) -> list[MessageState]:
    ledger = open_ledger(POSTGRES)
    try:
        return await ledger.states(number)
    finally:
        await ledger.close()


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


async def test_sigkill_before_during_and_after_the_provider_call_sends_each_message_once(
    temporal_env: WorkflowEnvironment,
    client: Client,
    temporal_address: str,
    task_queue: str,
    tmp_path: Path,
    doubles: tuple[str, ProviderDoubles],
) -> None:
    base_url, state = doubles
    env = provider_env(base_url)
    during, after, busy = new_shipment(1), new_shipment(2), new_shipment(3)
    shipments = [during, after, busy]

    async def start(shipment: Shipment) -> None:
        with temporal_env.with_time_skipping_disabled():  # a worker answers registrations
            await register_shipment(client, shipment, ANY_TIME_POLICY, task_queue=task_queue)
        await signal_event(
            client,
            make_event(
                CarrierStatus.LABEL_CREATED, at(0), tracking_number=shipment.tracking_number
            ),
        )

    def received_mail(to: str) -> list[str]:
        return [m.outcome for m in state.mail if to in m.to]

    def received_sms(to: str) -> list[str]:
        return [m.outcome for m in state.sms if m.to == to]

    async def mail_to(to: str) -> list[str]:
        return received_mail(to)

    async def sms_to(to: str) -> list[str]:
        return received_sms(to)

    assert during.customer.email and during.customer.phone
    assert after.customer.phone and busy.customer.phone

    # 1. During (email) and before (its text): SendGrid stalls, the only worker dies.
    state.script(Rule("sendgrid", "stall", seconds=STALL_S, to=during.customer.email))
    with worker_process(temporal_address, task_queue, tmp_path / "w1", **env) as w1:
        await start(during)
        await eventually(
            lambda: mail_to(during.customer.email or ""), lambda r: r == ["stalled"], what="stall"
        )
        kill(w1)
    assert received_sms(during.customer.phone) == []  # its text was never sent

    # 2. After: Twilio takes the text, drops the connection, and the worker dies.
    state.script(Rule("twilio", "drop", to=after.customer.phone))
    with worker_process(temporal_address, task_queue, tmp_path / "w2", **env) as w2:
        await start(after)
        await eventually(
            lambda: sms_to(after.customer.phone or ""), lambda r: r == ["dropped"], what="drop"
        )
        kill(w2)

    # 3. Two workers on the PostgreSQL ledger: one dies while Twilio stalls a text (whichever
    # holds the call, the claim is reconciled by the other or after the lease).
    state.script(Rule("twilio", "stall", seconds=STALL_S, to=busy.customer.phone))
    with (
        worker_process(temporal_address, task_queue, tmp_path / "w3", **env) as w3,
        worker_process(temporal_address, task_queue, tmp_path / "w4", **env),
    ):
        await start(busy)
        await eventually(
            lambda: sms_to(busy.customer.phone or ""), lambda r: r == ["stalled"], what="stall"
        )
        kill(w3)
        with worker_process(temporal_address, task_queue, tmp_path / "w5", **env):
            for shipment in shipments:
                await eventually(
                    lambda s=shipment: message_rows(s.tracking_number),  # type: ignore[misc]
                    lambda rows: sum(r.kind == "message" and r.status in FINAL for r in rows) == 2,
                    deadline_s=120,
                    what=f"both messages of {shipment.tracking_number} settled",
                )

    # What the doubles received: each text exactly once, none missing.
    sms_keys = Counter(m.key for m in state.sms)
    mail_keys = Counter(m.custom_args.get("trackflow_key") for m in state.mail)
    for shipment in shipments:
        rows = [r for r in await message_rows(shipment.tracking_number) if r.kind == "message"]
        assert sorted((r.trigger, r.channel) for r in rows) == [
            ("label_created", "email"),
            ("label_created", "sms"),
        ]
        (text,) = [r for r in rows if r.channel == "sms"]
        (mail,) = [r for r in rows if r.channel == "email"]
        assert sms_keys[text.idempotency_key] == 1, shipment.tracking_number
        assert text.status == "sent"
        assert text.provider_message_id == state.find_sms(key=text.idempotency_key).sid
        assert mail_keys[mail.idempotency_key] == 1, shipment.tracking_number
        if shipment is during:
            # SendGrid got it, its claim expired without an id, and SendGrid cannot be asked.
            assert mail.status == "uncertain"
            assert mail.provider_message_id is None
            alerts = [
                r.idempotency_key
                for r in await message_rows(shipment.tracking_number)
                if r.kind == "alert"
            ]
            assert alerts == [f"{mail.idempotency_key}:uncertain"]
        else:
            assert mail.status == "sent", (shipment.tracking_number, mail)
            assert mail.provider_message_id == state.find_mail(key=mail.idempotency_key).message_id
    # One call per message: nothing was ever sent a second time, even refused and retried.
    assert state.attempts == {"sendgrid": len(shipments), "twilio": len(shipments)}
    assert [(m.to, m.outcome) for m in state.mail] == [
        ([during.customer.email], "stalled"),
        ([after.customer.email], "accepted"),
        ([busy.customer.email], "accepted"),
    ]
    assert sorted(m.outcome for m in state.sms) == ["accepted", "dropped", "stalled"]
    assert sum(sms_keys.values()) == len(shipments)
    assert sum(mail_keys.values()) == len(shipments)
    assert [m.outcome for m in state.sms if m.to == after.customer.phone] == ["dropped"]
