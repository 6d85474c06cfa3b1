"""The pure part of inbound tickets (trackflow.tickets): the customer index key and digest,
the already-notified rule, the tags and the agent's note."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from trackflow.models import CarrierStatus, Channel, ExceptionKind, Trigger
from trackflow.settings import Settings
from trackflow.shipment_state import (
    NextAction,
    NotificationView,
    Phase,
    ShipmentView,
    TimelineEntry,
)
from trackflow.tickets import (
    APP_SALT,
    TAG_ALREADY_NOTIFIED,
    TAG_WISMO,
    agent_note,
    already_notified,
    customer_digest,
    customer_digests,
    index_keys,
    ticket_tags,
    went_out,
    workflow_id_for_ticket,
)

T0 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
TICKET_AT = T0 + timedelta(hours=5)


def sent(
    trigger: Trigger,
    at: datetime = T0,
    *,
    outcome: str | None = "outbox",
    exception: ExceptionKind | None = None,
    channel: Channel = Channel.EMAIL,
) -> NotificationView:
    return NotificationView(
        trigger=trigger, channel=channel, exception=exception, sent_at=at, outcome=outcome
    )


def view(
    status: Phase = Phase.IN_TRANSIT,
    notifications: list[NotificationView] | None = None,
    **changes: Any,
) -> ShipmentView:
    fields: dict[str, Any] = {
        "workflow_id": "shipment-1Z999",
        "tracking_number": "1Z999",
        "order_id": "1001",
        "status": status,
        "carrier": "ups",
        "timezone": "America/New_York",
        "timeline": [
            TimelineEntry(
                status=CarrierStatus.IN_TRANSIT,
                occurred_at=T0 - timedelta(minutes=5),
                received_at=T0,
                description="Arrived at facility",
                location="Memphis, TN",
                effect="in_transit message",
            )
        ],
        "notifications": notifications or [],
        "waiting": [],
        "notes": [],
        "next_action": NextAction(
            kind="stale_check_in",
            due_at=T0 + timedelta(days=3),
            detail="check in if no scan for 3 days",
        ),
    }
    return ShipmentView(**(fields | changes))


# --- the customer index ---------------------------------------------------------------------


def test_the_digest_is_keyed_and_ignores_case_and_blanks() -> None:
    key = index_keys(Settings())[0]
    digest = customer_digest("Ada@Example.com ", key)
    assert digest == customer_digest("ada@example.com", key)
    assert "ada" not in digest and len(digest) == 64
    assert digest != customer_digest(
        "ada@example.com", index_keys(Settings(unsubscribe_secret="x"))[0]
    )
    assert digest != customer_digest("bob@example.com", key)


def test_index_keys_prefer_the_unsubscribe_secret_then_the_encryption_keys() -> None:
    no_secret = index_keys(Settings())
    assert len(no_secret) == 1  # the app salt only
    key_a = base64.b64encode(b"a" * 32).decode()
    key_b = base64.b64encode(b"b" * 32).decode()
    encrypted = index_keys(Settings(encryption_keys=f"k2:{key_b},k1:{key_a}"))
    assert len(encrypted) == 3 and encrypted[-1] == no_secret[0]
    both = index_keys(Settings(unsubscribe_secret="s3cret", encryption_keys=f"k1:{key_a}"))
    assert len(both) == 3
    assert both[1] == encrypted[1]  # k1 is looked up whichever key writes
    assert both[0] not in encrypted
    # Derived keys, never the secret itself.
    assert APP_SALT not in no_secret and b"s3cret" not in both


def test_a_lookup_tries_every_key() -> None:
    keys = index_keys(Settings(unsubscribe_secret="s3cret"))
    digests = customer_digests("ada@example.com", keys)
    assert digests == [customer_digest("ada@example.com", k) for k in keys]
    assert len(set(digests)) == 2


def test_ticket_workflow_id() -> None:
    assert workflow_id_for_ticket("gorgias", "123") == "ticket-gorgias-123"


# --- already notified -------------------------------------------------------------------------


def test_a_message_about_the_current_status_before_the_ticket() -> None:
    assert already_notified(view(notifications=[sent(Trigger.IN_TRANSIT)]), TICKET_AT)
    assert already_notified(view(notifications=[sent(Trigger.STALE)]), TICKET_AT)


def test_a_message_about_an_earlier_status_does_not_count() -> None:
    earlier = view(Phase.OUT_FOR_DELIVERY, [sent(Trigger.IN_TRANSIT)])
    assert not already_notified(earlier, TICKET_AT)


def test_a_message_sent_after_the_ticket_does_not_count() -> None:
    later = view(notifications=[sent(Trigger.IN_TRANSIT, TICKET_AT + timedelta(seconds=1))])
    assert not already_notified(later, TICKET_AT)
    assert already_notified(view(notifications=[sent(Trigger.IN_TRANSIT, TICKET_AT)]), TICKET_AT)


@pytest.mark.parametrize(
    "outcome", ["shadow", "suppressed:unsubscribed", "sendgrid:failed:400", "twilio:uncertain"]
)
def test_a_message_that_did_not_go_out_does_not_count(outcome: str) -> None:
    assert not went_out(sent(Trigger.IN_TRANSIT, outcome=outcome))
    assert not already_notified(
        view(notifications=[sent(Trigger.IN_TRANSIT, outcome=outcome)]), TICKET_AT
    )


@pytest.mark.parametrize("outcome", [None, "outbox", "sendgrid", "twilio", "klaviyo"])
def test_handed_to_a_channel_counts(outcome: str | None) -> None:
    assert went_out(sent(Trigger.IN_TRANSIT, outcome=outcome))


def test_an_exception_message_must_be_about_the_open_exception() -> None:
    weather = sent(Trigger.EXCEPTION, exception=ExceptionKind.WEATHER_DELAY)
    held = view(Phase.EXCEPTION, [weather], exception=ExceptionKind.HELD_AT_FACILITY)
    assert not already_notified(held, TICKET_AT)
    same = view(Phase.EXCEPTION, [weather], exception=ExceptionKind.WEATHER_DELAY)
    assert already_notified(same, TICKET_AT)


def test_returned_means_a_return_to_sender_message() -> None:
    returned = sent(Trigger.EXCEPTION, exception=ExceptionKind.RETURN_TO_SENDER)
    assert already_notified(view(Phase.RETURNED, [returned]), TICKET_AT)
    delay = sent(Trigger.EXCEPTION, exception=ExceptionKind.CARRIER_DELAY)
    assert not already_notified(view(Phase.RETURNED, [delay]), TICKET_AT)


@pytest.mark.parametrize(
    ("phase", "trigger"),
    [
        (Phase.LABEL_CREATED, Trigger.LABEL_CREATED),
        (Phase.OUT_FOR_DELIVERY, Trigger.OUT_FOR_DELIVERY),
        (Phase.DELIVERED, Trigger.DELIVERED),
        (Phase.LOST, Trigger.LOST),
    ],
)
def test_each_status_and_its_message(phase: Phase, trigger: Trigger) -> None:
    assert already_notified(view(phase, [sent(trigger)]), TICKET_AT)
    assert not already_notified(view(phase, [sent(Trigger.REVIEW_REQUEST)]), TICKET_AT)


def test_nothing_is_about_a_pending_shipment() -> None:
    assert not already_notified(view(Phase.PENDING, [sent(Trigger.IN_TRANSIT)]), TICKET_AT)


def test_tags() -> None:
    assert ticket_tags(True) == [TAG_WISMO, TAG_ALREADY_NOTIFIED] == ["wismo", "already_notified"]
    assert ticket_tags(False) == ticket_tags(None) == ["wismo"]


# --- the note ---------------------------------------------------------------------------------


def test_the_note_says_status_what_was_sent_next_and_the_link() -> None:
    shipment = view(
        notifications=[
            sent(Trigger.LABEL_CREATED, T0 - timedelta(days=1)),
            sent(Trigger.IN_TRANSIT, T0, channel=Channel.SMS, outcome="twilio"),
            sent(Trigger.IN_TRANSIT, T0, outcome="suppressed:unsubscribed"),
        ],
        estimated_delivery=date(2026, 11, 24),
    )
    note = agent_note(
        shipment,
        ticket_created_at=TICKET_AT,
        notified=True,
        tracking_url="https://www.ups.com/track?tracknum=1Z999",
    )
    lines = note.splitlines()
    assert lines[0] == "Trackflow · order 1001 · UPS 1Z999"
    assert (
        "Live status: in transit (last scan 2026-11-20 13:55 UTC: Arrived at facility, "
        "Memphis, TN)" in lines
    )
    assert "Estimated delivery: 2026-11-24" in lines
    assert "- label created by email, 2026-11-19 14:00 UTC (outbox)" in lines
    assert "- in transit by sms, 2026-11-20 14:00 UTC (twilio)" in lines
    assert not any("suppressed" in line for line in lines)  # did not go out
    assert any(line.startswith("Already notified: yes") for line in lines)
    assert "Next expected: check in if no scan for 3 days (by 2026-11-23 14:00 UTC)" in lines
    assert lines[-1] == "Tracking: https://www.ups.com/track?tracknum=1Z999"
    assert "ada" not in note.lower() and "@" not in note


def test_the_note_of_a_shipment_nobody_was_told_about() -> None:
    note = agent_note(
        view(Phase.EXCEPTION, exception=ExceptionKind.WEATHER_DELAY, timeline=[]),
        ticket_created_at=TICKET_AT,
        notified=False,
        tracking_url=None,
    )
    assert "Live status: exception (weather delay)" in note.splitlines()
    assert "Sent to the customer: nothing yet." in note
    assert "Already notified: no" in note
    assert "Tracking:" not in note
