"""DHL (Shipment Tracking - Unified API) status codes -> our taxonomy. Pure, table-driven.

Input: ``shipments[].status.statusCode`` or ``events[].statusCode``, one of ``pre-transit``,
``transit``, ``delivered``, ``failure``, ``unknown`` (plus ``return-transit``, reported by one
client, unverified). The detail is the division-specific ``status``/``description`` text.

The five codes are coarse, so the detail refines them:

* ``transit`` whose text says the parcel is out for delivery / with the delivery courier ->
  ``out_for_delivery``; says it is ready or available for pickup/collection ->
  ``available_for_pickup`` (:data:`TRANSIT_DETAILS`; wording unverified, matched loosely).
* ``failure`` -> ``exception``; the text may name the kind (weather, customs, address, ...).
* ``unknown`` is DHL saying it cannot classify the event: treated like an unrecognised code
  (``exception``/``unknown``, ``known=False``), the raw code and text kept.
"""

from __future__ import annotations

import re

from trackflow.models import CarrierStatus, ExceptionKind
from trackflow.sources._direct import Mapped, lookup
from trackflow.sources.normalized import Normalized

STATUS_CODES: dict[str, Mapped] = {
    "pre-transit": (CarrierStatus.LABEL_CREATED, None),
    "transit": (CarrierStatus.IN_TRANSIT, None),
    "delivered": (CarrierStatus.DELIVERED, None),
    "failure": (CarrierStatus.EXCEPTION, ExceptionKind.UNKNOWN),
    "return-transit": (CarrierStatus.RETURNED, None),
}

# Documented, but carries no meaning we can act on.
AMBIGUOUS = frozenset({"unknown"})

TRANSIT_DETAILS: tuple[tuple[re.Pattern[str], CarrierStatus], ...] = (
    (
        re.compile(r"\b(out for delivery|with delivery courier|on the way to the recipient)\b"),
        CarrierStatus.OUT_FOR_DELIVERY,
    ),
    (
        re.compile(r"\b(ready|available) for (pick ?up|collection)\b"),
        CarrierStatus.AVAILABLE_FOR_PICKUP,
    ),
)


def _key(raw: str) -> str:
    return raw.strip().lower().replace("_", "-")


def normalize(code: str, detail: str | None = None) -> Normalized:
    """A DHL statusCode (+ status text) -> our status; unknown ones kept with known=False."""
    result = lookup(STATUS_CODES, code, detail, key=_key, ambiguous=AMBIGUOUS)
    if result.known and result.status is CarrierStatus.IN_TRANSIT and detail:
        text = " ".join(detail.split()).lower()
        for pattern, status in TRANSIT_DETAILS:
            if pattern.search(text):
                return result.model_copy(update={"status": status})
    return result
