"""Feedback from the customer-channel providers, normalized. Pure, no I/O.

* **SendGrid Event Webhook**: a JSON array of events (``processed``, ``delivered``,
  ``deferred``, ``bounce``, ``dropped``, ``open``, ``click``, ``spamreport``, ``unsubscribe``,
  ``group_unsubscribe``, ``group_resubscribe``). Custom args sent with the message come back as
  top-level keys of every event, so ``trackflow_key`` is the idempotency key. ``sg_event_id``
  is SendGrid's dedupe id ("unique for every event where present"); an event without one is
  deduplicated by a digest of its content. ``sg_message_id`` is the ``X-Message-Id`` the send
  answered, followed by ``.filter...``: the part before the first dot is the provider id.
  One malformed event is set aside (``rejected``), never the batch: SendGrid retries a whole
  batch for 24 hours on anything but a 2xx.
* **Twilio status callback**: a form post (``MessageSid``, ``MessageStatus``, ``ErrorCode``,
  ``To``, ``From``...) to the ``StatusCallback`` URL given at send time, whose ``key`` query
  parameter is the idempotency key. No event id and no time: the dedupe id is the message and
  its status (Twilio may repeat a callback, never a status with another meaning), the time is
  when it arrived.
* **Twilio inbound message**: a form post (``MessageSid``, ``From``, ``To``, ``Body``, and with
  Advanced Opt-Out ``OptOutType`` = STOP / START / HELP, which wins over our own reading of
  the body since Twilio acted on it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict

from trackflow.consent import SmsKeyword, sms_keyword
from trackflow.models import Channel
from trackflow.sources.normalized import SourcePayloadError

IDEMPOTENCY_ARG = "trackflow_key"
"""The SendGrid custom arg carrying the idempotency key."""
CALLBACK_KEY_PARAM = "key"
"""The query parameter of the Twilio StatusCallback URL carrying the idempotency key."""

_MAX_TEXT = 500  # provider texts (reasons, responses) kept on a record
MAX_KEY = 500  # an idempotency key (ours are far shorter)
MAX_ID = 200  # provider ids (sg_event_id is "up to 100 characters")
MAX_EMAIL = 254
MAX_PHONE = 64  # E.164 is 16; channel prefixes such as "whatsapp:" add a little


class DeliveryStatus(StrEnum):
    """One vocabulary for both providers' events."""

    QUEUED = "queued"  # SendGrid processed; Twilio queued / accepted / scheduled
    SENDING = "sending"
    SENT = "sent"  # handed to the carrier (Twilio)
    DEFERRED = "deferred"  # the receiving mail server said "later"; SendGrid retries
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELED = "canceled"
    BOUNCED = "bounced"
    DROPPED = "dropped"
    OPENED = "opened"  # email open; Twilio "read" (WhatsApp/RCS read receipts)
    CLICKED = "clicked"
    SPAM_REPORT = "spam_report"
    UNSUBSCRIBED = "unsubscribed"
    RESUBSCRIBED = "resubscribed"
    UNKNOWN = "unknown"  # an event name we do not know yet: kept, never dropped


SENDGRID_EVENTS: dict[str, DeliveryStatus] = {
    "processed": DeliveryStatus.QUEUED,
    "deferred": DeliveryStatus.DEFERRED,
    "delivered": DeliveryStatus.DELIVERED,
    "bounce": DeliveryStatus.BOUNCED,
    "dropped": DeliveryStatus.DROPPED,
    "open": DeliveryStatus.OPENED,
    "click": DeliveryStatus.CLICKED,
    "spamreport": DeliveryStatus.SPAM_REPORT,
    "unsubscribe": DeliveryStatus.UNSUBSCRIBED,
    "group_unsubscribe": DeliveryStatus.UNSUBSCRIBED,
    "group_resubscribe": DeliveryStatus.RESUBSCRIBED,
}

TWILIO_STATUSES: dict[str, DeliveryStatus] = {
    "accepted": DeliveryStatus.QUEUED,
    "scheduled": DeliveryStatus.QUEUED,
    "queued": DeliveryStatus.QUEUED,
    "sending": DeliveryStatus.SENDING,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.CANCELED,
    "read": DeliveryStatus.OPENED,
}


class FeedbackRecord(BaseModel):
    """One provider event about one message we sent."""

    model_config = ConfigDict(frozen=True)

    provider: Literal["sendgrid", "twilio"]
    channel: Channel
    dedupe_id: str
    idempotency_key: str | None  # None: find the message by provider_message_id
    provider_message_id: str | None
    event: str  # the provider's own name for it
    status: DeliveryStatus
    at: datetime
    address: str | None  # the recipient: an email address or an E.164 number
    error_code: str | None = None
    detail: str | None = None  # reason / response / clicked URL, bounded
    reason: str | None = None  # SendGrid's `reason` (dropped/bounce), for consent
    kind: str | None = None  # SendGrid's `type` (bounce: "bounce" or "blocked")


@dataclass(frozen=True)
class FeedbackBatch:
    records: list[FeedbackRecord] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)


def _text(value: object, limit: int = _MAX_TEXT) -> str | None:
    """A provider's free text, bounded, NUL characters dropped (PostgreSQL refuses them)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value).replace("\x00", "")[:limit] or None


def _ident(value: object, name: str, limit: int) -> str | None:
    """An identifier or address we store and look up by: never cut, refused when too long or
    holding a control character."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise SourcePayloadError(f"{name} is not a string")
    text = str(value)
    if len(text) > limit:
        raise SourcePayloadError(f"{name} is longer than {limit} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise SourcePayloadError(f"{name} holds a control character")
    return text


def _when(value: object) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SourcePayloadError("timestamp is not a number")
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (ValueError, OverflowError, OSError) as error:
        raise SourcePayloadError(f"timestamp {str(value)[:40]!r} is not a Unix time") from error


def _digest(event: Mapping[str, Any]) -> str:
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def sendgrid_message_id(sg_message_id: str | None) -> str | None:
    """The ``X-Message-Id`` part of an event's ``sg_message_id``."""
    if not sg_message_id:
        return None
    return sg_message_id.split(".", 1)[0] or None


def _sendgrid_event(event: Mapping[str, Any]) -> FeedbackRecord:
    name = event.get("event")
    if not isinstance(name, str) or not name.strip("\x00"):
        raise SourcePayloadError("event is missing")
    at = _when(event.get("timestamp"))
    email = _ident(event.get("email"), "email", MAX_EMAIL)
    sg_event_id = _ident(event.get("sg_event_id"), "sg_event_id", MAX_ID)
    key = _ident(event.get(IDEMPOTENCY_ARG), IDEMPOTENCY_ARG, MAX_KEY)
    message_id = _ident(event.get("sg_message_id"), "sg_message_id", _MAX_TEXT)
    status = SENDGRID_EVENTS.get(name, DeliveryStatus.UNKNOWN)
    reason = _text(event.get("reason"))
    kind = _text(event.get("type"))
    if status is DeliveryStatus.BOUNCED:
        error_code = _text(event.get("status")) or kind
    elif status is DeliveryStatus.DROPPED:
        error_code = reason
    else:
        error_code = None
    detail = _text(event.get("url")) or _text(event.get("response")) or reason
    return FeedbackRecord(
        provider="sendgrid",
        channel=Channel.EMAIL,
        dedupe_id=f"sendgrid:{sg_event_id}" if sg_event_id else f"sendgrid:{_digest(event)}",
        idempotency_key=key,
        provider_message_id=sendgrid_message_id(message_id),
        event=_text(name, 100) or "unknown",
        status=status,
        at=at,
        address=email.strip().lower() if email else None,
        error_code=error_code,
        detail=detail,
        reason=reason,
        kind=kind,
    )


def parse_sendgrid_events(payload: Any) -> FeedbackBatch:
    """A SendGrid Event Webhook body (parsed JSON): each event normalized, or set aside with
    why. Raises `SourcePayloadError` only when the body is not an array."""
    if not isinstance(payload, list):
        raise SourcePayloadError("a SendGrid Event Webhook body is a JSON array of events")
    batch = FeedbackBatch()
    for index, event in enumerate(payload):
        if not isinstance(event, dict):
            batch.rejected.append({"index": str(index), "reason": "an event is a JSON object"})
            continue
        try:
            batch.records.append(_sendgrid_event(event))
        except SourcePayloadError as error:
            batch.rejected.append({"index": str(index), "reason": error.reason})
    return batch


# --- Twilio ----------------------------------------------------------------------------------


def parse_form(raw: bytes) -> list[tuple[str, str]]:
    """An ``application/x-www-form-urlencoded`` body as (name, value) pairs, blanks kept."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SourcePayloadError("the form body is not UTF-8") from error
    return parse_qsl(text, keep_blank_values=True)


def _first(params: Sequence[tuple[str, str]], *names: str) -> str | None:
    for name in names:
        for key, value in params:
            if key == name and value:
                return value
    return None


def _field(params: Sequence[tuple[str, str]], limit: int, *names: str) -> str | None:
    return _ident(_first(params, *names), names[0], limit)


def parse_twilio_status(
    params: Sequence[tuple[str, str]], query: Sequence[tuple[str, str]], received_at: datetime
) -> FeedbackRecord:
    """A Twilio status callback: its form params and the callback URL's query."""
    sid = _field(params, MAX_ID, "MessageSid", "SmsSid")
    raw_status = _field(params, 100, "MessageStatus", "SmsStatus")
    if not sid:
        raise SourcePayloadError("MessageSid is missing")
    if not raw_status:
        raise SourcePayloadError("MessageStatus is missing")
    name = raw_status.strip().lower()[:100]
    return FeedbackRecord(
        provider="twilio",
        channel=Channel.SMS,
        dedupe_id=f"twilio:{sid}:{name}",
        idempotency_key=_field(query, MAX_KEY, CALLBACK_KEY_PARAM),
        provider_message_id=sid,
        event=name,
        status=TWILIO_STATUSES.get(name, DeliveryStatus.UNKNOWN),
        at=received_at.astimezone(UTC),
        address=_field(params, MAX_PHONE, "To"),
        error_code=_field(params, 32, "ErrorCode"),
        detail=_text(_first(params, "ErrorMessage")),
    )


_OPT_OUT_TYPES = {
    "STOP": SmsKeyword.STOP,
    "START": SmsKeyword.START,
    "HELP": SmsKeyword.HELP,
}


class InboundSms(BaseModel):
    """A text a customer sent to the store's number."""

    model_config = ConfigDict(frozen=True)

    message_sid: str
    sender: str  # the customer's number (From)
    to: str | None  # the store's number or short code (To)
    body: str
    keyword: SmsKeyword | None
    received_at: datetime

    @property
    def dedupe_id(self) -> str:
        return f"twilio-inbound:{self.message_sid}"


def parse_twilio_inbound(params: Sequence[tuple[str, str]], received_at: datetime) -> InboundSms:
    sid = _field(params, MAX_ID, "MessageSid", "SmsMessageSid", "SmsSid")
    sender = _field(params, MAX_PHONE, "From")
    if not sid:
        raise SourcePayloadError("MessageSid is missing")
    if not sender:
        raise SourcePayloadError("From is missing")
    body = _text(_first(params, "Body"), 1600) or ""
    opt_out_type = (_first(params, "OptOutType") or "").strip().upper()
    keyword = _OPT_OUT_TYPES.get(opt_out_type) or sms_keyword(body)
    return InboundSms(
        message_sid=sid,
        sender=sender,
        to=_text(_first(params, "To"), MAX_PHONE),
        body=body,
        keyword=keyword,
        received_at=received_at.astimezone(UTC),
    )
