"""Where a parcel stands: milestone ranks and the triggers that tell of a delay."""

from __future__ import annotations

from trackflow.models import CarrierStatus, Milestone, Trigger
from trackflow.shipment_state import Phase

DELIVERED_RANK = Milestone.DELIVERED.rank

MILESTONE_STATUSES = {CarrierStatus(m) for m in Milestone}

DELAY_TRIGGERS = {Trigger.EXCEPTION, Trigger.LOST, Trigger.STALE}


def phase_at(rank: int) -> Phase:
    return Phase.PENDING if rank < 0 else Phase(Milestone.at(rank))
