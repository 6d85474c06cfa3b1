"""The helpdesk activity: tag the customer so support agents see what we already told them.

`Helpdesk` is the interface; `LedgerHelpdesk` records the tag in the notification ledger
only; Gorgias and Zendesk (`activities.helpdesks`) tag the customer's open tickets and add a
private note, then record. The ledger is keyed by the tag's idempotency key, so a retried
activity or a replayed workflow tags once.

What the helpdesk clients share lives here too: the outcome of one helpdesk's tagging
(`Tagged`), how it is recorded (`record_tagged`), how an HTTP answer becomes a retry or a
refusal (`send`), and the marker line that makes a private note idempotent: a crash between
the helpdesk call and the ledger write retries the activity, and the retry finds the note
already on the ticket (`trackflow:<idempotency key>`) and does not post it again. Tags are a
set union, so adding them twice is harmless.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.exactly_once import Once, perform_once
from storage import Ledger, LedgerRecord
from trackflow.effects import TagHelpdesk
from trackflow.models import Model

HELPDESK_KIND = "helpdesk"
HELPDESK_CHANNEL = "helpdesk"
UNKNOWN_CUSTOMER = "unknown"
HELPDESK_UNAVAILABLE = "HelpdeskUnavailable"  # 429, 5xx, timeout: retried
HELPDESK_REFUSED = "HelpdeskRefused"  # annotate_ticket only: a permanent refusal
DEFAULT_RETRY_AFTER = timedelta(seconds=30)
MARKER_PREFIX = "trackflow:"
NO_EMAIL = "no customer email"
NO_CUSTOMER = "no customer with this email"
NO_OPEN_TICKET = "no open ticket"

_log = logging.getLogger("trackflow.helpdesk")


class HelpdeskReceipt(Model):
    idempotency_key: str
    transport: str
    recorded_at: datetime
    already_recorded: bool = False


class Helpdesk(Protocol):
    """Tags one customer and records it in the ledger under the tag's idempotency key
    (`kind="helpdesk"`), returning the stored record.

    A real helpdesk (Gorgias, Zendesk: `activities.helpdesks`) finds the customer's open
    tickets by email, adds the tags (a set union) and a private note carrying the marker
    line `trackflow:<idempotency key>`, so a retry after a crash between the call and the
    ledger write neither tags nor notes twice. No customer, or no open ticket, is not an
    error: it is recorded with no provider id, so the workflow does not retry a tag that has
    no one to go to; a permanent refusal (401, 403, 422...) is recorded as
    `<helpdesk>-refused`. The tagged ticket ids go in `provider_message_id`.
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


# --- what the Gorgias and Zendesk clients share -----------------------------------------


@dataclass(frozen=True)
class Tagged:
    """What one helpdesk did with a tag: the tickets it tagged (and noted), or why none."""

    provider: str
    ticket_ids: tuple[str, ...] = ()
    refused: str | None = None  # a permanent refusal (401, 403, 404, 422...): not retried
    detail: str | None = None  # e.g. "no open ticket", "note already on 12"

    @property
    def transport(self) -> str:
        return f"{self.provider}-refused" if self.refused else self.provider

    def summary(self) -> str:
        parts: list[str] = []
        if self.ticket_ids:
            parts.append(f"tickets {', '.join(self.ticket_ids)}")
        if self.detail:
            parts.append(self.detail)
        if self.refused:
            parts.append(f"refused: {self.refused}")
        return f"{self.provider}: {'; '.join(parts) or 'nothing to do'}"


class TaggingHelpdesk(Protocol):
    """A helpdesk that tags a customer's open tickets without recording it (the caller
    records once, whichever helpdesks took part)."""

    name: str

    async def apply(self, tag: TagHelpdesk) -> Tagged: ...


async def record_tagged(
    ledger: Ledger, tag: TagHelpdesk, results: Sequence[Tagged]
) -> LedgerRecord:
    """One ledger row for the tag, whatever each helpdesk did: tagged tickets, no open
    ticket, or a permanent refusal (so the workflow does not retry what cannot succeed)."""
    if len(results) == 1:
        provider_id = ",".join(results[0].ticket_ids) or None
    else:
        provider_id = (
            ";".join(f"{r.provider}:{','.join(r.ticket_ids)}" for r in results if r.ticket_ids)
            or None
        )
    for result in results:
        if result.refused:  # its detail may quote the customer: the ledger row keeps it
            _log.warning(
                "%s refused helpdesk tag %s (see its ledger row)",
                result.provider,
                tag.idempotency_key,
            )
    summaries = "\n".join(f"[{r.summary()}]" for r in results)
    record, _created = await ledger.record_once(
        LedgerRecord(
            idempotency_key=tag.idempotency_key,
            kind=HELPDESK_KIND,
            tracking_number=tag.tracking_number,
            order_id=tag.order_id,
            trigger=tag.tag,
            channel=HELPDESK_CHANNEL,
            to=helpdesk_recipient(tag),
            subject=f"tag {', '.join(tag.all_tags)}",
            body=f"{tag.note}\n{summaries}",
            transport="+".join(r.transport for r in results),
            provider_message_id=provider_id,
            sent_at=datetime.now(UTC),
        )
    )
    return record


def outcome_detail(*, gone: Sequence[str], noted_before: Sequence[str]) -> str | None:
    """Tickets that vanished (404) and tickets whose note an earlier attempt had posted."""
    parts = []
    if gone:
        parts.append(f"gone: {', '.join(gone)}")
    if noted_before:
        parts.append(f"note already on {', '.join(noted_before)}")
    return "; ".join(parts) or None


class Refused(Exception):
    """A permanent answer from a helpdesk (any 4xx but 429)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


def retry_after(headers: Mapping[str, Any] | None) -> timedelta:
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            try:
                return timedelta(seconds=max(0, int(str(value).strip())))
            except ValueError:
                return DEFAULT_RETRY_AFTER
    return DEFAULT_RETRY_AFTER


def unavailable(
    provider: str, reason: str, *, headers: Mapping[str, Any] | None = None, rate_limited: bool
) -> ApplicationError:
    """A retryable error; rate limited, its next retry comes after the helpdesk's
    Retry-After."""
    return ApplicationError(
        f"{provider} unavailable: {reason}",
        type=HELPDESK_UNAVAILABLE,
        next_retry_delay=retry_after(headers) if rate_limited else None,
    )


def refused_error(provider: str, refused: Refused) -> ApplicationError:
    return ApplicationError(
        f"{provider} refused: {refused}", type=HELPDESK_REFUSED, non_retryable=True
    )


async def send(
    client: httpx.AsyncClient, provider: str, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """One helpdesk call: a 2xx answer; 429, 5xx, a timeout or a dropped connection raise a
    retryable `ApplicationError` (after Retry-After on 429); any other 4xx raises `Refused`."""
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.TransportError as error:  # timeouts, refused or dropped connections
        raise unavailable(provider, type(error).__name__, rate_limited=False) from None
    status = response.status_code
    if status == 429:
        raise unavailable(provider, "429", headers=response.headers, rate_limited=True)
    if status >= 500:
        raise unavailable(provider, str(status), rate_limited=False)
    if status >= 400:
        raise Refused(status, response.text.strip()[:300] or response.reason_phrase)
    return response


def marker_for(idempotency_key: str) -> str:
    return f"{MARKER_PREFIX}{idempotency_key}"


def note_marker(note: str) -> str:
    """The marker a note carries: its own `trackflow:` line if it has one, else one made of
    the note's text (so the same note is not posted twice on a ticket)."""
    for line in note.splitlines():
        if line.strip().startswith(MARKER_PREFIX):
            return line.strip()
    return f"{MARKER_PREFIX}note-{hashlib.sha256(note.encode()).hexdigest()[:16]}"


def with_marker(note: str, marker: str) -> str:
    if has_marker(note, marker):
        return note
    return f"{note.rstrip()}\n\n{marker}"


def has_marker(text: str | None, marker: str) -> bool:
    """Whether `marker` stands on its own in `text` (plain text or HTML): `...:1` is not
    found in a note marked `...:10`."""
    if not text:
        return False
    return re.search(rf"(?:^|[\s>]){re.escape(marker)}(?:$|[\s<])", text) is not None


def note_html(note: str) -> str:
    escaped = note.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "".join(f"<p>{line}</p>" if line else "<br>" for line in escaped.splitlines())


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
