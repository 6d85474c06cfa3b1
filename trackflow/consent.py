"""Consent and suppression rules. Pure: no I/O, no clock.

What a customer's reply or a provider's feedback means for the next message:

* **SMS keywords** (an inbound text that is exactly one keyword, any case, surrounding blanks
  and a trailing ``.`` or ``!`` ignored). Opting out: STOP, UNSUBSCRIBE, CANCEL, END, QUIT --
  and STOPALL, REVOKE, OPTOUT, which Twilio's default opt-out handling also honours on long
  codes: Twilio then refuses every further message to that number from that sender (error
  21610), so trackflow mirrors every word Twilio acts on. Opting back in: START, UNSTOP, YES
  (Twilio lifts its block on START/UNSTOP; YES is the customary third). Help: HELP, INFO,
  answered with the brand's help text. Any other text changes nothing: a sentence that merely
  contains "stop" is not an opt-out at Twilio either, and consent must stay in step with it.
* **Email feedback** (SendGrid Event Webhook). An address is suppressed after a hard
  ``bounce``, a ``dropped`` message whose reason is a bounced, spam-reporting or unsubscribed
  address, a ``spamreport`` or an (``group_``)``unsubscribe``. A ``group_resubscribe`` lifts an
  unsubscription, never a bounce or a spam report (a lift names the one reason it removes),
  and only when it is newer than every event that asked for the suppression: events arrive
  late, retried or replayed, so their own time orders them, not their arrival.
* **Before every send**, :func:`may_send` answers whether the address may be contacted given
  the suppression on record for it (per merchant, for every shipment of that customer).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from trackflow.models import Channel


class SuppressionReason(StrEnum):
    """Why an address is on the merchant's suppression list (stored in the ledger)."""

    BOUNCED = "bounced"
    SPAM_REPORT = "spam_report"
    UNSUBSCRIBED = "unsubscribed"
    SMS_STOP = "sms_stop"


REASON_WORDS: dict[SuppressionReason, str] = {
    SuppressionReason.BOUNCED: "the address bounced: the receiving server says it does not exist",
    SuppressionReason.SPAM_REPORT: "the customer reported one of the store's emails as spam",
    SuppressionReason.UNSUBSCRIBED: "the customer unsubscribed from the store's emails",
    SuppressionReason.SMS_STOP: "the customer replied STOP to the store's texts",
}
"""Each reason in words, for the shipment view and logs."""


def describe(reason: str) -> str:
    """A stored reason in words (an unknown one as itself)."""
    try:
        return REASON_WORDS[SuppressionReason(reason)]
    except ValueError:
        return reason


# --- SMS keywords ----------------------------------------------------------------------------


class SmsKeyword(StrEnum):
    STOP = "stop"
    START = "start"
    HELP = "help"


OPT_OUT_WORDS = frozenset(
    {"STOP", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "STOPALL", "REVOKE", "OPTOUT"}
)
OPT_IN_WORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_WORDS = frozenset({"HELP", "INFO"})


def sms_keyword(body: str) -> SmsKeyword | None:
    """The keyword an inbound text is, or None for any other text."""
    word = body.strip().rstrip(".!").strip().upper()
    if word in OPT_OUT_WORDS:
        return SmsKeyword.STOP
    if word in OPT_IN_WORDS:
        return SmsKeyword.START
    if word in HELP_WORDS:
        return SmsKeyword.HELP
    return None


class ConsentChange(StrEnum):
    SUPPRESS = "suppress"
    LIFT = "lift"


@dataclass(frozen=True)
class InboundSmsAction:
    """What an inbound text does: change consent, and/or what to answer (TwiML body)."""

    keyword: SmsKeyword | None
    change: ConsentChange | None
    reason: SuppressionReason | None
    reply: str | None
    why: str


def inbound_sms(body: str, help_reply: str) -> InboundSmsAction:
    """The effect of one inbound text. STOP and START get no reply of ours: Twilio answers
    them itself (and would refuse our reply to a number that just opted out)."""
    return keyword_action(sms_keyword(body), help_reply)


def keyword_action(keyword: SmsKeyword | None, help_reply: str) -> InboundSmsAction:
    """What an inbound keyword does (see :func:`inbound_sms`)."""
    if keyword is SmsKeyword.STOP:
        return InboundSmsAction(
            keyword,
            ConsentChange.SUPPRESS,
            SuppressionReason.SMS_STOP,
            None,
            "opt-out keyword: no more texts to this number until it replies START",
        )
    if keyword is SmsKeyword.START:
        return InboundSmsAction(
            keyword,
            ConsentChange.LIFT,
            SuppressionReason.SMS_STOP,
            None,
            "opt-in keyword: texts to this number may resume",
        )
    if keyword is SmsKeyword.HELP:
        return InboundSmsAction(keyword, None, None, help_reply, "help keyword: answered")
    return InboundSmsAction(None, None, None, None, "not a keyword: consent unchanged")


def help_text(
    store_name: str,
    support_email: str | None = None,
    support_phone: str | None = None,
    support_url: str | None = None,
) -> str:
    """The HELP answer when the brand offers no text of its own: who is texting, how to reach
    a person, how to stop. Kept short (one SMS where the contacts allow)."""
    contacts = [c for c in (support_url, support_email, support_phone) if c]
    reach = f" Help: {contacts[0]}." if contacts else ""
    return f"{store_name}: order tracking updates.{reach} Reply STOP to opt out."


SMS_OPTED_OUT_ERROR = "21610"
"""Twilio: "Attempt to send to unsubscribed recipient" (the number replied STOP to us)."""


def sms_error_consent(error_code: str | None) -> InboundSmsAction | None:
    """A Twilio error that tells us about consent: 21610 means the number opted out at
    Twilio (perhaps before trackflow saw its STOP), so it is suppressed here too."""
    if (error_code or "").strip() != SMS_OPTED_OUT_ERROR:
        return None
    return InboundSmsAction(
        SmsKeyword.STOP,
        ConsentChange.SUPPRESS,
        SuppressionReason.SMS_STOP,
        None,
        "Twilio error 21610: the number replied STOP to this sender",
    )


# --- Email feedback --------------------------------------------------------------------------

_DROPPED_REASONS: dict[str, SuppressionReason] = {
    "bounced address": SuppressionReason.BOUNCED,
    "spam reporting address": SuppressionReason.SPAM_REPORT,
    "unsubscribed address": SuppressionReason.UNSUBSCRIBED,
}


@dataclass(frozen=True)
class EmailConsent:
    """What one SendGrid event means for the address it names."""

    change: ConsentChange | None
    reason: SuppressionReason | None
    why: str


def email_event_consent(
    event: str, reason: str | None = None, kind: str | None = None
) -> EmailConsent:
    """``event``, ``reason`` and ``type`` (``kind``) of a SendGrid event, read for consent."""
    name = event.strip().lower()
    if name == "bounce":
        if (kind or "bounce").strip().lower() == "blocked":
            return EmailConsent(
                None,
                None,
                "blocked (a temporary refusal by the receiving server): the address is kept",
            )
        return EmailConsent(
            ConsentChange.SUPPRESS,
            SuppressionReason.BOUNCED,
            "hard bounce: the receiving server says the address does not exist",
        )
    if name == "dropped":
        matched = _DROPPED_REASONS.get((reason or "").strip().lower())
        if matched is None:
            return EmailConsent(
                None, None, f"dropped for {reason or 'an unstated reason'}: the address is kept"
            )
        return EmailConsent(
            ConsentChange.SUPPRESS,
            matched,
            f"dropped by SendGrid because the address is on its list: {reason}",
        )
    if name == "spamreport":
        return EmailConsent(
            ConsentChange.SUPPRESS,
            SuppressionReason.SPAM_REPORT,
            "the customer marked the email as spam",
        )
    if name in ("unsubscribe", "group_unsubscribe"):
        return EmailConsent(
            ConsentChange.SUPPRESS,
            SuppressionReason.UNSUBSCRIBED,
            "the customer unsubscribed (link or List-Unsubscribe)",
        )
    if name == "group_resubscribe":
        return EmailConsent(
            ConsentChange.LIFT,
            SuppressionReason.UNSUBSCRIBED,
            "the customer resubscribed: an unsubscription is lifted (a bounce or spam report "
            "is not)",
        )
    return EmailConsent(None, None, f"{name or 'an event'} says nothing about consent")


# --- Before every send -----------------------------------------------------------------------


def may_send(
    channel: Channel | str, address: str | None, suppression_reason: str | None
) -> tuple[bool, str]:
    """Whether a message on ``channel`` may go to ``address``, given the suppression on record
    for (merchant, channel, address) -- None when there is none -- and why, in words."""
    kind = Channel(channel)
    if not address or not address.strip():
        what = "email address" if kind is Channel.EMAIL else "phone number"
        return False, f"no {what} for this customer"
    if suppression_reason is None:
        return True, f"{kind.value} to this address is not suppressed"
    try:
        reason = SuppressionReason(suppression_reason)
    except ValueError:
        return False, f"{kind.value} suppressed: {suppression_reason}"
    return False, f"{kind.value} suppressed: {REASON_WORDS[reason]}"
