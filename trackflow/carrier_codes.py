"""A carrier as a code: what a platform or an API caller calls the courier ("UPS", "DHL Express",
"Deutsche Post DHL", "=HYPERLINK(...)") becomes one `[a-z0-9_]` code, the courier code of the
detection table (`trackflow.carriers.formats.COURIER_NAMES`) when the name is one of its couriers',
else the name slugified. The free text is kept beside it as a label (`Shipment.carrier_label`),
for display only: nothing matches, groups or links on it.

Standalone (no import of the models or the carrier table) so that `trackflow.models` can use it.
"""

from __future__ import annotations

import re
import unicodedata

_NOT_CODE = re.compile(r"[^a-z0-9]+")
MAX_CODE = 64

# slug of a name a platform uses -> the detection table's courier code
_ALIASES: dict[str, str] = {
    "amazon_logistics": "amazon",
    "amazon_logistics_us": "amazon",
    "amazon_logistics_uk": "amazon",
    "amazon_shipping": "amazon",
    "canada_post_postes_canada": "canada_post",
    "postes_canada": "canada_post",
    "canpar_express": "canpar",
    "dhl_express": "dhl",
    "dhl_paket": "dhl",
    "dhl_parcel_de": "dhl",
    "dhl_germany": "dhl",
    "deutsche_post_dhl": "dhl",
    "dhl_ecommerce": "dhl",
    "dhl_ecommerce_asia": "dhl",
    "dhl_e_commerce": "dhl",
    "dpd_de": "dpd",
    "dpd_uk": "dpd",
    "dpd_local": "dpd",
    "federal_express": "fedex",
    "fedex_express": "fedex",
    "fedex_ground": "fedex",
    "fedex_smartpost": "fedex",
    "gofo_express": "gofo",
    "landmark_global": "landmark",
    "old_dominion_freight_line": "old_dominion",
    "odfl": "old_dominion",
    "on_trac": "ontrac",
    "laser_ship": "lasership",
    "spee_dee": "speedee",
    "spee_dee_delivery": "speedee",
    "united_parcel_service": "ups",
    "ups_mail_innovations": "ups",
    "ups_surepost": "ups",
    "united_states_postal_service": "usps",
    "u_s_postal_service": "usps",
    "us_postal_service": "usps",
    "yun_express": "yunexpress",
}
# Names that say no carrier at all: a shipment "declared" so is one with nothing declared.
_NO_CARRIER = frozenset({"other", "unknown", "none", "n_a", "na", "custom"})


def carrier_label(name: str | None) -> str | None:
    """The name as a person wrote it, whitespace collapsed; None when blank."""
    if name is None:
        return None
    label = " ".join(name.split())
    return label or None


def carrier_code(name: str | None) -> str | None:
    """`[a-z0-9_]` code of a carrier name (idempotent: a code maps to itself); None when the name
    is blank, names no carrier ("Other") or has no letter or digit."""
    if name is None:
        return None
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = _NOT_CODE.sub("_", ascii_name.lower()).strip("_")[:MAX_CODE].strip("_")
    if not slug or slug in _NO_CARRIER:
        return None
    return _ALIASES.get(slug, slug)
