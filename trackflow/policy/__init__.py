"""The policy: (state, event or timer, order, TrackingPolicy) -> (new state, decisions).

Pure and deterministic: the workflow feeds it signals and the passing of time and carries
out what it returns; the tests drive it with a fake clock. One module per concern; this is
the one entry point (`from trackflow import policy; policy.on_event(...)`).
"""

from trackflow.effects import SendNotification, Tone
from trackflow.policy.audience import (
    carrier_page,
    channels_for,
    customer_region,
    customer_zone,
    tone_for,
)
from trackflow.policy.caps import EXCEPTION_SEVERITY, Severity
from trackflow.policy.events import MAX_REMEMBERED_EVENT_KEYS, Classified, on_event
from trackflow.policy.integrations import already_sent, on_integration_gave_up
from trackflow.policy.keys import idempotency_key, shipment_key
from trackflow.policy.ops_view import next_action, view
from trackflow.policy.quiet_hours import obsolete_because, send_window
from trackflow.policy.registration import (
    MAX_REMEMBERED_UPDATE_IDS,
    AnotherOrder,
    check_same_order,
    is_finished,
    number_warnings,
    on_cancel,
    on_number_warnings,
    on_registration,
    on_return_request,
    on_shipment_update,
    on_start,
)
from trackflow.policy.sends import on_send_outcome, record_sent
from trackflow.policy.stages import DELIVERED_RANK, MILESTONE_STATUSES, phase_at
from trackflow.policy.timers import on_tick
from trackflow.shipment_state import (
    Decision,
    NextAction,
    Phase,
    ShipmentState,
    ShipmentView,
    TimelineEntry,
)

__all__ = [
    "DELIVERED_RANK",
    "EXCEPTION_SEVERITY",
    "MAX_REMEMBERED_EVENT_KEYS",
    "MAX_REMEMBERED_UPDATE_IDS",
    "MILESTONE_STATUSES",
    "AnotherOrder",
    "Classified",
    "Decision",
    "NextAction",
    "Phase",
    "SendNotification",
    "Severity",
    "ShipmentState",
    "ShipmentView",
    "TimelineEntry",
    "Tone",
    "already_sent",
    "carrier_page",
    "channels_for",
    "check_same_order",
    "customer_region",
    "customer_zone",
    "idempotency_key",
    "is_finished",
    "next_action",
    "number_warnings",
    "obsolete_because",
    "on_cancel",
    "on_event",
    "on_integration_gave_up",
    "on_number_warnings",
    "on_registration",
    "on_return_request",
    "on_send_outcome",
    "on_shipment_update",
    "on_start",
    "on_tick",
    "phase_at",
    "record_sent",
    "send_window",
    "shipment_key",
    "tone_for",
    "view",
]
