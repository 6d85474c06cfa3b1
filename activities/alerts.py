"""The alert activity: tell the merchant's ops channel about a shipment that needs a human.

`Alerts` is the transport interface; `LedgerAlerts` records the alert in the notification
ledger only (the default, and what the ops view reads); activities.slack posts it to Slack.
Either way the ledger is keyed by the alert's idempotency key, so a retried activity or a
replayed workflow raises each alert once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from temporalio import activity

from activities.exactly_once import Once, perform_once
from storage import Ledger, LedgerRecord
from trackflow.effects import AlertKind, RaiseAlert
from trackflow.models import Model

ALERT_KIND = "alert"
ALERT_CHANNEL = "alert"
ALERT_RECIPIENT = "ops"

_TITLES = {
    AlertKind.LOST: "Package lost",
    AlertKind.PICKUP_GAP: "No carrier pickup",
    AlertKind.CARRIER_API_OUTAGE: "Carrier API outage",
    AlertKind.CARRIER_API_RECOVERED: "Carrier API recovered",
    AlertKind.UNCERTAIN_SEND: "Message may not have reached the provider (not resent)",
    AlertKind.PROVIDER_OUTAGE: "Provider outage",
    AlertKind.PROVIDER_RECOVERED: "Provider recovered",
    AlertKind.RETURN_OPENED: "Return requested",
    AlertKind.INVALID_TRACKING_NUMBER: "Tracking number looks wrong",
}


class AlertReceipt(Model):
    idempotency_key: str
    transport: str
    recorded_at: datetime
    already_recorded: bool = False


class Alerts(Protocol):
    """A transport that delivers one alert to ops and records it in the ledger under the
    alert's idempotency key (`kind="alert"`), returning the stored record."""

    name: str

    async def raise_alert(self, alert: RaiseAlert) -> LedgerRecord: ...


def alert_subject(alert: RaiseAlert) -> str:
    """One line: what happened, to which parcel and order."""
    title = _TITLES.get(alert.alert, alert.alert.value.replace("_", " "))
    return f"{title}: {alert.tracking_number} (order {alert.order_id})"


class LedgerAlerts:
    """Records the alert in the ledger and nothing else."""

    name = "ledger"

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def raise_alert(self, alert: RaiseAlert) -> LedgerRecord:
        record, _created = await self._ledger.record_once(
            LedgerRecord(
                idempotency_key=alert.idempotency_key,
                kind=ALERT_KIND,
                tracking_number=alert.tracking_number,
                order_id=alert.order_id,
                trigger=alert.alert.value,
                channel=ALERT_CHANNEL,
                to=ALERT_RECIPIENT,
                subject=alert_subject(alert),
                body=alert.summary,
                transport=self.name,
                sent_at=datetime.now(UTC),
            )
        )
        return record


class AlertActivities:
    def __init__(self, ledger: Ledger, alerts: Alerts) -> None:
        self._ledger = ledger
        self._alerts = alerts

    @activity.defn(name="raise_alert")
    async def raise_alert(self, alert: RaiseAlert) -> AlertReceipt:
        done = await perform_once(
            self._ledger,
            alert.idempotency_key,
            ALERT_KIND,
            lambda: self._alerts.raise_alert(alert),
        )
        return _receipt(done)

    @activity.defn(name="record_alert")
    async def record_alert(self, alert: RaiseAlert) -> AlertReceipt:
        """The ledger and the worker's log only: for alerts about the alert channel itself."""
        done = await perform_once(
            self._ledger,
            alert.idempotency_key,
            ALERT_KIND,
            lambda: LedgerAlerts(self._ledger).raise_alert(alert),
        )
        if not done.already_recorded:
            activity.logger.warning("%s — %s", alert_subject(alert), alert.summary)
        return _receipt(done)


def _receipt(done: Once) -> AlertReceipt:
    return AlertReceipt(
        idempotency_key=done.record.idempotency_key,
        transport=done.record.transport,
        recorded_at=done.record.sent_at,
        already_recorded=done.already_recorded,
    )
