"""The order's facts and requests: start, registration, updates, returns, cancellation."""

from __future__ import annotations

from datetime import UTC, datetime

from trackflow.effects import AlertKind, StartReturn
from trackflow.models import NumberWarning, ReturnRequest, Shipment, ShipmentUpdate
from trackflow.policy.integrations import raised
from trackflow.policy.keys import safe_id, shipment_key
from trackflow.policy.quiet_hours import drop_obsolete
from trackflow.shipment_state import (
    MAX_RETURN_REQUESTS,
    Decision,
    Note,
    Outcome,
    Phase,
    ShipmentState,
    remembered,
)
from trackflow.tracking_policy import TrackingPolicy

MAX_REMEMBERED_UPDATE_IDS = 100


def on_start(state: ShipmentState, now: datetime) -> ShipmentState:
    if state.started_at is not None:
        return state
    return state.model_copy(update={"started_at": now})


def on_return_request(
    state: ShipmentState,
    request: ReturnRequest,
    shipment: Shipment,
    policy: TrackingPolicy,
    now: datetime,
) -> Decision:
    if remembered(request.request_id) in state.return_request_ids:
        return Decision(state=state, outcome=Outcome(outcome="ignored", detail="already requested"))
    state = state.model_copy(
        update={
            "return_request_ids": [*state.return_request_ids, remembered(request.request_id)][
                -MAX_RETURN_REQUESTS:
            ],
            "trouble": state.with_trouble(f"{request.kind} requested"),
        }
    )
    state = drop_obsolete(state, now)  # e.g. a review request held for the morning
    delivered = state.delivered_seen_at
    if delivered is None or now - delivered > policy.return_window:
        why = "not delivered yet" if delivered is None else "outside the return window"
        note = Note(kind="return_ignored", key=request.request_id, detail=why, at=now)
        return Decision(
            state=state.with_notes(note), outcome=Outcome(outcome="ignored", detail=why)
        )
    start = StartReturn(
        workflow_id=f"return-{shipment.tracking_number}-{safe_id(shipment.order_id)}-"
        f"{safe_id(request.request_id)}",
        request=request,
    )
    note = Note(kind="return_started", key=start.workflow_id, detail=request.kind, at=now)
    outcome = Outcome(outcome="return_started", detail=start.workflow_id)
    return Decision(state=state.with_notes(note), returns=[start], outcome=outcome)


def on_cancel(state: ShipmentState, reason: str) -> ShipmentState:
    if state.closed_reason:
        return state
    return state.model_copy(
        update={"phase": Phase.CANCELLED, "closed_reason": f"cancelled: {reason}", "pending": []}
    )


def on_shipment_update(
    state: ShipmentState, current: Shipment, update: ShipmentUpdate, now: datetime
) -> tuple[ShipmentState, Shipment]:
    """Later facts replace earlier ones. Ignored, with a note: a replayed update (an id already
    applied), one older than the applied one (by the source's `updated_at`), and one for
    another tracking number (a workflow never changes number)."""
    why = _update_ignored_because(state, current, update)
    if why is not None:
        note = Note(kind="update_ignored", key=update.update_id or "", detail=why, at=now)
        if not any(
            (n.kind, n.key, n.detail) == (note.kind, note.key, note.detail) for n in state.notes
        ):
            state = state.with_notes(note)
        return state, current
    changes: dict[str, object] = {}
    if update.update_id is not None:
        ids = [*state.applied_update_ids, remembered(update.update_id)]
        changes["applied_update_ids"] = ids[-MAX_REMEMBERED_UPDATE_IDS:]
    if update.updated_at is not None:
        changes["applied_update_at"] = update.updated_at
    return state.model_copy(update=changes), update.shipment


class AnotherOrder(ValueError):
    """A registration or return request for another order than the one this tracking number
    is followed for: two live orders on one number, or a mistaken id. Never reaches state."""


def check_same_order(current: Shipment, order_id: str | None, tracking_number: str) -> None:
    if tracking_number != current.tracking_number:
        raise AnotherOrder(f"this workflow follows tracking number {current.tracking_number}")
    if order_id is not None and order_id != current.order_id:
        raise AnotherOrder(
            f"tracking number {current.tracking_number} is followed for order "
            f"{current.order_id}, which is still in transit; a second live order on the same "
            "number is refused"
        )


def on_registration(
    state: ShipmentState, current: Shipment, update: ShipmentUpdate, now: datetime
) -> tuple[ShipmentState, Shipment, Outcome]:
    """The first registration is the one that started the workflow; later ones are updates
    (or replays of it). The order was checked by `check_same_order` before."""
    if not state.registered:
        state, shipment = on_shipment_update(state, current, update, now)
        return state.model_copy(update={"registered": True}), shipment, Outcome(outcome="accepted")
    why = _update_ignored_because(state, current, update)
    state, shipment = on_shipment_update(state, current, update, now)
    if why == "replayed webhook":
        return state, shipment, Outcome(outcome="already_registered", detail=why)
    if why is not None:
        return state, shipment, Outcome(outcome="ignored", detail=why)
    if shipment == current:
        return state, shipment, Outcome(outcome="already_registered", detail="same facts")
    return state, shipment, Outcome(outcome="updated")


def number_warnings(shipment: Shipment) -> list[NumberWarning]:
    """What looked wrong with the tracking number when the shipment was registered (pinned:
    a later edit of the format table changes nothing for it)."""
    return shipment.pinned.warnings if shipment.pinned else []


def on_number_warnings(state: ShipmentState, shipment: Shipment, now: datetime) -> Decision:
    """Ops hear once per shipment that its tracking number looks wrong: at the first
    registration (or update) that says so. The alert's key makes it once in the ledger too."""
    warnings = number_warnings(shipment)
    key = f"{shipment_key(shipment)}:alert:{AlertKind.INVALID_TRACKING_NUMBER.value}"
    if not warnings or any(n.kind == "alert" and n.key == key for n in state.notes):
        return Decision(state=state)
    detail = "; ".join(warning.message for warning in warnings)
    kind = AlertKind.INVALID_TRACKING_NUMBER
    return raised(Decision(state=state), state, shipment, kind, key, detail, now)


def _update_ignored_because(
    state: ShipmentState, current: Shipment, update: ShipmentUpdate
) -> str | None:
    if update.shipment.tracking_number != current.tracking_number:
        return f"for another tracking number: {update.shipment.tracking_number}"
    if update.update_id is not None and remembered(update.update_id) in state.applied_update_ids:
        return "replayed webhook"
    applied_at = state.applied_update_at
    if update.updated_at is not None and applied_at is not None and update.updated_at < applied_at:
        return f"older than the applied update of {applied_at.astimezone(UTC).isoformat()}"
    return None


def is_finished(state: ShipmentState) -> bool:
    return state.closed_reason is not None and not state.pending
