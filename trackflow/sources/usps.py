"""USPS tracking codes -> our status taxonomy. Pure, table-driven, no I/O.

Input: a Tracking API v3 ``trackingEvents[].eventCode`` (Publication 199 Appendix G-4 codes,
two characters) or the response's ``statusCategory`` text ("Out for Delivery", ...). Codes are
matched case-insensitively; categories case- and space-insensitively. The detail (``eventType``
or ``status`` text) may refine the kind of an exception (see ``_direct``).

Judgement calls:

* ``07`` is "Arrival at Unit" in Pub 199 but one aggregator maps it to out-for-delivery; arrival
  at the delivery unit precedes the carrier leaving, so it is ``in_transit`` here (``OF`` is the
  out-for-delivery scan).
* ``GC`` Return Receipt Associated is paperwork, usually at mailing: ``label_created``.
* ``04`` Refused goes back to the sender: ``exception``/``return_to_sender``; ``29`` Return to
  Sender is the return itself: ``returned``.
* ``PC NT U1 T1 A1 L1 SF`` (third-party, unverified) are movement scans: ``in_transit``.
"""

from __future__ import annotations

from trackflow.models import CarrierStatus, ExceptionKind
from trackflow.sources._direct import Mapped, lookup
from trackflow.sources.normalized import Normalized

_LABEL = (CarrierStatus.LABEL_CREATED, None)
_MOVING = (CarrierStatus.IN_TRANSIT, None)
_ADDRESS = (CarrierStatus.EXCEPTION, ExceptionKind.ADDRESS_ISSUE)

EVENT_CODES: dict[str, Mapped] = {
    "83": _MOVING,  # Tendered To Postal Service
    "89": _LABEL,  # Merchant Order Receipt Notification, USPS Awaiting Item
    "AD": _MOVING,  # Acceptance At Destination
    "GC": _LABEL,  # Return Receipt Associated
    "GX": _LABEL,  # Shipping Label Created
    "MA": _LABEL,  # Pre-shipment Info Sent To USPS
    "OA": _MOVING,  # Origin Acceptance
    "TM": _MOVING,  # Shipment Received, Package Acceptance Pending
    "UA": _MOVING,  # Accepted At USPS Facility
    "01": (CarrierStatus.DELIVERED, None),  # Delivered (e.g. In/At Mailbox)
    "07": _MOVING,  # Arrival at Unit
    "OF": (CarrierStatus.OUT_FOR_DELIVERY, None),  # Out for Delivery
    "03": _MOVING,  # Accept/Pickup
    "04": (CarrierStatus.EXCEPTION, ExceptionKind.RETURN_TO_SENDER),  # Refused
    "05": _ADDRESS,  # Undeliverable as Addressed
    "10": _MOVING,  # Processed
    "21": _ADDRESS,  # No Such Number
    "22": _ADDRESS,  # Insufficient Address
    "23": _ADDRESS,  # Moved, Left No Address
    "29": (CarrierStatus.RETURNED, None),  # Return to Sender
    "DX": (CarrierStatus.EXCEPTION, ExceptionKind.CARRIER_DELAY),  # Delayed
    "PC": _MOVING,
    "NT": _MOVING,
    "U1": _MOVING,
    "T1": _MOVING,
    "A1": _MOVING,
    "L1": _MOVING,
    "SF": _MOVING,
}

# statusCategory values seen in the v3 API (the full list is not published).
STATUS_CATEGORIES: dict[str, Mapped] = {
    "out for delivery": (CarrierStatus.OUT_FOR_DELIVERY, None),
    "delivered": (CarrierStatus.DELIVERED, None),
    "preparing for delivery": _MOVING,
}

# Codes are short and upper case; categories are phrases: the two key spaces cannot collide.
_TABLE: dict[str, Mapped] = {**EVENT_CODES, **{k.upper(): v for k, v in STATUS_CATEGORIES.items()}}


def _key(raw: str) -> str:
    return " ".join(raw.split()).upper()


def normalize(code: str, detail: str | None = None) -> Normalized:
    """A USPS event code or statusCategory -> our status; unknown ones kept with known=False."""
    return lookup(_TABLE, code, detail, key=_key)
