"""Consent rules, table-driven: SMS keywords, which SendGrid events suppress an address, and
the check before every send."""

from __future__ import annotations

import pytest

from trackflow.consent import (
    REASON_WORDS,
    ConsentChange,
    SmsKeyword,
    SuppressionReason,
    describe,
    email_event_consent,
    help_text,
    inbound_sms,
    may_send,
    sms_keyword,
)
from trackflow.models import Channel

HELP = "Acme: order tracking updates. Help: support@acme.test. Reply STOP to opt out."


@pytest.mark.parametrize(
    ("body", "keyword"),
    [
        ("STOP", SmsKeyword.STOP),
        ("stop", SmsKeyword.STOP),
        ("  Stop.  ", SmsKeyword.STOP),
        ("STOP!", SmsKeyword.STOP),
        ("UNSUBSCRIBE", SmsKeyword.STOP),
        ("cancel", SmsKeyword.STOP),
        ("End", SmsKeyword.STOP),
        ("QUIT", SmsKeyword.STOP),
        ("STOPALL", SmsKeyword.STOP),  # Twilio honours these three by default as well
        ("revoke", SmsKeyword.STOP),
        ("OptOut", SmsKeyword.STOP),
        ("START", SmsKeyword.START),
        ("unstop", SmsKeyword.START),
        ("Yes", SmsKeyword.START),
        ("HELP", SmsKeyword.HELP),
        ("info", SmsKeyword.HELP),
        ("please stop texting me", None),  # not a keyword at Twilio either
        ("STOP IT", None),
        ("", None),
        ("where is my order?", None),
        ("S T O P", None),
    ],
)
def test_sms_keywords(body: str, keyword: SmsKeyword | None) -> None:
    assert sms_keyword(body) is keyword


@pytest.mark.parametrize(
    ("body", "change", "reason", "reply"),
    [
        ("STOP", ConsentChange.SUPPRESS, SuppressionReason.SMS_STOP, None),
        ("quit", ConsentChange.SUPPRESS, SuppressionReason.SMS_STOP, None),
        ("START", ConsentChange.LIFT, SuppressionReason.SMS_STOP, None),
        ("UNSTOP", ConsentChange.LIFT, SuppressionReason.SMS_STOP, None),
        ("HELP", None, None, HELP),
        ("thanks!", None, None, None),
    ],
)
def test_inbound_sms_actions(
    body: str,
    change: ConsentChange | None,
    reason: SuppressionReason | None,
    reply: str | None,
) -> None:
    action = inbound_sms(body, HELP)
    assert (action.change, action.reason, action.reply) == (change, reason, reply)
    assert action.why


def test_help_text_names_the_store_a_contact_and_how_to_stop() -> None:
    text = help_text("Acme", support_email="support@acme.test", support_phone="+15025550100")
    assert text == HELP
    assert help_text("Acme") == "Acme: order tracking updates. Reply STOP to opt out."
    assert len(help_text("Acme", support_url="https://acme.test/help")) <= 160


@pytest.mark.parametrize(
    ("event", "reason", "kind", "change", "suppression"),
    [
        ("bounce", "550 5.1.1 no such user", "bounce", ConsentChange.SUPPRESS, "bounced"),
        ("bounce", "550 no such user", None, ConsentChange.SUPPRESS, "bounced"),
        ("bounce", "421 try later", "blocked", None, None),  # a block is temporary
        ("dropped", "Bounced Address", None, ConsentChange.SUPPRESS, "bounced"),
        ("dropped", "Spam Reporting Address", None, ConsentChange.SUPPRESS, "spam_report"),
        ("dropped", "Unsubscribed Address", None, ConsentChange.SUPPRESS, "unsubscribed"),
        ("dropped", "Invalid SMTPAPI header", None, None, None),
        ("dropped", "Spam Content", None, None, None),  # the message, not the address
        ("dropped", None, None, None, None),
        ("spamreport", None, None, ConsentChange.SUPPRESS, "spam_report"),
        ("unsubscribe", None, None, ConsentChange.SUPPRESS, "unsubscribed"),
        ("group_unsubscribe", None, None, ConsentChange.SUPPRESS, "unsubscribed"),
        ("group_resubscribe", None, None, ConsentChange.LIFT, "unsubscribed"),
        ("processed", None, None, None, None),
        ("deferred", "400 try again later", None, None, None),
        ("delivered", None, None, None, None),
        ("open", None, None, None, None),
        ("click", None, None, None, None),
        ("something_new", None, None, None, None),
    ],
)
def test_email_events_and_consent(
    event: str,
    reason: str | None,
    kind: str | None,
    change: ConsentChange | None,
    suppression: str | None,
) -> None:
    consent = email_event_consent(event, reason, kind)
    assert consent.change == change
    assert consent.reason == (SuppressionReason(suppression) if suppression else None)
    assert consent.why  # always says why, in words


@pytest.mark.parametrize(
    ("channel", "address", "stored", "allowed", "why"),
    [
        (Channel.EMAIL, "ada@example.com", None, True, "email to this address is not suppressed"),
        ("sms", "+15025550123", None, True, "sms to this address is not suppressed"),
        (
            Channel.EMAIL,
            "ada@example.com",
            "bounced",
            False,
            "email suppressed: the address bounced",
        ),
        (Channel.EMAIL, "ada@example.com", "spam_report", False, "reported one of the store's"),
        (Channel.EMAIL, "ada@example.com", "unsubscribed", False, "unsubscribed from the store's"),
        (
            Channel.SMS,
            "+15025550123",
            "sms_stop",
            False,
            "sms suppressed: the customer replied STOP",
        ),
        (Channel.SMS, "+15025550123", "carrier_block", False, "sms suppressed: carrier_block"),
        (Channel.EMAIL, None, None, False, "no email address for this customer"),
        (Channel.SMS, "  ", None, False, "no phone number for this customer"),
    ],
)
def test_may_send(
    channel: Channel | str, address: str | None, stored: str | None, allowed: bool, why: str
) -> None:
    ok, reason = may_send(channel, address, stored)
    assert ok is allowed
    assert why in reason


def test_every_reason_has_words() -> None:
    assert set(REASON_WORDS) == set(SuppressionReason)
    assert describe("sms_stop") == REASON_WORDS[SuppressionReason.SMS_STOP]
    assert describe("other") == "other"
