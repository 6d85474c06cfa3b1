"""Inbound helpdesk tickets, the pure part: who asks (a keyed digest of the email, never the
email), whether they were already told, and the private note the agent reads.

Customer index key
------------------
A shipment is found from a ticket by its requester's email, through an index of
`HMAC-SHA256(key, lower-cased trimmed email)` digests (storage.tickets, the customer index):
the ledger never holds the address itself. The key is derived (HMAC with the label
`trackflow customer index v1`) from, in this order of preference:

1. `TRACKFLOW_UNSUBSCRIBE_SECRET`;
2. else every key of `TRACKFLOW_ENCRYPTION_KEYS` (the first one writes, all are looked up, so
   rotating keys keeps older rows findable until their key is dropped);
3. else the fixed `APP_SALT` (a pseudonym, not a secret: set one of the above in production).

Lookups also try the keys below the writing one (down to `APP_SALT`), so setting a secret
later keeps the shipments indexed before it findable.

Already notified
----------------
A ticket is `already_notified` when a customer message about the shipment's *current* status
(see `TRIGGERS_ABOUT`) went out before the ticket was created. "Went out" means the message
was handed to its channel: not suppressed by consent, not refused by the provider, not
uncertain, and not shadow-only (shadow mode records what would have gone and sends nothing).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field

from trackflow.email_address import OptionalEmailAddress
from trackflow.encryption import parse_keys
from trackflow.intent import Intent, Language
from trackflow.models import ExceptionKind, Model, Trigger
from trackflow.settings import Settings
from trackflow.shipment_state import NotificationView, Phase, ShipmentView

Helpdesk = Literal["gorgias", "zendesk"]
HELPDESKS: tuple[Helpdesk, ...] = ("gorgias", "zendesk")
APP_SALT = b"trackflow customer index: no secret configured"
_INDEX_LABEL = b"trackflow customer index v1"

TAG_WISMO = "wismo"
TAG_ALREADY_NOTIFIED = "already_notified"


class InboundTicket(Model):
    """A new ticket as a helpdesk webhook delivered it (it travels encrypted: payload codec)."""

    helpdesk: Helpdesk
    ticket_id: str = Field(min_length=1, max_length=100)
    requester_email: OptionalEmailAddress = None
    subject: str | None = Field(default=None, max_length=2_000)
    body: str | None = Field(default=None, max_length=20_000)
    created_at: datetime | None = None
    received_at: datetime


class TicketTriage(Model):
    """What triage made of a ticket (no email, no text)."""

    helpdesk: Helpdesk
    ticket_id: str
    intent: Intent
    language: Language
    rule: str
    tracking_number: str | None = None
    already_notified: bool | None = None
    annotated: bool = False
    tags: list[str] = Field(default_factory=list)
    recorded: bool = Field(
        default=False,
        description="this attempt wrote the ticket's row (False: an earlier attempt did)",
    )


def workflow_id_for_ticket(helpdesk: str, ticket_id: str) -> str:
    return f"ticket-{helpdesk}-{ticket_id}"


# --- the customer index ------------------------------------------------------------------


def _derived(secret: bytes) -> bytes:
    return hmac.new(secret, _INDEX_LABEL, hashlib.sha256).digest()


def index_keys(settings: Settings) -> list[bytes]:
    """The index keys, the writing one first, then every older one still looked up."""
    secrets: list[bytes] = []
    if settings.unsubscribe_secret:
        secrets.append(settings.unsubscribe_secret.encode())
    if settings.encryption_keys:
        secrets.extend(key.key for key in parse_keys(settings.encryption_keys))
    secrets.append(APP_SALT)
    return [_derived(secret) for secret in secrets]


def normalise_email(email: str) -> str:
    return email.strip().lower()


def customer_digest(email: str, key: bytes) -> str:
    return hmac.new(key, normalise_email(email).encode(), hashlib.sha256).hexdigest()


def customer_digests(email: str, keys: list[bytes]) -> list[str]:
    return [customer_digest(email, key) for key in keys]


# --- already notified ----------------------------------------------------------------------

TRIGGERS_ABOUT: dict[Phase, frozenset[Trigger]] = {
    Phase.LABEL_CREATED: frozenset({Trigger.LABEL_CREATED, Trigger.STALE}),
    Phase.IN_TRANSIT: frozenset({Trigger.IN_TRANSIT, Trigger.STALE}),
    Phase.OUT_FOR_DELIVERY: frozenset({Trigger.OUT_FOR_DELIVERY}),
    Phase.DELIVERED: frozenset({Trigger.DELIVERED}),
    Phase.EXCEPTION: frozenset({Trigger.EXCEPTION}),
    Phase.LOST: frozenset({Trigger.LOST}),
    Phase.RETURNED: frozenset({Trigger.EXCEPTION}),
}
"""The messages that are about each status. An exception message must also be about the open
exception's kind; a returned parcel's, about return_to_sender."""


def went_out(notification: NotificationView) -> bool:
    """Handed to its channel (or still being handed): not suppressed, refused, uncertain, or
    recorded in shadow mode only."""
    outcome = notification.outcome
    if outcome is None:
        return True
    return not (
        outcome == "shadow"
        or outcome.startswith("suppressed")
        or ":failed" in outcome
        or outcome.endswith(":uncertain")
    )


def is_about_current_status(view: ShipmentView, notification: NotificationView) -> bool:
    if notification.trigger not in TRIGGERS_ABOUT.get(view.status, frozenset()):
        return False
    if view.status == Phase.EXCEPTION and view.exception is not None:
        return notification.exception == view.exception
    if view.status == Phase.RETURNED:
        return notification.exception == ExceptionKind.RETURN_TO_SENDER
    return True


def messages_about_current_status(view: ShipmentView, before: datetime) -> list[NotificationView]:
    return [
        n
        for n in view.notifications
        if went_out(n) and n.sent_at <= before and is_about_current_status(view, n)
    ]


def already_notified(view: ShipmentView, ticket_created_at: datetime) -> bool:
    """A message about the current status went out before the ticket was created."""
    return bool(messages_about_current_status(view, ticket_created_at))


def ticket_tags(notified: bool | None) -> list[str]:
    return [TAG_WISMO, TAG_ALREADY_NOTIFIED] if notified else [TAG_WISMO]


# --- the agent's note ----------------------------------------------------------------------


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _status(view: ShipmentView) -> str:
    status = view.status.value.replace("_", " ")
    if view.exception is not None:
        status += f" ({view.exception.value.replace('_', ' ')})"
    return status


def _what(notification: NotificationView) -> str:
    what = notification.trigger.value.replace("_", " ")
    if notification.exception is not None:
        what += f" ({notification.exception.value.replace('_', ' ')})"
    return what


def agent_note(
    view: ShipmentView,
    *,
    ticket_created_at: datetime,
    notified: bool,
    tracking_url: str | None,
) -> str:
    """The private note: live status, what was sent and when, the next expected event, and
    the tracking link. Plain text (both helpdesks take it as is); no customer name or address."""
    carrier = view.carrier.upper() if view.carrier else "carrier unknown"
    lines = [f"Trackflow · order {view.order_id} · {carrier} {view.tracking_number}"]
    live = f"Live status: {_status(view)}"
    if view.timeline:
        last = view.timeline[-1]
        scan = last.description or last.status.value.replace("_", " ")
        where = f", {last.location}" if last.location else ""
        live += f" (last scan {_when(last.occurred_at)}: {scan}{where})"
    lines.append(live)
    if view.estimated_delivery is not None:
        lines.append(f"Estimated delivery: {view.estimated_delivery.isoformat()}")
    if view.closed_reason:
        lines.append(f"Tracking ended: {view.closed_reason}")
    sent = [n for n in view.notifications if went_out(n)]
    if sent:
        lines.append("Sent to the customer:")
        lines.extend(
            f"- {_what(n)} by {n.channel.value}, {_when(n.sent_at)}"
            + (f" ({n.outcome})" if n.outcome else "")
            for n in sent
        )
    else:
        lines.append("Sent to the customer: nothing yet.")
    if notified:
        lines.append(
            "Already notified: yes, the customer was told about the current status before "
            f"writing in (ticket created {_when(ticket_created_at)})."
        )
    else:
        lines.append("Already notified: no message about the current status before this ticket.")
    for held in sorted(view.waiting, key=lambda h: h.due_at):
        lines.append(
            f"Waiting to be sent: {held.send.trigger.value.replace('_', ' ')} by "
            f"{held.send.channel.value} at {_when(held.due_at)}"
        )
    lines.append(f"Next expected: {_next(view)}")
    if tracking_url:
        lines.append(f"Tracking: {tracking_url}")
    return "\n".join(lines)


def _next(view: ShipmentView) -> str:
    action = view.next_action
    text = action.detail or action.kind.replace("_", " ")
    if action.due_at is not None:
        text += f" (by {_when(action.due_at)})"
    return text
