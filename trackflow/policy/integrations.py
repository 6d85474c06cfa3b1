"""Effects beside the customer's messages: ops alerts, helpdesk tags and notes, the delayed list."""

from __future__ import annotations

from datetime import datetime

from trackflow.effects import (
    AUTO_DELAY_NOTIFIED,
    LOST_PACKAGE_TAG,
    AlertKind,
    RaiseAlert,
    SendNotification,
    SyncDelayedList,
    TagHelpdesk,
)
from trackflow.models import Shipment, Trigger
from trackflow.policy.audience import carrier_page
from trackflow.policy.keys import episode_key, shipment_key
from trackflow.policy.stages import DELAY_TRIGGERS
from trackflow.send_outcome import SendOutcome, SendStatus
from trackflow.shipment_state import Decision, Note, Phase, ShipmentState
from trackflow.timers import Timer


def with_sends(
    decision: Decision, sends: list[SendNotification], shipment: Shipment, now: datetime
) -> Decision:
    """Add sends. When a delay message goes out, tag the customer's open helpdesk tickets
    (with a private note saying what was sent) and put them on the delayed-shipments list."""
    tags = list(decision.tags)
    segments = list(decision.segments)
    state = decision.state
    for trigger, told in _by_trigger(sends):
        if trigger not in DELAY_TRIGGERS:
            continue
        key = episode_key(told[0]) + f":helpdesk:{AUTO_DELAY_NOTIFIED}"
        if any(n.key == key for n in state.notes):
            continue
        wanted = [AUTO_DELAY_NOTIFIED] + ([LOST_PACKAGE_TAG] if trigger == Trigger.LOST else [])
        tags.append(
            TagHelpdesk(
                idempotency_key=key,
                tag=AUTO_DELAY_NOTIFIED,
                tags=wanted,
                customer_email=shipment.customer.email,
                customer_phone=shipment.customer.phone,
                tracking_number=shipment.tracking_number,
                order_id=shipment.order_id,
                note=_helpdesk_note(state, shipment, told, now),
            )
        )
        state = state.with_notes(Note(kind="helpdesk", key=key, detail="+".join(wanted), at=now))
        if not state.delayed_list_member:
            state, segment = _delayed_list_change(state, shipment, member=True)
            segments.append(segment)
        state = state.model_copy(update={"delayed_list_scan": state.last_scan_at})
    return decision.model_copy(
        update={
            "state": state,
            "sends": [*decision.sends, *sends],
            "tags": tags,
            "segments": segments,
        }
    )


def _by_trigger(sends: list[SendNotification]) -> list[tuple[Trigger, list[SendNotification]]]:
    grouped: dict[Trigger, list[SendNotification]] = {}
    for send in sends:
        grouped.setdefault(send.trigger, []).append(send)
    return list(grouped.items())


def _helpdesk_note(
    state: ShipmentState, shipment: Shipment, told: list[SendNotification], now: datetime
) -> str:
    """The private note an agent reads on the customer's ticket."""
    first = told[0]
    what = first.trigger.value.replace("_", " ") + (
        f" ({first.exception.value.replace('_', ' ')})" if first.exception else ""
    )
    channels = " and ".join(send.channel.value.replace("sms", "SMS") for send in told)
    carrier = shipment.carrier or "the carrier"
    lines = [
        f"trackflow told the customer: {what}, by {channels}, at {now:%Y-%m-%d %H:%M} UTC.",
        f"Live status: {state.phase.value.replace('_', ' ')} with {carrier}"
        + (
            f", estimated delivery {state.estimated_delivery:%Y-%m-%d}"
            if state.estimated_delivery
            else ""
        )
        + ".",
    ]
    if link := carrier_page(shipment):
        lines.append(f"Tracking: {link}")
    lines.append(f"Order {shipment.order_name or shipment.order_id}, {shipment.tracking_number}.")
    return "\n".join(lines)


def _delayed_list_change(
    state: ShipmentState, shipment: Shipment, *, member: bool
) -> tuple[ShipmentState, SyncDelayedList]:
    changes = state.delayed_list_changes + 1
    segment = SyncDelayedList(
        idempotency_key=f"{shipment_key(shipment)}:delayed-list:{changes}:"
        + ("add" if member else "remove"),
        member=member,
        customer_email=shipment.customer.email,
        customer_phone=shipment.customer.phone,
        first_name=shipment.customer.first_name,
        tracking_number=shipment.tracking_number,
        order_id=shipment.order_id,
    )
    state = state.model_copy(
        update={"delayed_list_member": member, "delayed_list_changes": changes}
    )
    return state, segment


def _delay_over(state: ShipmentState) -> bool:
    """The delay the customer was told of is over: delivered (or returned, cancelled), or a
    newer scan arrived with no exception open and the parcel not lost."""
    if state.phase in (Phase.DELIVERED, Phase.RETURNED, Phase.CANCELLED):
        return True
    moved = state.last_scan_at != state.delayed_list_scan
    return moved and state.open_exception is None and not state.lost


def leave_delayed_list(decision: Decision, shipment: Shipment) -> Decision:
    state = decision.state
    if not (state.delayed_list_member and _delay_over(state)):
        return decision
    state, segment = _delayed_list_change(state, shipment, member=False)
    return decision.model_copy(update={"state": state, "segments": [*decision.segments, segment]})


def alert_for_timer(
    decision: Decision,
    state: ShipmentState,
    shipment: Shipment,
    kind: AlertKind,
    timer: Timer,
    now: datetime,
) -> Decision:
    key = f"{shipment_key(shipment)}:alert:{kind.value}:{state.lost_episode}"
    return raised(decision, state, shipment, kind, key, timer.detail, now)


def raised(
    decision: Decision,
    state: ShipmentState,
    shipment: Shipment,
    kind: AlertKind,
    key: str,
    detail: str,
    now: datetime,
) -> Decision:
    alert = RaiseAlert(
        idempotency_key=key,
        alert=kind,
        tracking_number=shipment.tracking_number,
        order_id=shipment.order_id,
        summary=f"{shipment.carrier or 'carrier'} {shipment.tracking_number} "
        f"(order {shipment.order_name or shipment.order_id}): {detail}",
        raised_at=now,
        carrier=shipment.carrier,
        first_name=shipment.customer.first_name,
        already_sent=already_sent(state),
        carrier_url=carrier_page(shipment),
        workflow_id=shipment.workflow_id,
    )
    state = state.with_notes(Note(kind="alert", key=key, detail=detail, at=now))
    return decision.model_copy(update={"state": state, "alerts": [*decision.alerts, alert]})


def on_integration_gave_up(
    state: ShipmentState, key: str, why: str, now: datetime
) -> ShipmentState:
    """An integration (Slack, helpdesk, Klaviyo) stayed down past its retries: say so where
    ops look at the shipment."""
    return state.with_notes(Note(kind="integration", key=key, detail=why[:300], at=now))


def _plainly_sent(outcome: SendOutcome) -> bool:
    """Went out through the local outbox: nothing worth adding to the line."""
    return outcome.status is SendStatus.SENT and outcome.provider == "outbox"


def already_sent(state: ShipmentState) -> list[str]:
    """What the customer was told so far, one line per message, for an alert."""
    return [
        f"{n.trigger.value.replace('_', ' ')} {n.channel.value} {n.sent_at:%Y-%m-%d %H:%M} UTC"
        + (f" ({n.outcome.display})" if n.outcome and not _plainly_sent(n.outcome) else "")
        for n in state.notifications[-10:]
    ]
