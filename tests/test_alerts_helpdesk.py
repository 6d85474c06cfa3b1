"""The alert and helpdesk activities against the real SQLite ledger, run in an activity
environment: each effect is recorded once per key, and a repeat never reaches the transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.alerts import AlertActivities, AlertReceipt, Alerts, LedgerAlerts
from activities.helpdesk import Helpdesk, HelpdeskActivities, HelpdeskReceipt, LedgerHelpdesk
from storage import Ledger, LedgerRecord, open_ledger
from trackflow.effects import LOST_PACKAGE_TAG, AlertKind, RaiseAlert, TagHelpdesk

T0 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    opened = open_ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    try:
        yield opened
    finally:
        await opened.close()


def lost_alert(key: str = "1Z999:alert:lost:1", tracking_number: str = "1Z999") -> RaiseAlert:
    return RaiseAlert(
        idempotency_key=key,
        alert=AlertKind.LOST,
        tracking_number=tracking_number,
        order_id="#1001",
        summary="No carrier scan for 7 days after in transit.\nCustomer was told.",
        raised_at=T0,
    )


def lost_tag(
    email: str | None = "ada@example.com",
    phone: str | None = "+15555550100",
    key: str = "1Z999:helpdesk:lost_package:1",
) -> TagHelpdesk:
    return TagHelpdesk(
        idempotency_key=key,
        tag=LOST_PACKAGE_TAG,
        customer_email=email,
        customer_phone=phone,
        tracking_number="1Z999",
        order_id="#1001",
        note="We told the customer the parcel looks lost and a replacement is on its way.",
    )


class CountingAlerts:
    """Our `Alerts` interface around the real ledger transport, counting the calls."""

    def __init__(self, inner: Alerts) -> None:
        self.name = inner.name
        self._inner = inner
        self.calls = 0

    async def raise_alert(self, alert: RaiseAlert) -> LedgerRecord:
        self.calls += 1
        return await self._inner.raise_alert(alert)


class CountingHelpdesk:
    """Our `Helpdesk` interface around the real ledger transport, counting the calls."""

    def __init__(self, inner: Helpdesk) -> None:
        self.name = inner.name
        self._inner = inner
        self.calls = 0

    async def tag_customer(self, tag: TagHelpdesk) -> LedgerRecord:
        self.calls += 1
        return await self._inner.tag_customer(tag)


async def test_alert_is_recorded_in_the_ledger(ledger: Ledger) -> None:
    activities = AlertActivities(ledger, LedgerAlerts(ledger))
    alert = lost_alert()

    receipt = await ActivityEnvironment().run(activities.raise_alert, alert)

    assert isinstance(receipt, AlertReceipt)
    assert receipt.idempotency_key == alert.idempotency_key
    assert receipt.transport == "ledger"
    assert receipt.already_recorded is False
    [record] = await ledger.list("1Z999")
    assert record.idempotency_key == alert.idempotency_key
    assert (record.kind, record.channel) == ("alert", "alert")
    assert record.trigger == "lost"
    assert record.to == "ops"
    assert record.body == alert.summary
    assert record.subject is not None
    assert "\n" not in record.subject
    assert "1Z999" in record.subject and "#1001" in record.subject
    assert record.transport == "ledger"
    assert (record.tracking_number, record.order_id) == ("1Z999", "#1001")
    assert record.sent_at == receipt.recorded_at
    assert record.sent_at.tzinfo is not None
    assert await ledger.list("another") == []


async def test_alert_activity_run_twice_records_once_and_calls_the_transport_once(
    ledger: Ledger,
) -> None:
    alerts = CountingAlerts(LedgerAlerts(ledger))
    activities = AlertActivities(ledger, alerts)
    env = ActivityEnvironment()

    first = await env.run(activities.raise_alert, lost_alert())
    second = await env.run(activities.raise_alert, lost_alert())

    assert alerts.calls == 1
    assert first.already_recorded is False
    assert second.already_recorded is True
    assert second.recorded_at == first.recorded_at
    assert second.idempotency_key == first.idempotency_key
    assert len(await ledger.list("1Z999")) == 1


async def test_ledger_alerts_record_once_even_when_called_again(ledger: Ledger) -> None:
    """Two attempts that both got past the lookup still leave one record: the first."""
    alerts = LedgerAlerts(ledger)

    first = await alerts.raise_alert(lost_alert())
    second = await alerts.raise_alert(lost_alert())

    assert second == first
    assert await ledger.list("1Z999") == [first]


async def test_each_alert_key_is_recorded(ledger: Ledger) -> None:
    activities = AlertActivities(ledger, LedgerAlerts(ledger))
    env = ActivityEnvironment()
    gap = lost_alert(key="1Z999:alert:pickup_gap").model_copy(
        update={"alert": AlertKind.PICKUP_GAP}
    )

    await env.run(activities.raise_alert, gap)
    await env.run(activities.raise_alert, lost_alert())

    records = await ledger.list("1Z999")
    assert [r.trigger for r in records] == ["pickup_gap", "lost"]


async def test_helpdesk_tag_is_recorded_for_the_email(ledger: Ledger) -> None:
    activities = HelpdeskActivities(ledger, LedgerHelpdesk(ledger))
    tag = lost_tag()

    receipt = await ActivityEnvironment().run(activities.tag_helpdesk, tag)

    assert isinstance(receipt, HelpdeskReceipt)
    assert receipt.idempotency_key == tag.idempotency_key
    assert receipt.transport == "ledger"
    assert receipt.already_recorded is False
    [record] = await ledger.list("1Z999")
    assert (record.kind, record.channel) == ("helpdesk", "helpdesk")
    assert record.trigger == LOST_PACKAGE_TAG
    assert record.to == "ada@example.com"
    assert record.subject == f"tag {LOST_PACKAGE_TAG}"
    assert record.body == tag.note
    assert record.transport == "ledger"
    assert (record.tracking_number, record.order_id) == ("1Z999", "#1001")
    assert record.sent_at == receipt.recorded_at


@pytest.mark.parametrize(
    ("email", "phone", "expected"),
    [
        (None, "+15555550100", "+15555550100"),
        ("", "+15555550100", "+15555550100"),
        (None, None, "unknown"),
    ],
)
async def test_helpdesk_tag_falls_back_to_the_phone(
    ledger: Ledger, email: str | None, phone: str | None, expected: str
) -> None:
    activities = HelpdeskActivities(ledger, LedgerHelpdesk(ledger))

    await ActivityEnvironment().run(activities.tag_helpdesk, lost_tag(email=email, phone=phone))

    [record] = await ledger.list("1Z999")
    assert record.to == expected


async def test_helpdesk_activity_run_twice_records_once_and_calls_the_helpdesk_once(
    ledger: Ledger,
) -> None:
    helpdesk = CountingHelpdesk(LedgerHelpdesk(ledger))
    activities = HelpdeskActivities(ledger, helpdesk)
    env = ActivityEnvironment()

    first = await env.run(activities.tag_helpdesk, lost_tag())
    second = await env.run(activities.tag_helpdesk, lost_tag())

    assert helpdesk.calls == 1
    assert first.already_recorded is False
    assert second.already_recorded is True
    assert second.recorded_at == first.recorded_at
    assert len(await ledger.list("1Z999")) == 1


async def test_alert_and_helpdesk_records_share_the_shipment_timeline(ledger: Ledger) -> None:
    env = ActivityEnvironment()
    await env.run(AlertActivities(ledger, LedgerAlerts(ledger)).raise_alert, lost_alert())
    await env.run(HelpdeskActivities(ledger, LedgerHelpdesk(ledger)).tag_helpdesk, lost_tag())

    records = await ledger.list("1Z999")
    assert [r.kind for r in records] == ["alert", "helpdesk"]


async def test_a_key_already_used_by_another_kind_fails_without_retry(ledger: Ledger) -> None:
    """Reusing a key across effects would silently drop one of them: fail loudly instead."""
    helpdesk = CountingHelpdesk(LedgerHelpdesk(ledger))
    await ActivityEnvironment().run(
        AlertActivities(ledger, LedgerAlerts(ledger)).raise_alert, lost_alert(key="shared")
    )

    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(
            HelpdeskActivities(ledger, helpdesk).tag_helpdesk, lost_tag(key="shared")
        )

    assert raised.value.non_retryable
    assert raised.value.type == "LedgerKeyCollision"
    assert helpdesk.calls == 0
