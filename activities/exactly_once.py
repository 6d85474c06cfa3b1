"""Exactly once: the steps every ledger-recorded effect shares.

`perform_once` is for effects the ledger itself records in one step (an alert, a helpdesk
tag): it looks the idempotency key up first and, when the ledger already holds it, does not
do it again; otherwise the transport carries it out and records it with
`Ledger.record_once`, which keeps a single row even when two attempts race past the lookup.

`send_once` is for customer messages, whose providers (SendGrid, Twilio) take no idempotency
key: a crash between the provider's answer and the ledger write must not send twice.

1. Claim the key (`Ledger.claim`: a 'sending' row with this attempt as owner and a lease).
   A row already sent, failed, suppressed or uncertain is the answer as it stands. A live
   claim of another attempt means wait: a retryable ``MessageClaimed`` error whose retry
   comes when that lease ends.
2. A claim taken over from an attempt whose lease ran out (it crashed, or timed out during
   the provider call) reconciles before sending: the provider id already known from feedback,
   or ``Transport.find`` since the first claim. Found: recorded as sent, not sent again. The
   provider surely never got it: sent now. The provider cannot tell: the row becomes
   'uncertain', one internal alert goes to ops, and nothing is sent.
3. Before calling the provider, consent: a suppressed address is recorded as such, unsent.
4. `Transport.send`, then `Ledger.record_sent` with the provider's id. A permanent refusal
   is recorded with the provider's code and answered, not raised (the batch's other channels
   still go). A provider that is unavailable raises a retryable ``ProviderUnavailable``
   error (after its Retry-After when it gave one), and gives the lease back at once: knowing
   nothing was sent when the provider answered (429, 5xx), else to be reconciled.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels.base import (
    CannotTell,
    OutgoingMessage,
    PermanentFailure,
    ProviderReceipt,
    ProviderUnavailable,
    Transport,
)
from storage import Claim, ClaimState, Ledger, LedgerRecord, MessageState

MESSAGE_KIND = "message"
MESSAGE_CLAIMED = "MessageClaimed"
PROVIDER_UNAVAILABLE = "ProviderUnavailable"
LEDGER_KEY_COLLISION = "LedgerKeyCollision"

_log = logging.getLogger("trackflow.exactly_once")


@dataclass(frozen=True)
class Once:
    """The ledger record for the key and whether it was there before this attempt."""

    record: LedgerRecord
    already_recorded: bool


async def perform_once(
    ledger: Ledger,
    idempotency_key: str,
    kind: str,
    perform: Callable[[], Awaitable[LedgerRecord]],
) -> Once:
    """Return the stored record for `idempotency_key`, or call `perform` (which must record
    under that key) when there is none. A record of another kind under the same key is a
    key collision between effects: a bug that no retry can fix, so it fails the activity."""
    existing = await ledger.get(idempotency_key)
    if existing is not None:
        _check(existing, idempotency_key, kind)
        _info("already recorded, not doing it again: %s", idempotency_key)
        return Once(existing, already_recorded=True)
    record = await perform()
    _check(record, idempotency_key, kind)
    return Once(record, already_recorded=False)


def _check(record: LedgerRecord, idempotency_key: str, kind: str) -> None:
    if record.idempotency_key != idempotency_key or record.kind != kind:
        raise _collision(idempotency_key, kind, record.kind, record.idempotency_key)


def _collision(key: str, kind: str, found_kind: str | None, found_key: str) -> ApplicationError:
    return ApplicationError(
        f"ledger key {key!r} expected a {kind!r} record, found {found_kind!r} under {found_key!r}",
        type=LEDGER_KEY_COLLISION,
        non_retryable=True,
    )


# --- customer messages ---------------------------------------------------------------------


class Outcome(StrEnum):
    SENT = "sent"
    FAILED = "failed"  # the provider refused it for good (error_code says why)
    UNCERTAIN = "uncertain"  # nobody can tell whether it went: not sent again, ops alerted
    SUPPRESSED = "suppressed"  # consent ruled it out (error_code: the suppression's reason)


@dataclass(frozen=True)
class Delivery:
    """How one message ended up, and whether an earlier attempt had settled it already."""

    idempotency_key: str
    outcome: Outcome
    transport: str
    provider_message_id: str | None
    at: datetime
    already: bool
    error_code: str | None = None
    detail: str | None = None


# The suppression reason that rules the message out, or None when it may go.
Consent = Callable[[OutgoingMessage], Awaitable[str | None]]
# Tell ops about an uncertain message (idempotent: called again on every later attempt).
UncertainAlert = Callable[[OutgoingMessage, str], Awaitable[None]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def send_once(
    ledger: Ledger,
    transport: Transport,
    message: OutgoingMessage,
    template: LedgerRecord,
    *,
    owner: str,
    lease: timedelta,
    consent: Consent | None = None,
    on_uncertain: UncertainAlert | None = None,
    clock: Callable[[], datetime] = _utc_now,
) -> Delivery:
    """Send `message` through `transport` at most once, recorded once (see the module).

    `template` is what the ledger row says about the message (trigger, order, ...); its
    transport, provider id and time are filled in from the provider's receipt."""
    key = message.idempotency_key
    if template.idempotency_key != key:
        raise ValueError("the ledger template's key differs from the message's")
    draft = template.model_copy(update={"transport": transport.name})
    claim = await ledger.claim(key, owner, lease, draft=draft, now=clock())
    if claim.row.kind not in (None, MESSAGE_KIND):
        raise _collision(key, MESSAGE_KIND, claim.row.kind, key)
    if not claim.ours:
        return await _settled(claim, message, on_uncertain, clock)
    if claim.state is ClaimState.EXPIRED:
        _info("claim of %s expired (owner %s): reconciling", key, claim.row.owner)
        found = await _reconcile(
            ledger, transport, message, template, claim, owner, on_uncertain, clock
        )
        if found is not None:
            return found
    if consent is not None:
        reason = await consent(message)
        if reason is not None:
            if not await ledger.mark_suppressed(key, reason, owner=owner):
                return await _lost_lease(ledger, message)
            _info("not sending %s: %s", key, reason)
            return Delivery(key, Outcome.SUPPRESSED, transport.name, None, clock(), False, reason)
    try:
        receipt = await transport.send(message)
    except PermanentFailure as refused:
        at = clock()
        if not await ledger.record_failed(key, refused.code, refused.detail, at=at, owner=owner):
            return await _lost_lease(ledger, message)
        _info("%s refused %s for good: %s", transport.name, key, refused)
        return Delivery(
            key, Outcome.FAILED, transport.name, None, at, False, refused.code, refused.detail
        )
    except ProviderUnavailable as unavailable:
        await ledger.release(key, owner, sent_nothing=not unavailable.may_have_sent)
        raise provider_unavailable(transport.name, unavailable) from unavailable
    return await _record(ledger, template, message, receipt, owner, False)


async def _reconcile(
    ledger: Ledger,
    transport: Transport,
    message: OutgoingMessage,
    template: LedgerRecord,
    claim: Claim,
    owner: str,
    on_uncertain: UncertainAlert | None,
    clock: Callable[[], datetime],
) -> Delivery | None:
    """After a lost attempt: the Delivery when the provider has the message (or cannot say),
    None when it surely never got it (then send)."""
    key = message.idempotency_key
    if claim.provider_message_id:  # feedback named the provider's id: it has the message
        receipt = ProviderReceipt(
            transport=claim.row.transport or transport.name,
            provider_message_id=claim.provider_message_id,
            accepted_at=clock(),
        )
        return await _record(ledger, template, message, receipt, owner, True)
    since = claim.claimed_at or clock()
    try:
        found = await transport.find(message, since)
    except CannotTell as unknown:
        if not await ledger.mark_uncertain(key, owner=owner):
            return await _lost_lease(ledger, message)
        why = f"{transport.name} cannot tell whether it got the message: {unknown}"
        _log.warning("%s is uncertain: %s", key, why)
        if on_uncertain is not None:
            await on_uncertain(message, why)
        return Delivery(key, Outcome.UNCERTAIN, transport.name, None, clock(), False, None, why)
    except ProviderUnavailable as unavailable:
        await ledger.release(key, owner, sent_nothing=False)
        raise provider_unavailable(transport.name, unavailable) from unavailable
    if found is None:
        _info("%s never got %s: sending it", transport.name, key)
        return None
    _info("%s already has %s (%s): not sending again", transport.name, key, found)
    return await _record(ledger, template, message, found, owner, True)


async def _record(
    ledger: Ledger,
    template: LedgerRecord,
    message: OutgoingMessage,
    receipt: ProviderReceipt,
    owner: str,
    already: bool,
) -> Delivery:
    record = template.model_copy(
        update={
            "transport": receipt.transport,
            "provider_message_id": receipt.provider_message_id,
            "sent_at": receipt.accepted_at.astimezone(UTC),
        }
    )
    if not await ledger.record_sent(message.idempotency_key, owner, record):
        _log.error(
            "%s went out through %s (%s) but its row was settled meanwhile",
            message.idempotency_key,
            receipt.transport,
            receipt.provider_message_id,
        )
        return await _lost_lease(ledger, message)
    return Delivery(
        message.idempotency_key,
        Outcome.SENT,
        record.transport,
        record.provider_message_id,
        record.sent_at,
        already,
    )


async def _lost_lease(ledger: Ledger, message: OutgoingMessage) -> Delivery:
    """Our lease was taken over (this attempt outlived it): the row as it stands now."""
    key = message.idempotency_key
    row = await ledger.state(key)
    if row is None or row.status == "sending":
        raise ApplicationError(
            f"lost the claim on {key!r} to {row.owner if row else 'nobody'}",
            type=MESSAGE_CLAIMED,
        )
    return _from_row(row, message, already=True)


async def _settled(
    claim: Claim,
    message: OutgoingMessage,
    on_uncertain: UncertainAlert | None,
    clock: Callable[[], datetime],
) -> Delivery:
    """A claim that is not ours: the row's outcome, or wait for the live claim's owner."""
    if claim.state is ClaimState.LIVE:
        raise claimed_elsewhere(claim, clock())
    if claim.state is ClaimState.UNCERTAIN and on_uncertain is not None:
        # The alert may not have gone out before a crash; it is keyed, so never twice.
        await on_uncertain(message, "an earlier attempt could not tell whether it was sent")
    _info("%s is %s already: not sending it again", message.idempotency_key, claim.state)
    return _from_row(claim.row, message, already=True)


def _from_row(row: MessageState, message: OutgoingMessage, *, already: bool) -> Delivery:
    at = row.sent_at or row.claimed_at or datetime.now(UTC)
    return Delivery(
        message.idempotency_key,
        Outcome(row.status),
        row.transport or "unknown",
        row.provider_message_id,
        at,
        already,
        row.error_code,
        row.error_detail,
    )


def claimed_elsewhere(claim: Claim, now: datetime) -> ApplicationError:
    """Retryable: another attempt holds the key; retry when its lease ends."""
    until = claim.lease_until or now
    wait = max(until - now, timedelta(0)) + timedelta(seconds=1)
    return ApplicationError(
        f"claimed by {claim.owner} until {until.isoformat()}",
        type=MESSAGE_CLAIMED,
        next_retry_delay=wait,
    )


def provider_unavailable(name: str, error: ProviderUnavailable) -> ApplicationError:
    """Retryable: after the provider's Retry-After when it said one, else Temporal's backoff."""
    delay = timedelta(seconds=error.retry_after) if error.retry_after else None
    return ApplicationError(
        f"{name} unavailable: {error.detail}",
        type=PROVIDER_UNAVAILABLE,
        next_retry_delay=delay,
    )


def _info(message: str, *args: object) -> None:
    if activity.in_activity():
        activity.logger.info(message, *args)
    else:
        _log.info(message, *args)
