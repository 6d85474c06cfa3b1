"""Human-readable lines for the CLI."""

from __future__ import annotations

import textwrap

from storage import LedgerRecord, MessageState
from trackflow.shipment_state import ShipmentDocument


def format_outbox_line(record: LedgerRecord, width: int | None = None, indent: str = "") -> str:
    """One line per record; with `width`, a shorter form wrapped to fit it (for a terminal):
    local time of day, and the order only where the headline does not name one already."""
    what = record.trigger + (f"/{record.exception}" if record.exception else "")
    headline = record.subject if record.subject else record.body.replace("\n", " ")
    if width is None:
        return (
            f"{indent}{record.sent_at:%Y-%m-%d %H:%M:%S} {record.channel:<5} "
            f"{record.tracking_number} order {record.order_id} {what:<28} → {record.to}: {headline}"
        )
    named = record.order_id.lstrip("#") in headline or "#" in headline
    order = "" if named else f"order {record.order_id}: "
    # The number's last digits tell apart the parcels of a split shipment.
    parcel = f"…{record.tracking_number[-4:]}"
    text = f"{record.sent_at.astimezone():%H:%M:%S} {parcel} {record.channel} {what} → "
    return textwrap.fill(
        text + f"{record.to}: " + order + headline,
        width=max(width, len(indent) + 30),
        initial_indent=indent,
        subsequent_indent=indent + " " * 9,
        break_on_hyphens=False,
        break_long_words=False,  # a link stays whole (and clickable), even past the width
    )


def format_shipment(view: ShipmentDocument, deliveries: list[MessageState] | None = None) -> str:
    lines = [
        f"{view.tracking_number}  order {view.order_id}  carrier {view.carrier or '?'}",
        f"status: {view.summary}",
        f"estimated delivery: {view.estimated_delivery or 'unknown'}",
        f"customer time zone: {view.timezone}",
        *(f"warning: {w.message} ({w.code.value})" for w in view.warnings),
        _next_action_line(view),
        *(
            f"  waiting: {w.trigger.value}"
            + (f"/{w.exception.value}" if w.exception else "")
            + f" {w.channel.value} until {w.due_at:%Y-%m-%d %H:%M} UTC"
            + (f" / {w.due_local}" if w.due_local else "")
            + f" — {w.why}"
            for w in view.waiting
        ),
        "timeline:",
        *(
            f"  {e.occurred_at:%Y-%m-%d %H:%M} {e.status.value}"
            + (f"/{e.exception.value}" if e.exception else "")
            + (f" @ {e.location}" if e.location else "")
            + f"  [{e.effect}]"
            for e in view.timeline
        ),
        "notifications:",
        *(
            f"  {n.sent_at:%Y-%m-%d %H:%M:%S} {n.channel.value:<5} {n.trigger.value}"
            + (f"/{n.exception.value}" if n.exception else "")
            + (f" ({n.outcome})" if n.outcome else "")
            for n in view.notifications
        ),
        *(["deliveries (from the ledger):"] if deliveries else []),
        *(_delivery_line(d) for d in deliveries or []),
        *(["notes:"] if view.notes else []),
        *(f"  {n.at:%Y-%m-%d %H:%M} {n.kind}: {n.detail} [{n.about}]" for n in view.notes),
    ]
    return "\n".join(lines)


def _delivery_line(row: MessageState) -> str:
    """A message as its provider saw it: id, delivery status, opened/clicked, error code."""
    what = (row.trigger or "?") + (f"/{row.exception}" if row.exception else "")
    parts = [f"  {row.channel or '?':<5} {what:<28} {row.status}"]
    if row.transport:
        provider_id = f" {row.provider_message_id}" if row.provider_message_id else ""
        parts.append(f"via {row.transport}{provider_id}")
    if row.delivery_status:
        parts.append(row.delivery_status)
    for name, at in (("opened", row.opened_at), ("clicked", row.clicked_at)):
        if at is not None:
            parts.append(f"{name} {at:%Y-%m-%d %H:%M}")
    if row.error_code:
        detail = f" ({row.error_detail})" if row.error_detail else ""
        parts.append(f"error {row.error_code}{detail}")
    return " · ".join(parts)


def _next_action_line(view: ShipmentDocument) -> str:
    action = view.next_action
    line = f"next: {action.kind}"
    if action.due_at:
        line += f" at {action.due_at:%Y-%m-%d %H:%M} UTC / {action.due_local}"
    return line + (f" — {action.detail}" if action.detail else "")
