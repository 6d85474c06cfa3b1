"""Resolve, once and outside workflow code, the facts a shipment's decisions depend on that come
from tables or libraries: the carrier it is followed with (and why), the customer's time zone
and the region whose send-window rules apply.

Starters pin a shipment before it reaches a workflow (registration and every update); the
policy then reads `Shipment.pinned` and never re-derives, so replaying a 40-day-old history
after a `pytz` upgrade or an edit of `trackflow.timezones` gives the same decisions.
"""

from __future__ import annotations

from trackflow.carriers.resolve import resolve_carrier
from trackflow.carriers.validity import number_warnings
from trackflow.models import CarrierReason, PinnedFacts, Shipment
from trackflow.timezones import region_code, resolve_timezone
from trackflow.tracking_policy import TrackingPolicy


def pin(shipment: Shipment, policy: TrackingPolicy) -> Shipment:
    """The shipment with its resolved carrier and its facts, looked up afresh; the number's
    warnings are about the carrier the store named."""
    warnings = number_warnings(shipment.tracking_number, shipment.carrier)
    shipment, reason = resolve_carrier(shipment)
    facts = _look_up(shipment, policy, reason).model_copy(update={"warnings": warnings})
    return shipment.model_copy(update={"pinned": facts})


def pinned_facts(shipment: Shipment, policy: TrackingPolicy) -> PinnedFacts:
    """The shipment's pinned facts. Looked up on the spot only for a shipment never pinned (the
    pure tests' hand-made ones): a workflow's input is always pinned (see `contracts`)."""
    return shipment.pinned or _look_up(shipment, policy)


def _look_up(
    shipment: Shipment, policy: TrackingPolicy, carrier_reason: CarrierReason | None = None
) -> PinnedFacts:
    zone = resolve_timezone(shipment, policy.default_timezone)
    return PinnedFacts(
        timezone=zone.name,
        timezone_source=zone.source,
        region=region_code(shipment),
        carrier_reason=carrier_reason,
    )
