"""`trackflow shipment show` lists each message as its provider saw it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starters.render import format_shipment
from storage import MessageState
from tests.factories import ANY_TIME_POLICY, make_shipment
from trackflow.policy import ShipmentState, view

AT = datetime(2026, 12, 1, 14, 5, tzinfo=UTC)


def _row(**values: Any) -> MessageState:
    base: dict[str, Any] = {
        "idempotency_key": "1Z999AA10123456784/1001:in_transit:1:email",
        "status": "sent",
        "kind": "message",
        "tracking_number": "1Z999AA10123456784",
        "order_id": "1001",
        "trigger": "in_transit",
        "exception": None,
        "channel": "email",
        "to": "ada@example.com",
        "subject": "On its way",
        "transport": "sendgrid",
        "provider_message_id": "msg-1",
        "owner": None,
        "lease_until": None,
        "attempts": 1,
        "claimed_at": AT,
        "sent_at": AT,
        "error_code": None,
        "error_detail": None,
        "delivery_status": None,
        "delivery_status_at": None,
        "delivered_at": None,
        "opened_at": None,
        "clicked_at": None,
    }
    return MessageState.model_validate(base | values)


def test_each_message_shows_provider_id_delivery_status_opens_clicks_and_errors() -> None:
    shipment = make_shipment()
    document = view(ShipmentState(), shipment, ANY_TIME_POLICY).public()
    rows = [
        _row(delivery_status="delivered", opened_at=AT, clicked_at=AT),
        _row(
            idempotency_key="1Z999AA10123456784/1001:in_transit:1:sms",
            channel="sms",
            transport="twilio",
            provider_message_id="SM123",
            status="failed",
            error_code="21610",
            error_detail="recipient replied STOP",
        ),
    ]
    lines = format_shipment(document, rows).splitlines()
    start = lines.index("deliveries (from the ledger):")
    assert lines[start + 1 : start + 3] == [
        "  email in_transit                   sent · via sendgrid msg-1 · delivered · "
        "opened 2026-12-01 14:05 · clicked 2026-12-01 14:05",
        "  sms   in_transit                   failed · via twilio SM123 · "
        "error 21610 (recipient replied STOP)",
    ]
    assert "deliveries (from the ledger):" not in format_shipment(document)
