"""Which time zone a customer lives in, for quiet hours and for showing times.

Pure and deterministic (no clock, no I/O of ours), safe inside the workflow sandbox. All zone data
comes from **pytz** (never `zoneinfo`: ZoneInfo objects fail in the sandbox).

Resolution order, first hit wins (`ResolvedZone.source` says which one):

1. `customer` — `customer.timezone`, if pytz knows it (case-insensitive, canonicalised);
   an unknown name is ignored, not an error.
2. `address_region` — the address's US state/territory, Canadian province/territory or
   Australian state/territory (`province_code`, or the full name in `province`).
3. `address_country` — the address's country: its only zone, or for a multi-zone country its
   most populous zone (`_COUNTRY_MAIN_ZONE`) or else the first zone pytz lists.
4. `store_default` — the `default` argument.

Limits (a best guess, not a geocoder):

- **Split states/provinces** map to the zone of most of their population: e.g. all of Florida is
  America/New_York (the western panhandle is Central), Tennessee America/Chicago (the east is
  Eastern), Kentucky America/New_York, Indiana America/Indiana/Indianapolis, Idaho America/Boise,
  Oregon America/Los_Angeles, Texas America/Chicago (El Paso is Mountain), Nebraska, Kansas and
  the Dakotas America/Chicago, Ontario America/Toronto (the north-west is Central), Quebec
  America/Toronto (Montreal; the Magdalen Islands are Atlantic), British Columbia
  America/Vancouver (the north-east is Mountain), New South Wales Australia/Sydney (Broken Hill
  is on Adelaide time).
- **Multi-zone countries** without a region table (RU, BR, MX, ID, KZ, ...) get one zone for the
  whole country, so e.g. a Vladivostok address gets Moscow time.
- **No ZIP/postcode-level precision**, and no use of the phone number's area code.
- Zone rules are those of the installed pytz release (whose data ends in 2037); upgrading pytz can
  change a result, so the outcome belongs in workflow state/history, not be recomputed on replay.
"""

from __future__ import annotations

from typing import Literal

import pytz

from trackflow.models import Address, Model, Shipment

ZoneSource = Literal["customer", "address_region", "address_country", "store_default"]


class ResolvedZone(Model):
    name: str
    """An IANA zone name as pytz spells it."""
    source: ZoneSource


# country code -> region code -> (full name, zone)
_REGIONS: dict[str, dict[str, tuple[str, str]]] = {
    "US": {
        "AL": ("Alabama", "America/Chicago"),
        "AK": ("Alaska", "America/Anchorage"),
        "AZ": ("Arizona", "America/Phoenix"),
        "AR": ("Arkansas", "America/Chicago"),
        "CA": ("California", "America/Los_Angeles"),
        "CO": ("Colorado", "America/Denver"),
        "CT": ("Connecticut", "America/New_York"),
        "DE": ("Delaware", "America/New_York"),
        "DC": ("District of Columbia", "America/New_York"),
        "FL": ("Florida", "America/New_York"),
        "GA": ("Georgia", "America/New_York"),
        "HI": ("Hawaii", "Pacific/Honolulu"),
        "ID": ("Idaho", "America/Boise"),
        "IL": ("Illinois", "America/Chicago"),
        "IN": ("Indiana", "America/Indiana/Indianapolis"),
        "IA": ("Iowa", "America/Chicago"),
        "KS": ("Kansas", "America/Chicago"),
        "KY": ("Kentucky", "America/New_York"),
        "LA": ("Louisiana", "America/Chicago"),
        "ME": ("Maine", "America/New_York"),
        "MD": ("Maryland", "America/New_York"),
        "MA": ("Massachusetts", "America/New_York"),
        "MI": ("Michigan", "America/Detroit"),
        "MN": ("Minnesota", "America/Chicago"),
        "MS": ("Mississippi", "America/Chicago"),
        "MO": ("Missouri", "America/Chicago"),
        "MT": ("Montana", "America/Denver"),
        "NE": ("Nebraska", "America/Chicago"),
        "NV": ("Nevada", "America/Los_Angeles"),
        "NH": ("New Hampshire", "America/New_York"),
        "NJ": ("New Jersey", "America/New_York"),
        "NM": ("New Mexico", "America/Denver"),
        "NY": ("New York", "America/New_York"),
        "NC": ("North Carolina", "America/New_York"),
        "ND": ("North Dakota", "America/Chicago"),
        "OH": ("Ohio", "America/New_York"),
        "OK": ("Oklahoma", "America/Chicago"),
        "OR": ("Oregon", "America/Los_Angeles"),
        "PA": ("Pennsylvania", "America/New_York"),
        "RI": ("Rhode Island", "America/New_York"),
        "SC": ("South Carolina", "America/New_York"),
        "SD": ("South Dakota", "America/Chicago"),
        "TN": ("Tennessee", "America/Chicago"),
        "TX": ("Texas", "America/Chicago"),
        "UT": ("Utah", "America/Denver"),
        "VT": ("Vermont", "America/New_York"),
        "VA": ("Virginia", "America/New_York"),
        "WA": ("Washington", "America/Los_Angeles"),
        "WV": ("West Virginia", "America/New_York"),
        "WI": ("Wisconsin", "America/Chicago"),
        "WY": ("Wyoming", "America/Denver"),
        "PR": ("Puerto Rico", "America/Puerto_Rico"),
        "GU": ("Guam", "Pacific/Guam"),
        "VI": ("U.S. Virgin Islands", "America/St_Thomas"),
        "AS": ("American Samoa", "Pacific/Pago_Pago"),
        "MP": ("Northern Mariana Islands", "Pacific/Saipan"),
    },
    "CA": {
        "BC": ("British Columbia", "America/Vancouver"),
        "AB": ("Alberta", "America/Edmonton"),
        "SK": ("Saskatchewan", "America/Regina"),
        "MB": ("Manitoba", "America/Winnipeg"),
        "ON": ("Ontario", "America/Toronto"),
        "QC": ("Quebec", "America/Toronto"),
        "NB": ("New Brunswick", "America/Moncton"),
        "NS": ("Nova Scotia", "America/Halifax"),
        "PE": ("Prince Edward Island", "America/Halifax"),
        "NL": ("Newfoundland and Labrador", "America/St_Johns"),
        "YT": ("Yukon", "America/Whitehorse"),
        "NT": ("Northwest Territories", "America/Yellowknife"),
        "NU": ("Nunavut", "America/Iqaluit"),
    },
    "AU": {
        "NSW": ("New South Wales", "Australia/Sydney"),
        "VIC": ("Victoria", "Australia/Melbourne"),
        "QLD": ("Queensland", "Australia/Brisbane"),
        "SA": ("South Australia", "Australia/Adelaide"),
        "WA": ("Western Australia", "Australia/Perth"),
        "TAS": ("Tasmania", "Australia/Hobart"),
        "ACT": ("Australian Capital Territory", "Australia/Sydney"),
        "NT": ("Northern Territory", "Australia/Darwin"),
    },
}

# Other spellings seen in the `province` field: (country, name) -> region code.
_ALIASES: dict[tuple[str, str], str] = {
    ("US", "washington dc"): "DC",
    ("US", "washington d.c."): "DC",
    ("US", "us virgin islands"): "VI",
    ("US", "virgin islands"): "VI",
    ("CA", "québec"): "QC",
    ("CA", "newfoundland"): "NL",
    ("CA", "yukon territory"): "YT",
}

_NAMES: dict[tuple[str, str], str] = {
    (country, name.casefold()): code
    for country, regions in _REGIONS.items()
    for code, (name, _zone) in regions.items()
} | _ALIASES

# Multi-zone countries whose first zone in pytz's (geographic) list is not where most people live.
_COUNTRY_MAIN_ZONE: dict[str, str] = {
    "AU": "Australia/Sydney",  # pytz lists Australia/Lord_Howe first
    "BR": "America/Sao_Paulo",  # America/Noronha
    "CA": "America/Toronto",  # America/St_Johns
    "RU": "Europe/Moscow",  # Europe/Kaliningrad
    "UA": "Europe/Kyiv",  # Europe/Simferopol
}


def _valid_zone(name: str | None) -> str | None:
    """The canonical pytz spelling of `name`, or None if pytz does not know it."""
    if not name or not name.strip():
        return None
    try:
        return str(pytz.timezone(name.strip()).zone)
    except pytz.UnknownTimeZoneError:
        return None


def _country(address: Address) -> str | None:
    code = (address.country_code or "").strip().upper()
    return code or None


def _region(address: Address, country: str) -> str | None:
    """The address's region code, normalised through the tables where the country has one."""
    regions = _REGIONS.get(country)
    if regions is None:
        code = (address.province_code or "").strip().upper().removeprefix(f"{country}-")
        return code or None
    for raw in (address.province_code, address.province):
        text = (raw or "").strip()
        code = text.upper().removeprefix(f"{country}-")
        if code in regions:
            return code
        if found := _NAMES.get((country, text.casefold())):
            return found
    return None


def region_code(shipment: Shipment) -> str | None:
    """ISO 3166-2-style code of the customer's address, e.g. "US-FL"; None if unknown."""
    address = shipment.customer.address
    country = _country(address) if address else None
    if address is None or country is None:
        return None
    region = _region(address, country)
    return f"{country}-{region}" if region else None


# Read once when the module is imported (on the host), never lazily: pytz loads its country
# table from disk on first use, and the workflow sandbox forbids that read.
_COUNTRY_ZONE: dict[str, str] = {
    country: zones[0] for country, zones in pytz.country_timezones.items() if zones
} | _COUNTRY_MAIN_ZONE


def _country_zone(country: str) -> str | None:
    return _COUNTRY_ZONE.get(country)


def resolve_timezone(shipment: Shipment, default: str) -> ResolvedZone:
    """The customer's zone (see the module docstring for the order and its limits).

    `default` (the store's zone) must be a zone pytz knows: it is returned canonicalised.
    Raises `pytz.UnknownTimeZoneError` otherwise, even when it is not needed, so that a bad
    store setting fails loudly rather than only for some customers.
    """
    store_zone = str(pytz.timezone(default.strip()).zone)
    customer = shipment.customer
    if zone := _valid_zone(customer.timezone):
        return ResolvedZone(name=zone, source="customer")
    address = customer.address
    country = _country(address) if address else None
    if address is not None and country is not None:
        region = _region(address, country)
        if region and country in _REGIONS and region in _REGIONS[country]:
            return ResolvedZone(name=_REGIONS[country][region][1], source="address_region")
        if zone := _country_zone(country):
            return ResolvedZone(name=zone, source="address_country")
    return ResolvedZone(name=store_zone, source="store_default")


def preload_zone_data() -> None:
    """Load every zone into pytz's cache. Temporal's workflow sandbox forbids the file reads
    pytz makes lazily, so the host process calls this once before running workflows."""
    for name in pytz.all_timezones:
        pytz.timezone(name)
