"""FedEx tracking codes -> our status taxonomy. Pure, table-driven, no I/O.

Input: a scan event's ``eventType`` or ``derivedStatusCode`` (Track API
``scanEvents[]``), or ``latestStatusDetail.code``/``derivedCode``; all use the legacy FedEx
"Tracking Status Codes" list below. The detail (``eventDescription`` or
``exceptionDescription``) may refine the kind of an exception (see ``_direct``).

Judgement calls (the list names codes, not their customer meaning):

* Pre-pickup codes (AP, DS, DR, EP) count as ``label_created``: nothing has moved yet.
* ``EA`` is both "Enroute to Airport" and the regulatory "Export Approved"; both are in transit.
* ``CA`` Shipment Cancelled and the dead return-label codes (LP cancelled, RD expired) have no
  status of their own: ``exception``/``unknown`` so a person looks at them.
* Delivery-option (CDO) requests RR/RM/RC change nothing physical: ``in_transit``.
* The agent codes (CA Carrier, RC Recipient, SH, CU, BR, TP) name parties, not events, and are
  not mapped as such (CA and RC are mapped as the event codes they collide with).
"""

from __future__ import annotations

from trackflow.models import CarrierStatus, ExceptionKind
from trackflow.sources._direct import Mapped, lookup
from trackflow.sources.normalized import Normalized

_LABEL = (CarrierStatus.LABEL_CREATED, None)
_MOVING = (CarrierStatus.IN_TRANSIT, None)
_OUT = (CarrierStatus.OUT_FOR_DELIVERY, None)
_PICKUP = (CarrierStatus.AVAILABLE_FOR_PICKUP, None)


def _exception(kind: ExceptionKind) -> Mapped:
    return (CarrierStatus.EXCEPTION, kind)


CODES: dict[str, Mapped] = {
    "AA": _MOVING,  # At Airport
    "AC": _MOVING,  # At Canada Post facility
    "AD": _OUT,  # At Delivery
    "AF": _MOVING,  # At local FedEx facility
    "AO": _MOVING,  # At Origin
    "AP": _LABEL,  # At Pickup
    "AR": _MOVING,  # Arrived at
    "AX": _MOVING,  # At USPS facility
    "CA": _exception(ExceptionKind.UNKNOWN),  # Shipment Cancelled
    "CH": _MOVING,  # Location Changed
    "DD": _exception(ExceptionKind.CARRIER_DELAY),  # Delivery Delay
    "DE": _exception(ExceptionKind.FAILED_ATTEMPT),  # Delivery Exception
    "DL": (CarrierStatus.DELIVERED, None),  # Delivered
    "DP": _MOVING,  # Departed
    "DR": _LABEL,  # Vehicle furnished but not used
    "DS": _LABEL,  # Vehicle Dispatched
    "DY": _exception(ExceptionKind.CARRIER_DELAY),  # Delay
    "EA": _MOVING,  # Enroute to Airport / Export Approved
    "ED": _OUT,  # Enroute to Delivery
    "EO": _MOVING,  # Enroute to Origin Airport
    "EP": _LABEL,  # Enroute to Pickup
    "FD": _MOVING,  # At FedEx Destination
    "HL": _PICKUP,  # Hold at Location
    "HP": _PICKUP,  # Ready for Recipient Pickup
    "IT": _MOVING,  # In Transit
    "IX": _MOVING,  # In transit (see Details)
    "LO": _MOVING,  # Left Origin
    "OC": _LABEL,  # Order Created
    "OD": _OUT,  # Out for Delivery
    "OF": _MOVING,  # At FedEx origin facility
    "OX": _MOVING,  # Shipment information sent to USPS
    "PD": _exception(ExceptionKind.CARRIER_DELAY),  # Pickup Delay
    "PF": _MOVING,  # Plane in Flight
    "PL": _MOVING,  # Plane Landed
    "PM": _MOVING,  # In Progress
    "PU": _MOVING,  # Picked Up
    "PX": _MOVING,  # Picked up (see Details)
    "RR": _MOVING,  # CDO requested
    "RM": _MOVING,  # CDO Modified
    "RC": _MOVING,  # CDO Cancelled
    "RS": (CarrierStatus.RETURNED, None),  # Return to Shipper
    "RP": _LABEL,  # Return label link emailed to return sender
    "LP": _exception(ExceptionKind.UNKNOWN),  # Return label link cancelled by originator
    "RG": _LABEL,  # Return label link expiring soon
    "RD": _exception(ExceptionKind.UNKNOWN),  # Return label link expired
    "SE": _exception(ExceptionKind.UNKNOWN),  # Shipment Exception
    "SF": _MOVING,  # At Sort Facility
    "SP": _MOVING,  # Split Status
    "TR": _MOVING,  # Transfer
    # Regulatory
    "CC": _MOVING,  # Cleared Customs
    "CD": _exception(ExceptionKind.CUSTOMS_HOLD),  # Clearance Delay
    "CP": _MOVING,  # Clearance in Progress
}


def normalize(code: str, detail: str | None = None) -> Normalized:
    """A FedEx event/status code (any case) -> our status; unknown codes kept with known=False."""
    return lookup(CODES, code, detail)
