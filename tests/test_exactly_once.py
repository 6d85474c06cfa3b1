"""The exactly-once protocol for customer messages (`exactly_once.send_once`), branch by branch,
against a transport double that counts what it was asked, on SQLite and PostgreSQL.

A crashed attempt is what it leaves behind: a 'sending' claim whose owner never comes back.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.channels.base import (
    CannotTell,
    OutgoingMessage,
    PermanentFailure,
    ProviderReceipt,
    ProviderUnavailable,
)
from activities.exactly_once import (
    LEDGER_KEY_COLLISION,
    MESSAGE_CLAIMED,
    PROVIDER_UNAVAILABLE,
    Delivery,
    Outcome,
    send_once,
)
from storage import Ledger, LedgerRecord, PostgresLedger, SqliteLedger, open_ledger
from tests.harness import drop_ledger_tables
from trackflow.models import Channel

POSTGRES_DSN = os.environ.get(
    "TRACKFLOW_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
KEY = "1Z999/5432109876543210987:out_for_delivery:0:sms"
LEASE = timedelta(seconds=30)
LONG_AGO = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    if request.param == "sqlite":
        opened = open_ledger(str(tmp_path / "ledger.sqlite3"))
        table = None
    else:
        table = f"once_test_{uuid.uuid4().hex[:12]}"
        opened = open_ledger(POSTGRES_DSN, table=table)
    try:
        yield opened
    finally:
        await opened.close()
        if table is not None:
            await drop_ledger_tables(POSTGRES_DSN, table)


@dataclass
class FakeProvider:
    """A provider double: counts sends and lookups; each answer scripted."""

    name: str = "fake"
    send_error: Exception | None = None
    found: ProviderReceipt | None = None
    find_error: Exception | None = None
    sent: list[OutgoingMessage] = field(default_factory=list)
    lookups: list[tuple[str, datetime]] = field(default_factory=list)

    async def send(self, message: OutgoingMessage) -> ProviderReceipt:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append(message)
        return ProviderReceipt(
            transport=self.name,
            provider_message_id=f"SM{len(self.sent)}",
            accepted_at=datetime.now(UTC),
        )

    async def find(self, message: OutgoingMessage, since: datetime) -> ProviderReceipt | None:
        self.lookups.append((message.idempotency_key, since))
        if self.find_error is not None:
            raise self.find_error
        return self.found


MESSAGE = OutgoingMessage(
    idempotency_key=KEY,
    channel=Channel.SMS,
    to="+15025550123",
    body="Acme: your order #1001 is out for delivery today.",
    tracking_number="1Z999",
    order_id="5432109876543210987",
)
TEMPLATE = LedgerRecord(
    idempotency_key=KEY,
    tracking_number="1Z999",
    order_id="5432109876543210987",
    trigger="out_for_delivery",
    channel="sms",
    to=MESSAGE.to,
    body=MESSAGE.body,
    transport="pending",
    sent_at=LONG_AGO,
)


class Alerts:
    def __init__(self) -> None:
        self.raised: list[tuple[str, str]] = []

    async def __call__(self, message: OutgoingMessage, why: str) -> None:
        self.raised.append((message.idempotency_key, why))


async def run(
    ledger: Ledger, provider: FakeProvider, alerts: Alerts | None = None, **kwargs: object
) -> Delivery:
    return await send_once(
        ledger,
        provider,
        MESSAGE,
        TEMPLATE,
        owner=f"attempt-{uuid.uuid4().hex[:6]}",
        lease=LEASE,
        on_uncertain=alerts,
        **kwargs,  # type: ignore[arg-type]
    )


async def crashed_attempt(ledger: Ledger, *, provider: str = "fake") -> None:
    """What a worker killed during the provider call leaves: an expired 'sending' claim."""
    draft = TEMPLATE.model_copy(update={"transport": provider})
    await ledger.claim(KEY, "killed-worker", LEASE, draft=draft, now=LONG_AGO)


async def test_a_fresh_message_is_sent_once_and_recorded_with_the_provider_id(
    ledger: Ledger,
) -> None:
    provider = FakeProvider()
    first = await run(ledger, provider)
    again = await run(ledger, provider)

    assert (first.outcome, first.provider_message_id, first.already) == (Outcome.SENT, "SM1", False)
    assert (again.outcome, again.provider_message_id, again.already) == (Outcome.SENT, "SM1", True)
    assert provider.sent == [MESSAGE] and provider.lookups == []
    stored = await ledger.get(KEY)
    assert stored is not None
    assert (stored.transport, stored.provider_message_id, stored.trigger, stored.to) == (
        "fake",
        "SM1",
        "out_for_delivery",
        MESSAGE.to,
    )


async def test_a_live_claim_makes_the_retry_wait_until_its_lease_ends(ledger: Ledger) -> None:
    now = datetime.now(UTC)
    await ledger.claim(KEY, "busy-worker", LEASE, draft=TEMPLATE, now=now)
    provider = FakeProvider()

    with pytest.raises(ApplicationError) as waited:
        await run(ledger, provider, clock=lambda: now + timedelta(seconds=10))

    assert waited.value.type == MESSAGE_CLAIMED and not waited.value.non_retryable
    assert "claimed by busy-worker until" in str(waited.value)
    assert waited.value.next_retry_delay == timedelta(seconds=21)  # 20 s left, plus one
    assert provider.sent == [] and provider.lookups == []


async def test_reconciliation_found_records_the_provider_copy_and_does_not_resend(
    ledger: Ledger,
) -> None:
    await crashed_attempt(ledger)
    accepted = LONG_AGO + timedelta(seconds=3)
    provider = FakeProvider(
        found=ProviderReceipt(transport="fake", provider_message_id="SM-kept", accepted_at=accepted)
    )

    done = await run(ledger, provider)

    assert (done.outcome, done.provider_message_id, done.already) == (Outcome.SENT, "SM-kept", True)
    assert provider.sent == []
    assert provider.lookups == [(KEY, LONG_AGO)]  # since the crashed attempt's claim
    stored = await ledger.get(KEY)
    assert stored is not None and (stored.provider_message_id, stored.sent_at) == (
        "SM-kept",
        accepted,
    )


async def test_reconciliation_never_got_it_sends_it_once(ledger: Ledger) -> None:
    await crashed_attempt(ledger)
    provider = FakeProvider(found=None)

    done = await run(ledger, provider)
    again = await run(ledger, provider)

    assert (done.outcome, done.already, again.already) == (Outcome.SENT, False, True)
    assert provider.lookups == [(KEY, LONG_AGO)]
    assert provider.sent == [MESSAGE]


async def test_reconciliation_cannot_tell_marks_uncertain_alerts_and_does_not_send(
    ledger: Ledger,
) -> None:
    await crashed_attempt(ledger)
    provider = FakeProvider(find_error=CannotTell("no lookup by custom_args"))
    alerts = Alerts()

    done = await run(ledger, provider, alerts)
    again = await run(ledger, provider, alerts)

    assert (done.outcome, done.already) == (Outcome.UNCERTAIN, False)
    assert (again.outcome, again.already) == (Outcome.UNCERTAIN, True)
    assert provider.sent == [] and len(provider.lookups) == 1
    state = await ledger.state(KEY)
    assert state is not None and state.status == "uncertain"
    assert await ledger.get(KEY) is None
    # Asked again on the later attempt (the activity keys the alert, so ops get one).
    assert [key for key, _ in alerts.raised] == [KEY, KEY]
    assert "no lookup by custom_args" in alerts.raised[0][1]


async def test_feedback_that_named_the_message_settles_it_without_asking_the_provider(
    ledger: Ledger,
) -> None:
    await crashed_attempt(ledger, provider="fake")
    await ledger.record_feedback(KEY, "sent", LONG_AGO, None, provider_message_id="SM-cb")
    provider = FakeProvider(find_error=CannotTell("would not know"))

    done = await run(ledger, provider)

    assert (done.outcome, done.provider_message_id) == (Outcome.SENT, "SM-cb")
    assert provider.sent == [] and provider.lookups == []


async def test_a_permanent_refusal_is_recorded_with_its_code_and_not_tried_again(
    ledger: Ledger,
) -> None:
    provider = FakeProvider(send_error=PermanentFailure("21610", "unsubscribed recipient"))

    done = await run(ledger, provider)
    provider.send_error = None
    again = await run(ledger, provider)

    assert (done.outcome, done.error_code, done.detail) == (
        Outcome.FAILED,
        "21610",
        "unsubscribed recipient",
    )
    assert (again.outcome, again.error_code, again.already) == (Outcome.FAILED, "21610", True)
    assert provider.sent == []
    state = await ledger.state(KEY)
    assert state is not None and (state.status, state.error_code) == ("failed", "21610")


async def test_a_provider_that_answered_busy_is_retried_after_retry_after_and_sent_directly(
    ledger: Ledger,
) -> None:
    provider = FakeProvider(
        send_error=ProviderUnavailable("429 Too Many Requests", 7.5, may_have_sent=False)
    )

    with pytest.raises(ApplicationError) as busy:
        await run(ledger, provider)
    assert busy.value.type == PROVIDER_UNAVAILABLE and not busy.value.non_retryable
    assert busy.value.next_retry_delay == timedelta(seconds=7.5)

    provider.send_error = None
    done = await run(ledger, provider)
    assert done.outcome is Outcome.SENT
    assert provider.lookups == []  # it surely had nothing: no reconciliation
    assert provider.sent == [MESSAGE]


async def test_a_provider_call_that_may_have_gone_through_is_reconciled_at_once(
    ledger: Ledger,
) -> None:
    provider = FakeProvider(send_error=ProviderUnavailable("read timeout"))

    with pytest.raises(ApplicationError) as timed_out:
        await run(ledger, provider)
    assert timed_out.value.next_retry_delay is None  # Temporal's backoff

    provider.send_error = None
    provider.found = ProviderReceipt(
        transport="fake", provider_message_id="SM-late", accepted_at=datetime.now(UTC)
    )
    done = await run(ledger, provider)  # no wait for a lease: it was given back
    assert (done.outcome, done.provider_message_id) == (Outcome.SENT, "SM-late")
    assert len(provider.lookups) == 1 and provider.sent == []


async def test_a_suppressed_address_is_recorded_and_not_sent(ledger: Ledger) -> None:
    provider = FakeProvider()

    async def consent(message: OutgoingMessage) -> str | None:
        return "sms_stop"

    done = await run(ledger, provider, consent=consent)

    assert (done.outcome, done.error_code) == (Outcome.SUPPRESSED, "sms_stop")
    assert provider.sent == []
    state = await ledger.state(KEY)
    assert state is not None and state.status == "suppressed"


async def test_a_key_held_by_another_kind_of_effect_fails_without_retry(ledger: Ledger) -> None:
    await ledger.record_once(TEMPLATE.model_copy(update={"kind": "alert", "transport": "ledger"}))
    provider = FakeProvider()

    with pytest.raises(ApplicationError) as collision:
        await run(ledger, provider)

    assert collision.value.type == LEDGER_KEY_COLLISION and collision.value.non_retryable
    assert provider.sent == []


async def test_two_workers_racing_one_message_send_it_once(ledger: Ledger, tmp_path: Path) -> None:
    """Ten attempts on separate connections (as separate workers): one sends, the rest wait."""
    provider = FakeProvider()

    def another_worker() -> Ledger:
        if isinstance(ledger, SqliteLedger):
            return open_ledger(str(ledger.path))
        assert isinstance(ledger, PostgresLedger)
        return open_ledger(POSTGRES_DSN, table=ledger.table)

    others = [another_worker() for _ in range(9)]
    try:
        results = await asyncio.gather(
            *(run(each, provider) for each in [ledger, *others]), return_exceptions=True
        )
    finally:
        for other in others:
            await other.close()

    sent = [r for r in results if isinstance(r, Delivery)]
    waited = [r for r in results if isinstance(r, ApplicationError)]
    assert len(provider.sent) == 1
    assert len(sent) + len(waited) == 10 and len(sent) >= 1
    assert all(d.outcome is Outcome.SENT and d.provider_message_id == "SM1" for d in sent)
    assert sum(not d.already for d in sent) == 1
    assert all(e.type == MESSAGE_CLAIMED for e in waited)
