"""SendOutcome: how a message went, typed; its display line derived, never parsed back (but
for a receipt recorded before it carried the typed value)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from activities.exactly_once import Delivery
from activities.notify import receipt_for
from trackflow.contracts import DeliveryReceipt
from trackflow.send_outcome import SendOutcome, SendStatus, ledger_status

AT = datetime(2026, 11, 20, 12, tzinfo=UTC)
OUTCOMES = [
    (SendOutcome.of("sent", "outbox"), "outbox"),
    (SendOutcome.of("sent", "sendgrid"), "sendgrid"),
    (SendOutcome.of("sent", "shadow"), "shadow"),
    (SendOutcome.of("failed", "sendgrid", "400"), "sendgrid:failed:400"),
    (SendOutcome.of("suppressed", "twilio", "sms_stop"), "suppressed:sms_stop"),
    (SendOutcome.of("uncertain", "sendgrid"), "sendgrid:uncertain"),
]


@pytest.mark.parametrize(("outcome", "display"), OUTCOMES, ids=[d for _, d in OUTCOMES])
def test_the_display_line_is_derived_from_the_typed_value(
    outcome: SendOutcome, display: str
) -> None:
    assert outcome.display == display
    assert outcome.went_out == (outcome.status is SendStatus.SENT)


def test_a_message_sent_in_shadow_mode_is_shadow_not_sent() -> None:
    shadow = SendOutcome.of("sent", "shadow")
    assert (shadow.status, shadow.went_out) == (SendStatus.SHADOW, False)


@pytest.mark.parametrize(
    ("status", "code"), [("sent", None), ("failed", "21610"), ("suppressed", "sms_stop")]
)
def test_the_receipt_carries_the_outcome_and_its_display(status: str, code: str | None) -> None:
    delivery = Delivery("k:sms", SendStatus(status), "twilio", None, AT, False, code, "+1502…")
    receipt = receipt_for(delivery)
    assert receipt.outcome == SendOutcome.of(status, "twilio", code)
    assert receipt.transport == receipt.send_outcome.display
    assert receipt.outcome.detail is None  # the provider's detail may quote the address


@pytest.mark.parametrize(("outcome", "display"), OUTCOMES, ids=[d for _, d in OUTCOMES])
def test_a_receipt_recorded_before_the_typed_outcome_decides_the_same(
    outcome: SendOutcome, display: str
) -> None:
    recorded = DeliveryReceipt(idempotency_key="k", transport=display, sent_at=AT)
    assert recorded.send_outcome.status == outcome.status
    assert recorded.send_outcome.display == display


@pytest.mark.parametrize(
    ("status", "transport", "expected"),
    [
        ("sent", "outbox", SendStatus.SENT),
        ("sent", "shadow", SendStatus.SHADOW),
        ("failed", "sendgrid", SendStatus.FAILED),
        ("suppressed", "twilio", SendStatus.SUPPRESSED),
        ("uncertain", "twilio", SendStatus.UNCERTAIN),
        ("claimed", "pending", None),
        (None, None, None),
    ],
)
def test_a_ledger_rows_columns_become_the_domains_status(
    status: str | None, transport: str | None, expected: SendStatus | None
) -> None:
    assert ledger_status(status, transport) is expected
