"""The read model's row for one shipment lifecycle (pure).

The workflow writes it to the ledger database at each material change (`changed`), batched
with the send activity when a decision sends messages (the activity adds what it sent,
`with_sent`), else with one `project_shipment` local activity. `GET /v1/shipments/{n}`, the
tracking page and the metrics read it there: no Temporal query per read.

A row whose next action is the end of tracking at a known time says how it ends: readers see it
`as_of` their clock, and the workflow skips the closing write that would say only that.

`version` grows with every write of one lifecycle (it rides in the workflow's state across
continue-as-new), so a late retry of an older write never replaces a newer row.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from trackflow import policy as tracking
from trackflow.models import CarrierStatus, Shipment
from trackflow.shipment_state import NextAction, Phase, ShipmentProjection, ShipmentState
from trackflow.tracking_policy import TrackingPolicy

PROBLEMS = (Phase.EXCEPTION, Phase.LOST)


def project(
    state: ShipmentState,
    shipment: Shipment,
    policy: TrackingPolicy,
    now: datetime,
    version: int,
) -> ShipmentProjection:
    """The row for the shipment as its state stands."""
    document = tracking.view(state, shipment, policy).public()
    firsts: dict[CarrierStatus, datetime] = {}
    for entry in sorted(state.timeline, key=lambda e: e.occurred_at):
        firsts.setdefault(entry.status, entry.occurred_at)
    scans = [at for status, at in firsts.items() if status is not CarrierStatus.LABEL_CREATED]
    return ShipmentProjection(
        version=version,
        updated_at=now,
        document=document,
        shipment_key=tracking.shipment_key(shipment),
        order_name=shipment.order_name,
        first_name=shipment.customer.first_name,
        shipping_speed=shipment.shipping_speed,
        registered_at=state.started_at,
        first_scan_at=min(scans) if scans else None,
        delivered_at=firsts.get(CarrierStatus.DELIVERED),
        estimated_delivery=state.estimated_delivery,
        exception_episodes=state.exception_episode,
        lost=state.lost_episode > 0,
        open_problem=state.phase in PROBLEMS,
    )


# A scan that moves no milestone (and changes no estimate, exception, message or note) only
# refreshes the timeline and the next deadline: such rows are written at most this often
# (a burst of scans in one write), the last of a burst when the interval has passed.
SCAN_WRITE_INTERVAL = timedelta(minutes=1)
_SCAN_ONLY = {"timeline", "timeline_omitted", "next_action", "unrecognised_codes"}


class Change(StrEnum):
    NONE = "none"
    SCAN = "scan"  # the timeline or the next deadline only
    MATERIAL = "material"


def change(written: ShipmentProjection | None, current: ShipmentProjection) -> Change:
    """What `current` says that the row written last does not."""
    if written is None:
        return Change.MATERIAL
    if written.material() == current.material():
        return Change.NONE
    before, after = _beyond_scans(written), _beyond_scans(current)
    return Change.SCAN if before == after else Change.MATERIAL


def write_due(written: ShipmentProjection | None, current: ShipmentProjection) -> datetime | None:
    """When the row should be written: now (`current.updated_at`), later (a scan within
    `SCAN_WRITE_INTERVAL` of the last write), or never (nothing new)."""
    kind = change(written, current)
    if kind is Change.NONE:
        return None
    if kind is Change.SCAN and written is not None:
        return max(current.updated_at, written.updated_at + SCAN_WRITE_INTERVAL)
    return current.updated_at


def _beyond_scans(row: ShipmentProjection) -> dict[str, object]:
    scans_only = dict.fromkeys(_SCAN_ONLY, True)
    return row.model_dump(
        mode="json", exclude={"version": True, "updated_at": True, "document": scans_only}
    )


def as_of(row: ShipmentProjection, now: datetime) -> ShipmentProjection:
    """The row as it stands at `now`: one whose next action was the end of tracking, due by
    now with nothing waiting, reads as the row the workflow would write when it ends then
    (`policy.next_action`, `ShipmentView.public`), written at that time."""
    document = row.document
    action = document.next_action
    due = action.due_at
    if document.closed_reason or action.kind != "complete" or due is None or due > now:
        return row
    if document.waiting or not action.detail:
        return row
    ended = document.model_copy(
        update={
            "closed_reason": action.detail,
            "summary": f"{document.summary} — tracking ended ({action.detail})",
            "next_action": NextAction(
                kind="complete", detail=action.detail, timezone=action.timezone
            ),
        }
    )
    return row.model_copy(update={"document": ended, "updated_at": due})
