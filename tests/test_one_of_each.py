"""One of each (issue 19, item 5): one Brand built from the settings, one door to the zone
library (pytz), one spelling per contact address for comparing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from trackflow import zones
from trackflow.brand import DEFAULT_BRAND_COLOR, Brand
from trackflow.contact_address import comparable_address
from trackflow.email_address import canonical_email_or_none, comparable_email
from trackflow.settings import Settings
from trackflow.tickets import customer_digest


def test_the_settings_build_the_one_brand_of_messages_page_and_report(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        store_name="Acme Goods",
        support_phone="+1 502 555 0100",
        return_url="https://acme.test/returns",
        resolution_url="https://acme.test/claims",
        brand_color="#7C3AED",
        brand_logo_url="https://acme.test/logo.png",
        email_from="Acme <shop@acme.test>",
    )
    brand = settings.brand()
    assert isinstance(brand, Brand)
    assert (brand.store_name, brand.return_url, brand.resolution_url) == (
        "Acme Goods", "https://acme.test/returns", "https://acme.test/claims"
    )  # fmt: skip
    assert brand.primary_color == "#7c3aed" and brand.https_logo_url == "https://acme.test/logo.png"
    # A support phone is set: the sender's address is not offered as the contact.
    assert brand.support_email is None and brand.support_phone == "+1 502 555 0100"
    assert Settings(data_dir=tmp_path).brand().primary_color == DEFAULT_BRAND_COLOR
    assert Brand(logo_url="http://acme.test/logo.png").https_logo_url is None


def test_every_zone_comes_from_pytz_and_an_unknown_one_reads_as_utc() -> None:
    winter = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    new_york = zones.zone("America/New_York")
    assert winter.astimezone(new_york).tzname() == "EST"
    assert zones.zone_name(new_york) == "America/New_York"
    assert zones.zone_name(zones.zone_or_utc("Nowhere/Atlantis")) == "UTC"
    assert zones.zone_name(zones.zone_or_utc(None)) == "UTC"
    assert zones.canonical_zone(" america/new_york ") == "America/New_York"
    assert zones.canonical_zone("Nowhere/Atlantis") is None
    assert zones.is_zone("Europe/Paris") and not zones.is_zone("europe/paris")
    assert zones.utc_transitions(new_york) and not zones.utc_transitions(zones.zone("UTC"))
    with pytest.raises(zones.UnknownZone):
        zones.zone("Nowhere/Atlantis")


def test_contact_addresses_compare_in_one_spelling() -> None:
    assert comparable_address("email", " Ada@Example.COM ") == "ada@example.com"
    assert comparable_email(" Ada@Example.COM ") == "ada@example.com"
    assert comparable_address("sms", " +1 (502) 555-0100 ") == "+15025550100"
    key = b"k" * 32
    assert customer_digest("Ada@Example.com", key) == customer_digest(" ada@example.COM", key)


def test_an_address_we_cannot_send_to_is_no_address() -> None:
    assert canonical_email_or_none("Ada@EXAMPLE.com") == "Ada@example.com"
    assert canonical_email_or_none("x<victim@example.com") is None
    assert canonical_email_or_none(None) is None
