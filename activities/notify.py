"""The send activity: render the message, hand it to a transport, record it in the ledger.

The ledger is keyed by the business idempotency key (shipment + trigger + episode +
channel), so a retried activity, a replayed workflow or a restarted worker never
delivers the same message twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from temporalio import activity

from activities.exactly_once import perform_once
from activities.ledger import Ledger, LedgerRecord
from trackflow.contracts import DeliveryReceipt, SendBatch, SendReport
from trackflow.effects import SendNotification
from trackflow.messages import Brand, MessageContext, RenderedMessage, render


class Notifier(Protocol):
    """A transport that delivers one rendered message and records it under its key."""

    name: str

    async def deliver(
        self, about: MessageContext, send: SendNotification, message: RenderedMessage
    ) -> LedgerRecord: ...


class OutboxNotifier:
    """Delivers into the local outbox (the ledger itself): the default without provider keys."""

    name = "outbox"

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def deliver(
        self, about: MessageContext, send: SendNotification, message: RenderedMessage
    ) -> LedgerRecord:
        record, _created = await self._ledger.record_once(
            LedgerRecord(
                idempotency_key=send.idempotency_key,
                tracking_number=about.tracking_number,
                order_id=about.order_id,
                trigger=send.trigger.value,
                exception=send.exception.value if send.exception else None,
                channel=send.channel.value,
                to=message.to,
                subject=message.subject,
                body=message.body,
                html=message.html,
                transport=self.name,
                sent_at=datetime.now(UTC),
            )
        )
        return record


class NotificationActivities:
    def __init__(self, ledger: Ledger, notifier: Notifier, brand: Brand) -> None:
        self._ledger = ledger
        self._notifier = notifier
        self._brand = brand

    @activity.defn(name="send_notifications")
    async def send_notifications(self, batch: SendBatch) -> SendReport:
        """Every channel of one decision; each exactly once by its own key, so a retry after
        one channel got through sends only the others."""
        return SendReport(receipts=[await self._send_once(batch.about, s) for s in batch.sends])

    async def _send_once(self, about: MessageContext, send: SendNotification) -> DeliveryReceipt:
        done = await perform_once(
            self._ledger,
            send.idempotency_key,
            "message",
            lambda: self._notifier.deliver(about, send, render(about, send, self._brand)),
        )
        return DeliveryReceipt(
            idempotency_key=done.record.idempotency_key,
            transport=done.record.transport,
            sent_at=done.record.sent_at,
            already_sent=done.already_recorded,
        )
