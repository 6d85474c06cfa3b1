"""Customer-channel feedback: SendGrid's Event Webhook and Twilio's status callbacks and
inbound texts.

Each route verifies the provider's signature over the raw body (one shared dependency,
`verified_body`; 503 while the provider's secret is unset, 401 and nothing changed when the
signature does not match), normalizes the body (`trackflow.sources.providers`), and then, per
event: updates the message's ledger row (status, time, error code), applies what the event
means for consent (`trackflow.consent`: suppress or lift an address for the merchant), and
remembers the event's dedupe id so a provider's retry changes nothing twice. Effects come
before the dedupe id is remembered: a crash in between only repeats idempotent writes. An
event that matches no message of ours (another tool's mail on the same account) is answered
200 all the same (a non-2xx makes SendGrid retry the whole batch for a day), what it means
for consent applied, and remembered too. Consent follows the events' own times, not their
arrival: a resubscribe lifts an unsubscribe only when newer than every event that asked for
it (`Ledger.unsuppress`), and SendGrid's signed timestamp must be within 10 minutes.
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies below from
# annotations that name a closure's variables, so they must be evaluated where they stand.

import html
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import Response

from starters.api.dependencies import AppLedger, Context, configured, merchant_of
from starters.api.json_body import parse_json
from starters.api.metrics import CountedRoute, event_outcome
from starters.api.verified import Signature, verified_body
from storage import Ledger
from trackflow.consent import (
    ConsentChange,
    InboundSmsAction,
    SuppressionReason,
    email_event_consent,
    help_text,
    keyword_action,
    sms_error_consent,
)
from trackflow.models import Channel
from trackflow.settings import Settings
from trackflow.sources.normalized import SourcePayloadError
from trackflow.sources.providers import (
    FeedbackRecord,
    InboundSms,
    parse_form,
    parse_sendgrid_events,
    parse_twilio_inbound,
    parse_twilio_status,
)
from trackflow.sources.signatures import verify_sendgrid, verify_twilio

logger = logging.getLogger("trackflow.api")
router = APIRouter(route_class=CountedRoute)

TWILIO_STATUS_PATH = "/webhooks/twilio/status"
TWILIO_INBOUND_PATH = "/webhooks/twilio/inbound"
TWIML = "application/xml"


@dataclass
class Outcome:
    """What one webhook did, answered to the provider (and useful in logs)."""

    events: int = 0
    applied: int = 0
    duplicates: int = 0
    unmatched: int = 0  # no message of ours: no key, and no known provider id
    suppressed: list[str] = field(default_factory=list)
    lifted: list[str] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)

    def counted(self) -> dict[str, Any]:
        """The answer, the webhook marked a duplicate when every event in it was one."""
        if self.events and self.duplicates == self.events:
            event_outcome("duplicate")
        return self.view()

    def view(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "applied": self.applied,
            "duplicates": self.duplicates,
            "unmatched": self.unmatched,
            "suppressed": self.suppressed,
            "lifted": self.lifted,
            "rejected": self.rejected,
        }


async def _consent(
    ledger: Ledger,
    merchant: str,
    channel: Channel,
    address: str | None,
    change: ConsentChange | None,
    reason: SuppressionReason | None,
    at: datetime,
    outcome: Outcome,
) -> None:
    """Apply a consent change asked for by an event at `at`: providers deliver events in any
    order, so a lift takes effect only when newer than every event behind the suppression."""
    if change is None or reason is None or not address:
        return
    if change is ConsentChange.SUPPRESS:
        if await ledger.suppress(merchant, channel.value, address, reason.value, at):
            outcome.suppressed.append(f"{channel.value}:{reason.value}")
    # a lift removes its own reason only: a resubscribe never lifts a bounce
    elif await ledger.unsuppress(merchant, channel.value, address, reason.value, at):
        outcome.lifted.append(f"{channel.value}:{reason.value}")


async def _apply(ledger: Ledger, merchant: str, record: FeedbackRecord, outcome: Outcome) -> None:
    """One delivery/engagement event: the ledger row, then consent, then the dedupe id
    (remembered whether or not the event named a message of ours)."""
    outcome.events += 1
    if await ledger.feedback_seen(record.dedupe_id):
        outcome.duplicates += 1
        return
    key = record.idempotency_key
    if key is None and record.provider_message_id:
        key = await ledger.key_for_provider_id(record.provider_message_id)
    applied = key is not None and await ledger.record_feedback(
        key,
        record.status.value,
        record.at,
        record.error_code,
        provider_message_id=record.provider_message_id,
    )
    if applied:
        outcome.applied += 1
    else:
        outcome.unmatched += 1
    if record.channel is Channel.EMAIL:
        consent = email_event_consent(record.event, record.reason, record.kind)
        change, reason = consent.change, consent.reason
    else:
        action = sms_error_consent(record.error_code)
        change, reason = (action.change, action.reason) if action else (None, None)
    await _consent(
        ledger, merchant, record.channel, record.address, change, reason, record.at, outcome
    )
    await ledger.remember_feedback(record.dedupe_id)


# --- SendGrid -------------------------------------------------------------------------------


def _sendgrid_signature(
    context: Context,
    x_twilio_email_event_webhook_signature: Annotated[str | None, Header()] = None,
    x_twilio_email_event_webhook_timestamp: Annotated[str | None, Header()] = None,
) -> Signature:
    key = configured(context.settings.sendgrid_webhook_public_key, "SENDGRID_WEBHOOK_PUBLIC_KEY")
    return Signature(
        lambda raw: verify_sendgrid(
            raw,
            x_twilio_email_event_webhook_signature,
            x_twilio_email_event_webhook_timestamp,
            key,
            now=datetime.now(UTC),
        ),
        "X-Twilio-Email-Event-Webhook-Signature is missing or does not match the body, or "
        "its X-Twilio-Email-Event-Webhook-Timestamp is more than 10 minutes away",
    )


SendGridBody = Annotated[bytes, Depends(verified_body(_sendgrid_signature))]


@router.post("/webhooks/sendgrid", summary="SendGrid Event Webhook (signed)")
async def sendgrid_webhook(
    raw: SendGridBody, context: Context, ledger: AppLedger
) -> dict[str, Any]:
    """Delivery and engagement events of the emails sent: each updates its message's ledger
    row once; bounces, spam reports and unsubscribes suppress the address for the merchant."""
    try:
        batch = parse_sendgrid_events(parse_json(raw))
    except SourcePayloadError as error:
        raise HTTPException(422, f"webhook payload rejected: {error.reason}") from error
    outcome = Outcome(rejected=batch.rejected)
    merchant = merchant_of(context.settings)
    for record in batch.records:
        await _apply(ledger, merchant, record, outcome)
    if batch.rejected:
        logger.warning("SendGrid events set aside: %s", batch.rejected[:10])
    return outcome.counted()


# --- Twilio ---------------------------------------------------------------------------------


def public_url(settings: Settings, request: Request, path: str) -> str:
    """The URL Twilio called: the configured public URL, the route's path and the query
    string exactly as received (Twilio signs the URL it was given)."""
    base = configured(settings.public_url, "PUBLIC_URL").rstrip("/")
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{base}{path}?{query}" if query else f"{base}{path}"


def _twilio_signature(path: str) -> Callable[..., Signature]:
    def signature(
        request: Request,
        context: Context,
        x_twilio_signature: Annotated[str | None, Header()] = None,
    ) -> Signature:
        token = configured(context.settings.twilio_auth_token, "TWILIO_AUTH_TOKEN")
        url = public_url(context.settings, request, path)

        def matches(raw: bytes) -> bool:
            try:
                params = parse_form(raw)
            except SourcePayloadError:
                return False
            return verify_twilio(url, params, x_twilio_signature, token)

        return Signature(matches, "X-Twilio-Signature is missing or does not match the request")

    return signature


StatusBody = Annotated[bytes, Depends(verified_body(_twilio_signature(TWILIO_STATUS_PATH)))]
InboundBody = Annotated[bytes, Depends(verified_body(_twilio_signature(TWILIO_INBOUND_PATH)))]


def _form(raw: bytes) -> Sequence[tuple[str, str]]:
    try:
        return parse_form(raw)
    except SourcePayloadError as error:  # unreachable after a matching signature
        raise HTTPException(422, error.reason) from error


@router.post(TWILIO_STATUS_PATH, summary="Twilio message status callback (signed)")
async def twilio_status(
    raw: StatusBody, request: Request, context: Context, ledger: AppLedger
) -> dict[str, Any]:
    """queued / sent / delivered / undelivered / failed (with the error code) of a text we
    sent, found by the `key` of its callback URL; error 21610 suppresses the number."""
    query = parse_qsl(request.scope.get("query_string", b"").decode("latin-1"))
    try:
        record = parse_twilio_status(_form(raw), query, datetime.now(UTC))
    except SourcePayloadError as error:
        raise HTTPException(422, f"status callback rejected: {error.reason}") from error
    outcome = Outcome()
    await _apply(ledger, merchant_of(context.settings), record, outcome)
    return outcome.counted()


def brand_help(settings: Settings) -> str:
    return help_text(
        settings.store_name, settings.support_email, settings.support_phone, settings.support_url
    )


def twiml(reply: str | None) -> Response:
    """A TwiML answer: one message back, or nothing."""
    body = f"<Message>{html.escape(reply, quote=False)}</Message>" if reply is not None else ""
    return Response(
        f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>', media_type=TWIML
    )


async def _inbound_consent(
    ledger: Ledger, merchant: str, inbound: InboundSms, action: InboundSmsAction
) -> Outcome:
    outcome = Outcome(events=1)
    await _consent(
        ledger,
        merchant,
        Channel.SMS,
        inbound.sender,
        action.change,
        action.reason,
        inbound.received_at,  # Twilio gives no time: arrival order is all there is
        outcome,
    )
    return outcome


@router.post(
    TWILIO_INBOUND_PATH,
    summary="Twilio inbound text (signed)",
    response_class=Response,
    responses={200: {"content": {TWIML: {}}, "description": "TwiML"}},
)
async def twilio_inbound(raw: InboundBody, context: Context, ledger: AppLedger) -> Response:
    """STOP (UNSUBSCRIBE, CANCEL, END, QUIT...) suppresses texts to the sender for the
    merchant, START (UNSTOP, YES) lifts it, HELP is answered with the brand's help text."""
    try:
        inbound = parse_twilio_inbound(_form(raw), datetime.now(UTC))
    except SourcePayloadError as error:
        raise HTTPException(422, f"inbound message rejected: {error.reason}") from error
    action = keyword_action(inbound.keyword, brand_help(context.settings))
    if not await ledger.feedback_seen(inbound.dedupe_id):
        merchant = merchant_of(context.settings)
        outcome = await _inbound_consent(ledger, merchant, inbound, action)
        if outcome.suppressed or outcome.lifted:
            logger.info("inbound %s: %s", inbound.keyword, action.why)
        await ledger.remember_feedback(inbound.dedupe_id)
    else:
        event_outcome("duplicate")
    # a retried delivery gets the same answer: Twilio only acts on the one it received
    return twiml(action.reply)
