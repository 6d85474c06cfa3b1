"""The read model's row for one shipment lifecycle (pure).

The workflow writes it to the ledger database at each material change (`changed`), batched
with the send activity when a decision sends messages (the activity adds what it sent,
`with_sent`), else with one `project_shipment` local activity. `GET /v1/shipments/{n}`, the
tracking page and the metrics read it there: no Temporal query per read.

`version` grows with every write of one lifecycle (it rides in the workflow's state across
continue-as-new), so a late retry of an older write never replaces a newer row.
"""

from __future__ import annotations

from datetime import datetime

from trackflow import policy as tracking
from trackflow.models import CarrierStatus, Shipment
from trackflow.shipment_state import Phase, ShipmentProjection, ShipmentState
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


def changed(written: ShipmentProjection | None, current: ShipmentProjection) -> bool:
    """Whether `current` says anything the row written last does not."""
    return written is None or written.material() != current.material()
