"""The helpdesk activity: tag the customer so support agents see what we already told them.

`Helpdesk` is the interface; `LedgerHelpdesk` records the tag in the notification ledger
only. Gorgias and Zendesk come later behind the same interface. The ledger is keyed by the
tag's idempotency key, so a retried activity or a replayed workflow tags once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from temporalio import activity

from activities.exactly_once import Once, perform_once
from activities.ledger import Ledger, LedgerRecord
from trackflow.effects import TagHelpdesk
from trackflow.models import Model

HELPDESK_KIND = "helpdesk"
HELPDESK_CHANNEL = "helpdesk"
UNKNOWN_CUSTOMER = "unknown"


class HelpdeskReceipt(Model):
    idempotency_key: str
    transport: str
    recorded_at: datetime
    already_recorded: bool = False


class Helpdesk(Protocol):
    """Tags one customer and records it in the ledger under the tag's idempotency key
    (`kind="helpdesk"`), returning the stored record.

    A real helpdesk (Gorgias, Zendesk) does it in two steps: find the customer by email,
    else by phone; then add the tag to the customer record where the helpdesk has customer
    tags, and to the customer's open ticket(s), with the note as an internal note. Adding a
    tag is a set union, so a retry after a crash between the call and the ledger write is
    harmless. No customer found is not an error: record it with no provider id, so the
    workflow does not retry a tag that has no one to go to. Put the helpdesk's customer or
    ticket id in `provider_message_id`.
    """

    name: str

    async def tag_customer(self, tag: TagHelpdesk) -> LedgerRecord: ...


def helpdesk_recipient(tag: TagHelpdesk) -> str:
    """Who the tag is for: the email, else the phone, else "unknown"."""
    return tag.customer_email or tag.customer_phone or UNKNOWN_CUSTOMER


class LedgerHelpdesk:
    """Records the tag in the ledger and nothing else."""

    name = "ledger"

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def tag_customer(self, tag: TagHelpdesk) -> LedgerRecord:
        record, _created = await self._ledger.record_once(
            LedgerRecord(
                idempotency_key=tag.idempotency_key,
                kind=HELPDESK_KIND,
                tracking_number=tag.tracking_number,
                order_id=tag.order_id,
                trigger=tag.tag,
                channel=HELPDESK_CHANNEL,
                to=helpdesk_recipient(tag),
                subject=f"tag {tag.tag}",
                body=tag.note,
                transport=self.name,
                sent_at=datetime.now(UTC),
            )
        )
        return record


class HelpdeskActivities:
    def __init__(self, ledger: Ledger, helpdesk: Helpdesk) -> None:
        self._ledger = ledger
        self._helpdesk = helpdesk

    @activity.defn(name="tag_helpdesk")
    async def tag_helpdesk(self, tag: TagHelpdesk) -> HelpdeskReceipt:
        done = await perform_once(
            self._ledger,
            tag.idempotency_key,
            HELPDESK_KIND,
            lambda: self._helpdesk.tag_customer(tag),
        )
        return _receipt(done)


def _receipt(done: Once) -> HelpdeskReceipt:
    return HelpdeskReceipt(
        idempotency_key=done.record.idempotency_key,
        transport=done.record.transport,
        recorded_at=done.record.sent_at,
        already_recorded=done.already_recorded,
    )
