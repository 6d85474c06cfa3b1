"""The messages that cross the Temporal boundary: workflow input, signals, activity I/O."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, model_validator
from temporalio.common import SearchAttributeKey, SearchAttributePair

from trackflow.api_health import ApiHealth
from trackflow.effects import SendNotification
from trackflow.messages import MessageContext
from trackflow.models import CarrierEvent, Model, ReturnRequest, Shipment, ShipmentUpdate
from trackflow.policy_table import PolicyRef
from trackflow.shipment_state import ShipmentProjection, ShipmentState

TASK_QUEUE = "trackflow"
MAX_EVENTS_PER_SIGNAL = 100
POLL_PROVIDERS = ("easypost", "shipengine")


def poll_queue(task_queue: str, provider: str) -> str:
    """Each carrier API gets its own task queue, so its rate limit applies across workers."""
    return f"{task_queue}-poll-{provider}"


def integrations_queue(task_queue: str) -> str:
    """Slack, helpdesks and Klaviyo run on their own task queue and worker slots: an
    integration that is down retries there for hours and never holds a customer message."""
    return f"{task_queue}-integrations"


WORKFLOW_NAME = "ShipmentTrackingWorkflow"
RETURNS_WORKFLOW_NAME = "ReturnsWorkflow"
UNMATCHED_WORKFLOW_NAME = "UnmatchedEventsWorkflow"
API_HEALTH_WORKFLOW_NAME = "CarrierApiHealthWorkflow"
SIGNAL_API_OUTCOME = "outcome"
SIGNAL_UNMATCHED_EVENT = "unmatched_event"
SIGNAL_HAND_OVER = "hand_over"
SIGNAL_CARRIER_EVENT = "carrier_event"
SIGNAL_CARRIER_EVENTS = "carrier_events"
"""A webhook's events for one shipment, as one signal (aggregators resend the whole history)."""
SIGNAL_CANCEL = "cancel"
QUERY_STATE = "state"
UPDATE_REGISTER = "register"
"""Update (with start): register a shipment or update its facts; answers an `Outcome`."""
UPDATE_RETURN_REQUEST = "request_return"
"""Update: a customer asked for a refund or return; answers an `Outcome`."""
ANOTHER_ORDER = "AnotherOrder"
"""The error type a validator rejects a registration or return request of another order with."""


# --- search attributes: what ops filter shipments by in the Web UI (no personal data: they are
# never encrypted) ---------------------------------------------------------------------------

ORDER_ID = SearchAttributeKey.for_keyword("TrackflowOrderId")
TRACKING_NUMBER = SearchAttributeKey.for_keyword("TrackflowTrackingNumber")
CARRIER = SearchAttributeKey.for_keyword("TrackflowCarrier")
STATUS = SearchAttributeKey.for_keyword("TrackflowStatus")
NEXT_ACTION = SearchAttributeKey.for_keyword("TrackflowNextAction")
NEXT_ACTION_AT = SearchAttributeKey.for_datetime("TrackflowNextActionAt")

ALL_KEYS: tuple[SearchAttributeKey[str] | SearchAttributeKey[datetime], ...] = (
    ORDER_ID,
    TRACKING_NUMBER,
    CARRIER,
    STATUS,
    NEXT_ACTION,
    NEXT_ACTION_AT,
)


def initial_search_attributes(shipment: Shipment) -> list[SearchAttributePair[str]]:
    return [
        SearchAttributePair(ORDER_ID, shipment.order_id),
        SearchAttributePair(TRACKING_NUMBER, shipment.tracking_number),
        SearchAttributePair(CARRIER, shipment.carrier or "unknown"),
    ]


class Cancel(Model):
    reason: str = "cancelled by merchant"


class EventBatch(Model):
    events: list[CarrierEvent] = Field(min_length=1, max_length=MAX_EVENTS_PER_SIGNAL)


class InboxItem(Model):
    """One received signal or update, kept in arrival order; exactly one of event, update,
    cancel and return_request is set. `ticket` numbers an update waiting for its answer."""

    ticket: int | None = None
    event: CarrierEvent | None = None
    update: ShipmentUpdate | None = None
    cancel: Cancel | None = None
    return_request: ReturnRequest | None = None


def _require_pinned(shipment: Shipment) -> None:
    if shipment.pinned is None:
        raise ValueError("a shipment enters a workflow pinned (trackflow.pinning.pin)")


class ShipmentWorkflowInput(Model):
    shipment: Shipment
    policy: PolicyRef
    state: ShipmentState | None = None
    inbox: list[InboxItem] = Field(
        default_factory=list, description="the first carrier events, riding in the start"
    )
    events_not_before: datetime | None = Field(
        default=None, description="the tracking number's earlier order ended then (recycled)"
    )

    @model_validator(mode="after")
    def _pinned(self) -> ShipmentWorkflowInput:
        _require_pinned(self.shipment)
        return self


class SendBatch(Model):
    """The messages one decision sends (every channel), and what they say about the order."""

    about: MessageContext
    sends: list[SendNotification]
    projection: ShipmentProjection | None = Field(
        default=None, description="the read-model row to write with the messages (with_sent)"
    )


class DeliveryReceipt(Model):
    idempotency_key: str
    transport: str
    sent_at: datetime
    already_sent: bool = False


class SendReport(Model):
    receipts: list[DeliveryReceipt]


class ReturnsWorkflowInput(Model):
    shipment: Shipment
    policy: PolicyRef
    request: ReturnRequest


class UnmatchedInput(Model):
    tracking_number: str
    keep_for_seconds: float = Field(default=14 * 24 * 3600, gt=0)


class ApiOutcome(Model):
    ok: bool
    detail: str | None = None


class ApiHealthInput(Model):
    provider: str
    policy: PolicyRef
    health: ApiHealth | None = None


class PollResult(Model):
    events: list[CarrierEvent] = Field(default_factory=list)
