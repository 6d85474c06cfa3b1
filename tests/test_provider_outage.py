"""A message provider failing longer than the policy allows: one alert, then one recovery note."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.channels.base import ProviderUnavailable
from activities.notify import NotificationActivities
from storage import Ledger, open_ledger
from tests.test_notify import BATCH, BRAND, Provider, run
from trackflow import api_health
from trackflow.api_health import ApiHealth
from trackflow.effects import AlertKind
from trackflow.models import Channel
from trackflow.tracking_policy import TrackingPolicy

POLICY = TrackingPolicy()
T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


def test_a_message_provider_outage_alerts_after_the_policys_minutes_and_recovers_once() -> None:
    health = ApiHealth(provider="twilio")
    for minute in range(3):
        health = api_health.on_outcome(health, False, "503", T0 + timedelta(minutes=minute)).health
    assert api_health.outage_due(health, POLICY) == T0 + POLICY.provider_outage_after
    early = api_health.on_time(health, POLICY, T0 + POLICY.provider_outage_after / 2)
    assert early.alerts == []
    late = api_health.on_time(health, POLICY, T0 + POLICY.provider_outage_after)
    [outage] = late.alerts
    assert (outage.alert, outage.idempotency_key) == (
        AlertKind.PROVIDER_OUTAGE,
        "provider:twilio:provider_outage:1",
    )
    assert "twilio API failing since 2026-12-01 09:00 UTC (3 failed calls; last: 503)" in (
        outage.summary
    )
    assert api_health.on_time(late.health, POLICY, T0 + timedelta(hours=5)).alerts == []
    [recovered] = api_health.on_outcome(late.health, True, None, T0 + timedelta(hours=6)).alerts
    assert recovered.alert == AlertKind.PROVIDER_RECOVERED
    # A carrier API keeps its own threshold and alert kinds.
    carrier = api_health.on_outcome(ApiHealth(provider="easypost"), False, "500", T0).health
    assert api_health.outage_due(carrier, POLICY) == T0 + POLICY.carrier_api_outage_after


@dataclass
class Reports:
    seen: list[tuple[str, bool, str | None]] = field(default_factory=list)

    async def report(self, provider: str, ok: bool, detail: str | None = None) -> None:
        self.seen.append((provider, ok, detail))


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    opened = open_ledger(str(tmp_path / "ledger.sqlite3"))
    try:
        yield opened
    finally:
        await opened.close()


async def test_the_send_activity_reports_a_providers_failures_and_its_recovery(
    ledger: Ledger,
) -> None:
    twilio = Provider("twilio", send_error=ProviderUnavailable("503 Service Unavailable"))
    reports = Reports()
    activities = NotificationActivities(
        ledger, {Channel.SMS: twilio}, BRAND, health=reports, lease=timedelta(seconds=0)
    )
    with pytest.raises(ApplicationError):
        await run(activities, BATCH)
    twilio.send_error = None
    await run(activities, BATCH)
    assert [(provider, ok) for provider, ok, _ in reports.seen] == [
        ("twilio", False),
        ("twilio", True),
    ]
    assert "503 Service Unavailable" in (reports.seen[0][2] or "")
