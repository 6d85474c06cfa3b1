"""trackflow.timezones: which zone a customer is in, and their region code."""

from __future__ import annotations

from typing import Any

import pytest
import pytz

from tests.factories import make_customer, make_shipment
from trackflow.models import Address, Shipment
from trackflow.timezones import _REGIONS, ResolvedZone, region_code, resolve_timezone

STORE = "Europe/Berlin"


def shipment_at(timezone: str | None = None, **address: Any) -> Shipment:
    customer = make_customer().model_copy(
        update={"timezone": timezone, "address": Address(**address) if address else None}
    )
    return make_shipment(customer=customer)


def zone_of(timezone: str | None = None, **address: Any) -> ResolvedZone:
    return resolve_timezone(shipment_at(timezone, **address), default=STORE)


def test_tables_cover_every_state_and_use_real_zones() -> None:
    states = set(_REGIONS["US"]) - {"DC", "PR", "GU", "VI", "AS", "MP"}
    assert len(states) == 50
    assert len(_REGIONS["CA"]) == 13
    assert len(_REGIONS["AU"]) == 8
    for regions in _REGIONS.values():
        for _name, zone in regions.values():
            assert zone in pytz.all_timezones_set, zone


@pytest.mark.parametrize(
    ("country", "province_code", "zone"),
    [
        ("US", "FL", "America/New_York"),
        ("US", "KY", "America/New_York"),
        ("US", "TN", "America/Chicago"),
        ("US", "IN", "America/Indiana/Indianapolis"),
        ("US", "TX", "America/Chicago"),
        ("US", "ND", "America/Chicago"),
        ("US", "SD", "America/Chicago"),
        ("US", "NE", "America/Chicago"),
        ("US", "KS", "America/Chicago"),
        ("US", "ID", "America/Boise"),
        ("US", "OR", "America/Los_Angeles"),
        ("US", "AZ", "America/Phoenix"),
        ("US", "AK", "America/Anchorage"),
        ("US", "HI", "Pacific/Honolulu"),
        ("US", "MI", "America/Detroit"),
        ("US", "OK", "America/Chicago"),
        ("US", "DC", "America/New_York"),
        ("US", "PR", "America/Puerto_Rico"),
        ("US", "GU", "Pacific/Guam"),
        ("US", "VI", "America/St_Thomas"),
        ("US", "AS", "Pacific/Pago_Pago"),
        ("US", "MP", "Pacific/Saipan"),
        ("CA", "BC", "America/Vancouver"),
        ("CA", "AB", "America/Edmonton"),
        ("CA", "SK", "America/Regina"),
        ("CA", "MB", "America/Winnipeg"),
        ("CA", "ON", "America/Toronto"),
        ("CA", "QC", "America/Toronto"),
        ("CA", "NB", "America/Moncton"),
        ("CA", "NS", "America/Halifax"),
        ("CA", "PE", "America/Halifax"),
        ("CA", "NL", "America/St_Johns"),
        ("CA", "YT", "America/Whitehorse"),
        ("CA", "NT", "America/Yellowknife"),
        ("CA", "NU", "America/Iqaluit"),
        ("AU", "NSW", "Australia/Sydney"),
        ("AU", "QLD", "Australia/Brisbane"),
        ("AU", "WA", "Australia/Perth"),
        ("AU", "NT", "Australia/Darwin"),
    ],
)
def test_region_tables(country: str, province_code: str, zone: str) -> None:
    resolved = zone_of(country_code=country, province_code=province_code)
    assert resolved == ResolvedZone(name=zone, source="address_region")


@pytest.mark.parametrize(
    ("address", "zone"),
    [
        ({"country_code": "US", "province": "Florida"}, "America/New_York"),
        ({"country_code": "us", "province_code": "tn"}, "America/Chicago"),
        ({"country_code": "US", "province_code": "US-AZ"}, "America/Phoenix"),
        ({"country_code": "US", "province": " new york "}, "America/New_York"),
        ({"country_code": "US", "province": "Washington DC"}, "America/New_York"),
        ({"country_code": "US", "province": "WA"}, "America/Los_Angeles"),
        ({"country_code": "CA", "province": "Québec"}, "America/Toronto"),
        ({"country_code": "CA", "province": "British Columbia"}, "America/Vancouver"),
        ({"country_code": "AU", "province": "Western Australia"}, "Australia/Perth"),
        # a wrong code but a right name: the name wins
        ({"country_code": "US", "province_code": "XX", "province": "Texas"}, "America/Chicago"),
    ],
)
def test_region_by_full_name_or_loose_code(address: dict[str, str], zone: str) -> None:
    assert zone_of(**address) == ResolvedZone(name=zone, source="address_region")


@pytest.mark.parametrize(
    ("country", "zone"),
    [
        ("FR", "Europe/Paris"),  # single zone
        ("JP", "Asia/Tokyo"),
        ("IN", "Asia/Kolkata"),
        ("DE", "Europe/Berlin"),  # multi-zone: the first listed
        ("MX", "America/Mexico_City"),
        ("ID", "Asia/Jakarta"),
        ("RU", "Europe/Moscow"),  # multi-zone: pytz's first (Kaliningrad) overridden
        ("BR", "America/Sao_Paulo"),  # ... (Noronha)
        ("UA", "Europe/Kyiv"),  # ... (Simferopol)
        ("AU", "Australia/Sydney"),  # no usable state: ... (Lord_Howe)
        ("CA", "America/Toronto"),  # ... (St_Johns)
        ("US", "America/New_York"),
        ("nz", "Pacific/Auckland"),
    ],
)
def test_country_fallback(country: str, zone: str) -> None:
    assert zone_of(country_code=country) == ResolvedZone(name=zone, source="address_country")


def test_unknown_state_falls_back_to_the_country() -> None:
    resolved = zone_of(country_code="US", province_code="AE")  # armed forces Europe
    assert resolved == ResolvedZone(name="America/New_York", source="address_country")


def test_customer_timezone_wins_and_is_canonicalised() -> None:
    resolved = zone_of("america/chicago", country_code="US", province_code="NY")
    assert resolved == ResolvedZone(name="America/Chicago", source="customer")
    assert zone_of(" Asia/Kathmandu ").name == "Asia/Kathmandu"


@pytest.mark.parametrize("bad", ["Mars/Olympus_Mons", "", "   ", "EST-5", "America/New York"])
def test_invalid_customer_timezone_falls_through(bad: str) -> None:
    resolved = zone_of(bad, country_code="US", province_code="FL")
    assert resolved == ResolvedZone(name="America/New_York", source="address_region")
    assert zone_of(bad) == ResolvedZone(name=STORE, source="store_default")


@pytest.mark.parametrize(
    "address",
    [
        {},  # no address at all
        {"city": "Springfield"},  # no country
        {"country_code": "XX", "province_code": "FL"},  # a country pytz does not know
        {"country": "United States", "province_code": "FL"},  # only the country's name
    ],
)
def test_store_default(address: dict[str, str]) -> None:
    assert zone_of(**address) == ResolvedZone(name=STORE, source="store_default")


def test_store_default_is_validated_and_canonicalised() -> None:
    shipment = shipment_at()
    assert resolve_timezone(shipment, "us/eastern").name == "US/Eastern"
    with pytest.raises(pytz.UnknownTimeZoneError):
        resolve_timezone(shipment, "Nowhere/Special")


@pytest.mark.parametrize(
    ("address", "code"),
    [
        ({"country_code": "US", "province_code": "FL"}, "US-FL"),
        ({"country_code": "us", "province_code": "ok"}, "US-OK"),
        ({"country_code": "US", "province": "Florida"}, "US-FL"),
        ({"country_code": "US", "province_code": "US-FL"}, "US-FL"),
        ({"country_code": "CA", "province": "Québec"}, "CA-QC"),
        ({"country_code": "AU", "province_code": "nsw"}, "AU-NSW"),
        ({"country_code": "DE", "province_code": "by"}, "DE-BY"),  # no table: as given
        ({"country_code": "US", "province_code": "ZZ"}, None),
        ({"country_code": "US"}, None),
        ({"country_code": "DE", "province": "Bayern"}, None),
        ({"province_code": "FL"}, None),
        ({}, None),
    ],
)
def test_region_code(address: dict[str, str], code: str | None) -> None:
    assert region_code(shipment_at(**address)) == code
