"""The messages that cross the Temporal boundary: workflow input, signals, activity I/O."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from trackflow.api_health import ApiHealth
from trackflow.effects import SendNotification
from trackflow.models import CarrierEvent, Model, ReturnRequest, Shipment, ShipmentUpdate
from trackflow.shipment_state import ShipmentState
from trackflow.tracking_policy import TrackingPolicy

TASK_QUEUE = "trackflow"
POLL_PROVIDERS = ("easypost", "shipengine")


def poll_queue(task_queue: str, provider: str) -> str:
    """Each carrier API gets its own task queue, so its rate limit applies across workers."""
    return f"{task_queue}-poll-{provider}"


WORKFLOW_NAME = "ShipmentTrackingWorkflow"
RETURNS_WORKFLOW_NAME = "ReturnsWorkflow"
UNMATCHED_WORKFLOW_NAME = "UnmatchedEventsWorkflow"
API_HEALTH_WORKFLOW_NAME = "CarrierApiHealthWorkflow"
SIGNAL_API_OUTCOME = "outcome"
SIGNAL_UNMATCHED_EVENT = "unmatched_event"
SIGNAL_HAND_OVER = "hand_over"
SIGNAL_CARRIER_EVENT = "carrier_event"
SIGNAL_UPDATE_SHIPMENT = "update_shipment"
SIGNAL_CANCEL = "cancel"
SIGNAL_RETURN_REQUEST = "return_request"
QUERY_STATE = "state"


class Cancel(Model):
    reason: str = "cancelled by merchant"


class InboxItem(Model):
    """One received signal, kept in arrival order; exactly one field is set."""

    event: CarrierEvent | None = None
    update: ShipmentUpdate | None = None
    cancel: Cancel | None = None
    return_request: ReturnRequest | None = None


class ShipmentWorkflowInput(Model):
    shipment: Shipment
    policy: TrackingPolicy
    state: ShipmentState | None = None
    inbox: list[InboxItem] = Field(default_factory=list)


class NotificationRequest(Model):
    shipment: Shipment
    send: SendNotification


class DeliveryReceipt(Model):
    idempotency_key: str
    transport: str
    sent_at: datetime
    already_sent: bool = False


class ReturnsWorkflowInput(Model):
    shipment: Shipment
    policy: TrackingPolicy
    request: ReturnRequest


class UnmatchedInput(Model):
    tracking_number: str
    keep_for_seconds: float = Field(default=14 * 24 * 3600, gt=0)


class ApiOutcome(Model):
    ok: bool
    detail: str | None = None


class ApiHealthInput(Model):
    provider: str
    policy: TrackingPolicy
    health: ApiHealth | None = None


class PollResult(Model):
    events: list[CarrierEvent] = Field(default_factory=list)
