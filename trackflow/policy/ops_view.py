"""What ops see: the workflow's query answer and its next action."""

from __future__ import annotations

from trackflow.models import Channel, Shipment
from trackflow.policy.audience import customer_region, customer_zone
from trackflow.policy.quiet_hours import send_window
from trackflow.policy.registration import number_warnings
from trackflow.send_windows import format_local
from trackflow.shipment_state import (
    HeldMessage,
    NextAction,
    NotificationView,
    PendingSend,
    Phase,
    ShipmentState,
    ShipmentView,
)
from trackflow.timers import due_timers
from trackflow.tracking_policy import TrackingPolicy


def next_action(state: ShipmentState, shipment: Shipment, policy: TrackingPolicy) -> NextAction:
    zone = customer_zone(shipment, policy)
    timers = due_timers(state, shipment, policy)
    if not timers:
        if state.closed_reason:
            return NextAction(kind="complete", detail=state.closed_reason, timezone=zone)
        return NextAction(kind="await_carrier_event", timezone=zone)
    timer = timers[0]
    return NextAction(
        kind=timer.kind.value,
        due_at=timer.due_at,
        due_local=format_local(timer.due_at, zone),
        timezone=zone,
        detail=timer.detail,
    )


def view(state: ShipmentState, shipment: Shipment, policy: TrackingPolicy) -> ShipmentView:
    """The internal view (the workflow's query answer); `ShipmentView.public()` is the API's."""
    zone = customer_zone(shipment, policy)
    return ShipmentView(
        workflow_id=shipment.workflow_id,
        tracking_number=shipment.tracking_number,
        order_id=shipment.order_id,
        status=state.phase,
        exception=state.open_exception if state.phase == Phase.EXCEPTION else None,
        carrier=shipment.carrier,
        carrier_label=shipment.carrier_label
        if shipment.carrier_label != shipment.carrier
        else None,
        declared_carrier=shipment.declared_carrier,
        timezone=zone,
        estimated_delivery=state.estimated_delivery,
        closed_reason=state.closed_reason,
        timeline=state.timeline,
        timeline_omitted=state.timeline_omitted,
        notifications=[
            NotificationView.of(n.trigger, n.channel, n.exception, n.sent_at, n.outcome)
            for n in state.notifications
        ],
        waiting=[_held(pending, shipment, policy, zone) for pending in state.pending],
        notes=state.notes,
        notes_omitted=state.notes_omitted,
        unrecognised_codes=state.unrecognised_codes,
        warnings=number_warnings(shipment),
        next_action=next_action(state, shipment, policy),
        time_scale=policy.time_scale if policy.time_scale != 1 else None,
    )


def _held(
    pending: PendingSend, shipment: Shipment, policy: TrackingPolicy, zone: str
) -> HeldMessage:
    channel = pending.send.channel
    region = customer_region(shipment, policy)
    window = send_window(channel, shipment, policy)
    why = "held for the customer's send window (quiet hours)"
    if not window.always_open:
        hours = f"{window.start:%H:%M}-{window.end:%H:%M}"
        why = f"quiet hours: {channel.value} goes out {hours} {zone} time"
        if channel == Channel.SMS and region and region.upper() in policy.stricter_sms_windows:
            why += f" ({region}'s rule for texts)"
    return HeldMessage(**dict(pending), due_local=format_local(pending.due_at, zone), why=why)
