"""The returns flow started when a customer asks for a refund or return soon after delivery."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from trackflow.effects import (
    RETURN_REQUESTED_TAG,
    AlertKind,
    RaiseAlert,
    SendNotification,
    TagHelpdesk,
)
from trackflow.models import Model, ReturnRequest, Shipment, Trigger
from trackflow.policy import (
    carrier_page,
    channels_for,
    customer_zone,
    idempotency_key,
    send_window,
    shipment_key,
    tone_for,
)
from trackflow.send_windows import next_send_time
from trackflow.tracking_policy import TrackingPolicy


class TimedSend(Model):
    send: SendNotification
    due_at: datetime


class ReturnPlan(Model):
    tag: TagHelpdesk
    alert: RaiseAlert
    acknowledgements: list[TimedSend] = Field(default_factory=list)


def plan_return(
    shipment: Shipment, policy: TrackingPolicy, request: ReturnRequest, now: datetime
) -> ReturnPlan:
    """Acknowledge on every channel inside the customer's send window; tag the helpdesk now."""
    episode = "".join(c if c.isalnum() else "-" for c in request.request_id)
    zone = customer_zone(shipment, policy)
    acknowledgements = []
    for channel, to in channels_for(shipment, policy):
        send = SendNotification(
            idempotency_key=idempotency_key(shipment, Trigger.RETURN_REQUESTED, episode, channel),
            trigger=Trigger.RETURN_REQUESTED,
            channel=channel,
            to=to,
            tone=tone_for(shipment, policy),
        )
        window = send_window(channel, shipment, policy)
        acknowledgements.append(TimedSend(send=send, due_at=next_send_time(now, zone, window)))
    tag = TagHelpdesk(
        idempotency_key=f"{shipment_key(shipment)}:helpdesk:{RETURN_REQUESTED_TAG}:{episode}",
        tag=RETURN_REQUESTED_TAG,
        customer_email=shipment.customer.email,
        customer_phone=shipment.customer.phone,
        tracking_number=shipment.tracking_number,
        order_id=shipment.order_id,
        note=f"{request.kind} requested" + (f": {request.reason}" if request.reason else ""),
    )
    alert = RaiseAlert(
        idempotency_key=f"{shipment_key(shipment)}:alert:{AlertKind.RETURN_OPENED.value}:{episode}",
        alert=AlertKind.RETURN_OPENED,
        tracking_number=shipment.tracking_number,
        order_id=shipment.order_id,
        summary=f"{request.kind} requested for order {shipment.order_name or shipment.order_id}"
        + (f": {request.reason}" if request.reason else ""),
        raised_at=now,
        carrier=shipment.carrier,
        first_name=shipment.customer.first_name,
        carrier_url=carrier_page(shipment),
        workflow_id=shipment.workflow_id,
    )
    return ReturnPlan(tag=tag, alert=alert, acknowledgements=acknowledgements)
