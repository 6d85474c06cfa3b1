"""Which carrier to name in messages and links when the platform and the number disagree.

Shopify may say "FedEx" for a USPS IMpb number (FedEx Ground Economy / SmartPost and UPS Mail
Innovations hand parcels to USPS for the last mile, and the number USPS tracks is the one on
the label). A number in a format only one courier uses is the better witness: we then use that
courier for links and wording and keep what the platform said.

But many shapes are shared: a DHL Paket piece code is also a valid USPS 20-digit number, a
12-digit FedEx Express number can be a Purolator one (see tests/test_carrier_ambiguity.py for
every pair of the table). The rule, and the reason pinned with it (`CarrierReason`):

- a declared carrier stands when the number fits one of its formats (check digit or not), when
  the number's shape is one formats of several couriers fit, or when the table has no format of
  that carrier (Hermes, GLS, PostNL...: nothing to contradict it with);
- otherwise a number validly in the formats of one courier replaces the declared carrier;
- with nothing declared, the one courier whose formats validly fit is taken; between several,
  the one that delivers to the destination country, else the table's ranking (`detect`).
"""

from __future__ import annotations

from trackflow.carriers import CarrierMatch, detect
from trackflow.carriers.formats import COURIER_NAMES, FORMATS_BY_ID
from trackflow.models import CarrierReason, Shipment


def with_detected_carrier(shipment: Shipment) -> Shipment:
    return resolve_carrier(shipment)[0]


def resolve_carrier(shipment: Shipment) -> tuple[Shipment, CarrierReason]:
    """The shipment with the carrier it is followed with, and why (see the module docstring)."""
    declared = shipment.declared_carrier or shipment.carrier
    matches = detect(shipment.tracking_number)
    valid = [m for m in matches if m.valid]
    if declared is not None:
        fitting = {m.courier for m in matches}
        if declared in fitting:
            return _declared(shipment, declared), CarrierReason.DECLARED_FITS
        if len(fitting) > 1:
            return _declared(shipment, declared), CarrierReason.SHARED_SHAPE
        if not valid:
            return _declared(shipment, declared), CarrierReason.UNRECOGNISED
        if declared not in COURIER_NAMES:
            return _declared(shipment, declared), CarrierReason.DECLARED_OUTSIDE_TABLE
        return _detected(shipment, valid[0], declared), CarrierReason.NUMBER_FORMAT
    couriers = {m.courier for m in valid}
    if not valid:
        return shipment, CarrierReason.UNRECOGNISED
    if len(couriers) == 1:
        return _detected(shipment, valid[0], None), CarrierReason.DETECTED
    there = [m for m in valid if _delivers_to(m, _country(shipment))]
    if len({m.courier for m in there}) == 1:
        return _detected(shipment, there[0], None), CarrierReason.DESTINATION_COUNTRY
    return _detected(shipment, valid[0], None), CarrierReason.RANKING


def _declared(shipment: Shipment, declared: str) -> Shipment:
    if shipment.carrier == declared and shipment.declared_carrier is None:
        return shipment
    return shipment.model_copy(
        update={"carrier": declared, "declared_carrier": None, "detected_format": None}
    )


def _detected(shipment: Shipment, match: CarrierMatch, declared: str | None) -> Shipment:
    # A link the platform made for another courier than the number's is not followed.
    url = match.tracking_url if declared is not None else shipment.tracking_url
    return shipment.model_copy(
        update={
            "carrier": match.courier,
            "declared_carrier": declared,
            "detected_format": match.format,
            "tracking_url": url or match.tracking_url,
        }
    )


def _country(shipment: Shipment) -> str | None:
    address = shipment.customer.address
    code = address.country_code if address else None
    return code.strip().upper() if code else None


def _delivers_to(match: CarrierMatch, country: str | None) -> bool:
    served = FORMATS_BY_ID[match.format].countries
    return country is not None and (served is None or country in served)
