"""Numbers more than one courier's format reads: every such pair of the table, and the rule.

A declared carrier stands when the number fits it or when the number's shape is shared; with
nothing declared the destination country breaks the tie, else the table's ranking; the reason
is pinned with the shipment (issue 18, item 3: DHL Paket piece codes were shown as USPS).
"""

from __future__ import annotations

import pytest

from tests.carrier_shapes import co_valid_number, overlapping_pairs, shapes
from tests.factories import make_shipment
from trackflow.carriers import detect
from trackflow.carriers.formats import FORMATS_BY_ID
from trackflow.carriers.resolve import resolve_carrier
from trackflow.models import Address, CarrierReason, Customer, PinnedFacts, Shipment
from trackflow.pinning import pin
from trackflow.tracking_policy import TrackingPolicy

R = CarrierReason
DHL_PAKET = "00340434161094042557"  # a DHL Paket piece code (00340434 + GS1 check digit)
DHL_PAKET_PAKETDA = "00340433836442636597"  # the 20-digit example of paketda.de's check-digit page
MERCHANT_LINK = "https://shop.example/track/1"

# Every pair of formats of different couriers whose regexes match a common number.
AMBIGUOUS_PAIRS = [
    ("dhl_paket_20", "usps_legacy"),
    ("dhl_paket_20", "usps_20"),
    ("usps_impb_c", "fedex_34"),
    ("usps_impb_n", "fedex_34"),
    ("usps_legacy", "fedex_34"),
    ("usps_legacy", "dpd"),
    ("ups_waybill", "amazon_international"),
    ("fedex_12", "purolator_numeric"),
    ("fedex_ground", "dpd_14"),
    ("dhl_express", "old_dominion"),
    ("dhl_express", "old_dominion_guaranteed"),
    ("s10", "dhl_ecommerce"),
    ("purolator_alpha", "dhl_express_piece_id"),
    ("purolator_alpha", "dhl_ecommerce"),
]
# The USPS Legacy check digit is computed with "91" prepended: it always differs from the GS1
# check digit of the same 20 digits, so no number is valid as both.
NEVER_BOTH_VALID = {("dhl_paket_20", "usps_legacy")}

# Nothing declared: the courier chosen (and why) per destination country (None: no address).
UNDECLARED: dict[tuple[str, str], dict[str | None, tuple[str, CarrierReason]]] = {
    # (its number, DHL_PAKET, is a valid USPS 20 as well)
    **{
        ("dhl_paket_20", usps): {
            None: ("dhl", R.RANKING),
            "US": ("dhl", R.RANKING),
            "DE": ("dhl", R.DESTINATION_COUNTRY),
            "CA": ("dhl", R.DESTINATION_COUNTRY),
        }
        for usps in ("usps_legacy", "usps_20")
    },
    **{
        (usps, "fedex_34"): {
            None: ("usps", R.RANKING),
            "US": ("usps", R.RANKING),
            "PR": ("usps", R.RANKING),
            "DE": ("fedex", R.DESTINATION_COUNTRY),
        }
        for usps in ("usps_impb_c", "usps_impb_n", "usps_legacy")
    },
    ("usps_legacy", "dpd"): {
        None: ("usps", R.RANKING),
        "US": ("usps", R.RANKING),
        "DE": ("dpd", R.DESTINATION_COUNTRY),
    },
    ("ups_waybill", "amazon_international"): {
        None: ("ups", R.RANKING),
        "US": ("ups", R.RANKING),
        "DE": ("ups", R.RANKING),
    },
    ("fedex_12", "purolator_numeric"): {
        None: ("fedex", R.RANKING),
        "CA": ("fedex", R.RANKING),
        "DE": ("fedex", R.DESTINATION_COUNTRY),
    },
    ("fedex_ground", "dpd_14"): {
        None: ("fedex", R.RANKING),
        "US": ("fedex", R.RANKING),
        "DE": ("dpd", R.DESTINATION_COUNTRY),
    },
    **{
        ("dhl_express", odfl): {
            None: ("dhl", R.RANKING),
            "US": ("dhl", R.RANKING),
            "DE": ("dhl", R.DESTINATION_COUNTRY),
        }
        for odfl in ("old_dominion", "old_dominion_guaranteed")
    },
    ("s10", "dhl_ecommerce"): {
        None: ("s10", R.RANKING),
        "DE": ("s10", R.RANKING),
    },
    **{
        ("purolator_alpha", dhl): {
            None: ("purolator", R.RANKING),
            "CA": ("purolator", R.RANKING),
            "DE": ("dhl", R.DESTINATION_COUNTRY),
        }
        for dhl in ("dhl_express_piece_id", "dhl_ecommerce")
    },
}


def shipment(number: str, carrier: str | None, country: str | None = None) -> Shipment:
    address = Address(country_code=country) if country else None
    return make_shipment(
        tracking_number=number,
        carrier=carrier,
        tracking_url=MERCHANT_LINK if carrier else None,
        customer=Customer(email="ada@example.com", address=address),
    )


def pinned_reason(resolved: Shipment) -> CarrierReason | None:
    facts = resolved.pinned
    assert facts is not None
    return facts.carrier_reason


def number_of(pair: tuple[str, str]) -> str:
    """A number both formats of the pair read: valid for both when that exists."""
    if pair in NEVER_BOTH_VALID:
        return DHL_PAKET
    number = co_valid_number(*pair)
    assert number is not None, pair
    return number


# --- the pairs ------------------------------------------------------------------------------


def test_these_are_the_pairs_of_formats_that_can_read_the_same_number() -> None:
    assert overlapping_pairs() == AMBIGUOUS_PAIRS
    assert set(UNDECLARED) == set(AMBIGUOUS_PAIRS)


def test_the_shape_expansion_covers_each_formats_own_example() -> None:
    for fmt_id, example in [("dhl_paket_20", DHL_PAKET), ("ups", "1Z5R89390357567127")]:
        assert any(
            len(shape) == len(example)
            and all(ch in chars for ch, chars in zip(example, shape, strict=True))
            for shape in shapes(fmt_id)
        )


@pytest.mark.parametrize("pair", AMBIGUOUS_PAIRS, ids="/".join)
def test_a_number_of_a_shared_shape_is_read_by_both_formats(pair: tuple[str, str]) -> None:
    number = number_of(pair)
    read = {m.format: m.valid for m in detect(number)}
    both_valid = pair not in NEVER_BOTH_VALID
    assert read[pair[0]] is True and read[pair[1]] is both_valid
    couriers = {FORMATS_BY_ID[f].courier for f in pair}
    assert {m.courier for m in detect(number) if m.valid} <= couriers
    if not both_valid:
        assert co_valid_number(*pair, tries=2_000) is None


@pytest.mark.parametrize("pair", AMBIGUOUS_PAIRS, ids="/".join)
def test_a_declared_carrier_the_number_fits_stands(pair: tuple[str, str]) -> None:
    number = number_of(pair)
    for fmt_id in pair:
        courier = FORMATS_BY_ID[fmt_id].courier
        resolved = pin(shipment(number, courier.upper()), TrackingPolicy())
        assert (resolved.carrier, resolved.declared_carrier) == (courier, None)
        assert resolved.tracking_url == MERCHANT_LINK
        assert pinned_reason(resolved) == R.DECLARED_FITS


@pytest.mark.parametrize("pair", AMBIGUOUS_PAIRS, ids="/".join)
def test_a_shared_shape_never_overrides_a_declared_carrier(pair: tuple[str, str]) -> None:
    number = number_of(pair)
    for declared in ("Landmark Global", "Hermes"):  # in the table, not; neither fits
        resolved = pin(shipment(number, declared, "DE"), TrackingPolicy())
        assert resolved.carrier in ("landmark", "hermes")
        assert resolved.declared_carrier is None
        assert resolved.tracking_url == MERCHANT_LINK
        assert pinned_reason(resolved) == R.SHARED_SHAPE


@pytest.mark.parametrize("pair", AMBIGUOUS_PAIRS, ids="/".join)
def test_with_nothing_declared_the_destination_country_breaks_the_tie(
    pair: tuple[str, str],
) -> None:
    number = number_of(pair)
    for country, (courier, reason) in UNDECLARED[pair].items():
        resolved = pin(shipment(number, None, country), TrackingPolicy())
        assert (resolved.carrier, pinned_reason(resolved)) == (courier, reason), country
        assert resolved.detected_format is not None
        assert FORMATS_BY_ID[resolved.detected_format].courier == courier
        assert resolved.tracking_url is not None and number in resolved.tracking_url


# --- the reported case ----------------------------------------------------------------------


@pytest.mark.parametrize("number", [DHL_PAKET, DHL_PAKET_PAKETDA])
@pytest.mark.parametrize("declared", ["DHL", "DHL Paket", "dhl"])
def test_a_dhl_paket_piece_code_declared_dhl_stays_dhl_with_its_link(
    number: str, declared: str
) -> None:
    resolved = pin(shipment(number, declared, "DE"), TrackingPolicy())
    assert (resolved.carrier, resolved.declared_carrier) == ("dhl", None)
    assert resolved.tracking_url == MERCHANT_LINK
    assert resolved.pinned is not None
    assert resolved.pinned.carrier_reason == R.DECLARED_FITS


def test_a_dhl_paket_piece_code_to_berlin_is_dhl_when_nothing_is_declared() -> None:
    resolved = pin(shipment(DHL_PAKET, None, "DE"), TrackingPolicy())
    assert resolved.carrier == "dhl"
    assert resolved.detected_format == "dhl_paket_20"
    assert resolved.tracking_url == (
        f"https://www.dhl.de/en/privatkunden/dhl-sendungsverfolgung.html?piececode={DHL_PAKET}"
    )


def test_a_number_only_one_courier_uses_still_replaces_the_declared_one() -> None:
    smartpost = "9261292700768711948021"  # FedEx Ground Economy, delivered by USPS
    resolved, reason = resolve_carrier(shipment(smartpost, "FedEx"))
    assert (resolved.carrier, resolved.declared_carrier, reason) == (
        "usps",
        "fedex",
        R.NUMBER_FORMAT,
    )


def test_a_carrier_the_table_does_not_know_is_not_contradicted_by_it() -> None:
    dhl_express_shape = "3318810025"  # mod 7 valid: only DHL Express's format reads it
    resolved, reason = resolve_carrier(shipment(dhl_express_shape, "GLS"))
    assert (resolved.carrier, resolved.carrier_label, reason) == (
        "gls",
        "GLS",
        R.DECLARED_OUTSIDE_TABLE,
    )


def test_pinned_facts_of_older_histories_have_no_reason_and_still_load() -> None:
    older = {"timezone": "Europe/Berlin", "timezone_source": "address_country", "region": "DE"}
    assert PinnedFacts.model_validate(older).carrier_reason is None
