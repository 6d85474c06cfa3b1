"""Which carrier to name in messages and links when the platform and the number disagree.

Shopify may say "FedEx" for a USPS IMpb number (FedEx Ground Economy / SmartPost and UPS Mail
Innovations hand parcels to USPS for the last mile, and the number USPS tracks is the one on
the label). The number is the better witness: when it validly belongs to another courier, we
use that courier for links and wording and keep what the platform said.
"""

from __future__ import annotations

from trackflow.carriers import detect_best
from trackflow.models import Shipment


def with_detected_carrier(shipment: Shipment) -> Shipment:
    match = detect_best(shipment.tracking_number)
    if match is None or match.courier == shipment.carrier:
        return shipment
    declared = shipment.declared_carrier or shipment.carrier
    url = shipment.tracking_url if declared is None else match.tracking_url
    return shipment.model_copy(
        update={
            "carrier": match.courier,
            "declared_carrier": declared,
            "detected_format": match.format,
            "tracking_url": url or shipment.tracking_url or match.tracking_url,
        }
    )
