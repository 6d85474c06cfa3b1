"""The send activity as Temporal runs it (`ActivityEnvironment`): every channel of a decision,
each exactly once, through its channel's transport, with consent checked before each send."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.channels import transports_for
from activities.channels.base import (
    CannotTell,
    OutgoingMessage,
    PermanentFailure,
    ProviderReceipt,
    ProviderUnavailable,
)
from activities.channels.outbox import OutboxTransport
from activities.exactly_once import MESSAGE_CLAIMED, PROVIDER_UNAVAILABLE
from activities.notify import LEASE_MARGIN, NotificationActivities
from storage import Ledger, MessageState, open_ledger
from tests.factories import make_shipment
from trackflow.contracts import SendBatch, SendReport
from trackflow.effects import AlertKind, SendNotification
from trackflow.messages import Brand, MessageContext
from trackflow.models import Channel, Trigger
from trackflow.settings import Settings

SHIPMENT = make_shipment()
ABOUT = MessageContext.of(SHIPMENT)
BRAND = Brand(store_name="Acme")
EMAIL = SendNotification(
    idempotency_key=f"{SHIPMENT.tracking_number}/1001:out_for_delivery:0:email",
    trigger=Trigger.OUT_FOR_DELIVERY,
    channel=Channel.EMAIL,
    to="ada@example.com",
)
SMS = SendNotification(
    idempotency_key=f"{SHIPMENT.tracking_number}/1001:out_for_delivery:0:sms",
    trigger=Trigger.OUT_FOR_DELIVERY,
    channel=Channel.SMS,
    to="+15025550123",
)
BATCH = SendBatch(about=ABOUT, sends=[EMAIL, SMS])


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    opened = open_ledger(str(tmp_path / "ledger.sqlite3"))
    try:
        yield opened
    finally:
        await opened.close()


@dataclass
class Provider:
    """A provider double for one channel; `during_send` runs inside the provider call."""

    name: str
    send_error: Exception | None = None
    find_error: Exception | None = None
    sent: list[OutgoingMessage] = field(default_factory=list)
    seen_while_sending: list[MessageState | None] = field(default_factory=list)
    ledger: Ledger | None = None

    async def send(self, message: OutgoingMessage) -> ProviderReceipt:
        if self.ledger is not None:
            self.seen_while_sending.append(await self.ledger.state(message.idempotency_key))
        if self.send_error is not None:
            raise self.send_error
        self.sent.append(message)
        return ProviderReceipt(
            transport=self.name,
            provider_message_id=f"{self.name}-{len(self.sent)}",
            accepted_at=datetime.now(UTC),
        )

    async def find(self, message: OutgoingMessage, since: datetime) -> ProviderReceipt | None:
        if self.find_error is not None:
            raise self.find_error
        return None


async def run(activities: NotificationActivities, batch: SendBatch = BATCH) -> SendReport:
    result: SendReport = await ActivityEnvironment().run(activities.send_notifications, batch)
    return result


async def test_every_channel_goes_once_through_the_outbox_by_default(ledger: Ledger) -> None:
    activities = NotificationActivities(ledger, brand=BRAND)

    first = await run(activities)
    again = await run(activities)

    assert [(r.idempotency_key, r.transport, r.already_sent) for r in first.receipts] == [
        (EMAIL.idempotency_key, "outbox", False),
        (SMS.idempotency_key, "outbox", False),
    ]
    assert [r.already_sent for r in again.receipts] == [True, True]
    assert [r.sent_at for r in again.receipts] == [r.sent_at for r in first.receipts]
    stored = await ledger.list(SHIPMENT.tracking_number)
    assert [(r.channel, r.trigger, r.to, r.transport) for r in stored] == [
        ("email", "out_for_delivery", "ada@example.com", "outbox"),
        ("sms", "out_for_delivery", "+15025550123", "outbox"),
    ]
    assert stored[0].subject and stored[0].html and "Acme" in stored[1].body


async def test_each_channel_goes_through_its_own_transport_under_a_lease(ledger: Ledger) -> None:
    email, sms = Provider("mail", ledger=ledger), Provider("texts", ledger=ledger)
    activities = NotificationActivities(ledger, {Channel.EMAIL: email, Channel.SMS: sms}, BRAND)

    report = await run(activities)

    assert [r.transport for r in report.receipts] == ["mail", "texts"]
    assert [m.idempotency_key for m in email.sent] == [EMAIL.idempotency_key]
    assert [m.to for m in sms.sent] == [SMS.to]
    assert email.sent[0].subject and email.sent[0].html and not sms.sent[0].html
    # Inside the provider call the row is claimed for longer than the attempt can run.
    claimed = email.seen_while_sending[0]
    assert claimed is not None and claimed.status == "sending"
    assert claimed.lease_until is not None and claimed.claimed_at is not None
    timeout = ActivityEnvironment.default_info().start_to_close_timeout
    assert timeout is not None
    assert claimed.lease_until - claimed.claimed_at == timeout + LEASE_MARGIN
    stored = await ledger.get(SMS.idempotency_key)
    assert stored is not None and stored.provider_message_id == "texts-1"


async def test_a_permanent_refusal_is_a_receipt_with_its_code_and_the_other_channel_goes(
    ledger: Ledger,
) -> None:
    email = Provider("sendgrid", send_error=PermanentFailure("400", "invalid To address"))
    sms = Provider("twilio")
    activities = NotificationActivities(ledger, {Channel.EMAIL: email, Channel.SMS: sms}, BRAND)

    report = await run(activities)
    again = await run(activities)

    assert [r.transport for r in report.receipts] == ["sendgrid:failed:400", "twilio"]
    assert [r.transport for r in again.receipts] == ["sendgrid:failed:400", "twilio"]
    assert len(sms.sent) == 1
    failed = await ledger.state(EMAIL.idempotency_key)
    assert failed is not None and (failed.status, failed.error_code) == ("failed", "400")


async def test_an_unavailable_provider_fails_the_attempt_after_the_other_channel_went(
    ledger: Ledger,
) -> None:
    email = Provider("sendgrid", send_error=ProviderUnavailable("503", 20, may_have_sent=False))
    sms = Provider("twilio")
    activities = NotificationActivities(ledger, {Channel.EMAIL: email, Channel.SMS: sms}, BRAND)

    with pytest.raises(ApplicationError) as unavailable:
        await run(activities)
    assert unavailable.value.type == PROVIDER_UNAVAILABLE
    assert unavailable.value.next_retry_delay == timedelta(seconds=20)
    assert len(sms.sent) == 1 and email.sent == []

    email.send_error = None  # the retry, once SendGrid is back
    report = await run(activities)
    assert [(r.transport, r.already_sent) for r in report.receipts] == [
        ("sendgrid", False),
        ("twilio", True),
    ]
    assert len(email.sent) == 1 and len(sms.sent) == 1


async def test_a_message_claimed_by_a_live_attempt_waits_and_the_other_channel_goes(
    ledger: Ledger,
) -> None:
    await ledger.claim(EMAIL.idempotency_key, "other-worker", timedelta(minutes=1))
    activities = NotificationActivities(ledger, brand=BRAND)

    with pytest.raises(ApplicationError) as claimed:
        await run(activities)

    assert claimed.value.type == MESSAGE_CLAIMED and not claimed.value.non_retryable
    assert claimed.value.next_retry_delay is not None
    assert [r.channel for r in await ledger.list()] == ["sms"]


async def test_suppressed_addresses_are_not_sent_for_any_shipment_of_the_customer(
    ledger: Ledger,
) -> None:
    await ledger.suppress("Acme", "sms", "+1 (502) 555-0123", "sms_stop")
    await ledger.suppress("Other store", "email", "ada@example.com", "bounced")
    sms = Provider("twilio")
    activities = NotificationActivities(ledger, {Channel.SMS: sms}, BRAND)

    report = await run(activities)

    assert [r.transport for r in report.receipts] == ["outbox", "suppressed:sms_stop"]
    assert sms.sent == []
    state = await ledger.state(SMS.idempotency_key)
    assert state is not None and (state.status, state.error_code) == ("suppressed", "sms_stop")
    assert [r.channel for r in await ledger.list()] == ["email"]


async def test_a_message_nobody_can_tell_about_becomes_uncertain_with_one_alert(
    ledger: Ledger,
) -> None:
    # A worker killed inside SendGrid's call left the email claimed; its lease has run out.
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    await ledger.claim(EMAIL.idempotency_key, "killed-worker", timedelta(seconds=35), now=long_ago)
    email = Provider("sendgrid", find_error=CannotTell("no Event Webhook event for the key"))
    activities = NotificationActivities(ledger, {Channel.EMAIL: email}, BRAND)

    report = await run(activities)
    again = await run(activities)

    assert [r.transport for r in report.receipts] == ["sendgrid:uncertain", "outbox"]
    assert [r.already_sent for r in again.receipts] == [True, True]
    assert email.sent == []
    alerts = [s for s in await ledger.states() if s.kind == "alert"]
    assert len(alerts) == 1
    assert (alerts[0].trigger, alerts[0].tracking_number) == (
        AlertKind.UNCERTAIN_SEND.value,
        SHIPMENT.tracking_number,
    )
    assert alerts[0].subject and SHIPMENT.tracking_number in alerts[0].subject
    state = await ledger.state(EMAIL.idempotency_key)
    assert state is not None and state.status == "uncertain"


async def test_transports_follow_the_settings(ledger: Ledger, tmp_path: Path) -> None:
    outbox_only = transports_for(Settings(data_dir=tmp_path), ledger)
    assert {c: t.name for c, t in outbox_only.items()} == {
        Channel.EMAIL: "outbox",
        Channel.SMS: "outbox",
    }
    assert isinstance(outbox_only[Channel.EMAIL], OutboxTransport)


async def test_provider_credentials_switch_their_channel_from_the_outbox(
    ledger: Ledger, tmp_path: Path
) -> None:
    email_only = transports_for(
        Settings(data_dir=tmp_path, sendgrid_api_key="SG.test", email_from="Acme <a@acme.test>"),
        ledger,
    )
    assert {c: t.name for c, t in email_only.items()} == {
        Channel.EMAIL: "sendgrid",
        Channel.SMS: "outbox",
    }
    both = transports_for(
        Settings(
            data_dir=tmp_path,
            sendgrid_api_key="SG.test",
            email_from="a@acme.test",
            twilio_account_sid="AC" + "0" * 32,
            twilio_auth_token="token",
            twilio_from="+15005550006",
        ),
        ledger,
    )
    assert {c: t.name for c, t in both.items()} == {
        Channel.EMAIL: "sendgrid",
        Channel.SMS: "twilio",
    }


async def test_a_slow_provider_call_lengthens_the_lease(ledger: Ledger) -> None:
    email = Provider("mail", ledger=ledger)
    activities = NotificationActivities(
        ledger, {Channel.EMAIL: email}, BRAND, provider_timeout=timedelta(seconds=60)
    )

    await run(activities, SendBatch(about=ABOUT, sends=[EMAIL]))

    claimed = email.seen_while_sending[0]
    assert claimed is not None and claimed.lease_until and claimed.claimed_at
    timeout = ActivityEnvironment.default_info().start_to_close_timeout
    assert timeout is not None
    assert claimed.lease_until - claimed.claimed_at == timeout + timedelta(seconds=65)
