"""trackflow.carriers: our own fixture numbers, ranking, normalisation, lookups, checksums."""

from __future__ import annotations

import random
import time
import uuid

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from trackflow.carriers import (
    FORMATS,
    CarrierFormat,
    CarrierMatch,
    checksums,
    courier_display_name,
    courier_tracking_url,
    detect,
    detect_best,
    normalize_number,
)
from trackflow.carriers.formats import COURIER_NAMES, COURIER_TRACKING_URLS
from trackflow.carriers.samples import SHAPES, random_tracking_number

# (number, courier, format) -- public sample numbers, the best valid reading of each.
FIXTURES: list[tuple[str, str, str]] = [
    ("1Z5R89390357567127", "ups", "ups"),
    ("1Z879E930346834440", "ups", "ups"),
    ("K2479825491", "ups", "ups_waybill"),
    ("9400111206206406260787", "usps", "usps_impb_n"),
    ("9505 5110 6960 5048 6006 24", "usps", "usps_impb_c"),
    ("9101 1234 5678 9000 0000 13", "usps", "usps_legacy"),
    ("986578788855", "fedex", "fedex_12"),
    ("0414 4176 0228 964", "fedex", "fedex_ground"),
    ("9611020987654312345672", "fedex", "fedex_ground_96"),
    ("9622001900000000000000776632517510", "fedex", "fedex_ground_gsn"),
    ("1001921334250001000300779017972697", "fedex", "fedex_34"),
    ("3318810025", "dhl", "dhl_express"),
    ("GM2951173225174494", "dhl", "dhl_ecommerce"),
    ("RB123456785GB", "s10", "s10"),
    ("0073938000549297", "canada_post", "canada_post"),
    ("320595463938", "purolator", "purolator_numeric"),
    ("KYV009956937", "purolator", "purolator_alpha"),
    ("00 81827 0998 0000 0200 33 350 276 C", "dpd", "dpd"),
    ("C11031500001879", "ontrac", "ontrac_c"),
    ("D10011354453707", "ontrac", "ontrac_d"),
    ("TBA000000000000", "amazon", "amazon_logistics"),
    ("LX17635036", "lasership", "lasership_lx"),
    ("1LS7119013618127-1", "lasership", "lasership_1ls7_18"),
    ("D576002440000001718010", "canpar", "canpar_22"),
    ("JD0002242617644732", "yodel", "yodel"),
    ("YT2229521272164446", "yunexpress", "yunexpress"),
    ("SP029692510000920746", "speedee", "speedee"),
    ("GFUS01011884214464", "gofo", "gofo_us"),
    ("LTN74207623N1", "landmark", "landmark_global"),
    ("80003280379", "old_dominion", "old_dominion_guaranteed"),
]


@pytest.mark.parametrize(("number", "courier", "fmt"), FIXTURES, ids=[f[0] for f in FIXTURES])
def test_fixture_numbers_best_match(number: str, courier: str, fmt: str) -> None:
    best = detect_best(number)
    assert best is not None, detect(number)
    assert (best.courier, best.format, best.valid) == (courier, fmt, True)


def test_table_covers_every_courier_and_unique_ids() -> None:
    ids = [f.id for f in FORMATS]
    assert len(ids) == len(set(ids))
    assert len(FORMATS) >= 39
    assert {f.courier for f in FORMATS} == {
        "ups", "fedex", "usps", "dhl", "s10", "canada_post", "amazon", "canpar", "dpd", "gofo",
        "landmark", "lasership", "old_dominion", "ontrac", "purolator", "speedee", "yodel",
        "yunexpress",
    }  # fmt: skip


# --- ranking ---------------------------------------------------------------------------------


def _order(number: str) -> list[str]:
    return [m.format for m in detect(number) if m.valid]


@pytest.mark.parametrize(
    ("number", "first", "second"),
    [
        ("287809468872", "fedex_12", "purolator_numeric"),
        ("4201028200009261290113185417468510", "usps_impb_c", "fedex_34"),
        ("78045768393", "dhl_express", "old_dominion"),
        ("JFV247545960", "purolator_alpha", "dhl_express_piece_id"),
    ],
)
def test_known_ambiguities_rank(number: str, first: str, second: str) -> None:
    order = _order(number)
    assert order[:2] == [first, second], order


def test_checksum_formats_outrank_shape_only_formats() -> None:
    # 15 digits: FedEx Ground (mod10, passes) and DPD (14 + check char, fails) both fit.
    matches = detect("041441760228964")
    assert [(m.format, m.valid) for m in matches] == [("fedex_ground", True), ("dpd_14", False)]
    # A bare 14-digit number only fits the shape-only DHL eCommerce (14) format.
    assert [m.format for m in detect("60120172242323")] == ["dhl_ecommerce_14"]


def test_valid_before_invalid_and_invalid_kept() -> None:
    # Luhn passes for Purolator, the FedEx 12 weighting does not.
    matches = detect("320595463938")
    assert [(m.format, m.valid) for m in matches] == [
        ("purolator_numeric", True),
        ("fedex_12", False),
    ]


def test_wrong_check_digit_is_flagged_not_dropped() -> None:
    matches = detect("1Z5R89390357567128")
    assert [(m.courier, m.valid) for m in matches] == [("ups", False)]
    assert detect_best("1Z5R89390357567128") is None


def test_s10_unknown_country_is_invalid() -> None:
    assert [(m.format, m.valid) for m in detect("RB123456785XX")] == [("s10", False)]
    assert detect_best("RB123456786US") is None  # wrong check digit


# --- normalisation ---------------------------------------------------------------------------


def test_normalisation_whitespace_dashes_case() -> None:
    assert normalize_number(" 1z5r-8939 0357\t567127\n") == "1Z5R89390357567127"
    best = detect_best(" 1z5r-8939 0357\t567127\n")
    assert best is not None and best.courier == "ups"
    assert best.tracking_url is not None and best.tracking_url.endswith("=1Z5R89390357567127")


@pytest.mark.parametrize("junk", ["", "   ", "----", "1Z5R8939!0357567127", "héllo"])
def test_junk_matches_nothing(junk: str) -> None:
    assert detect(junk) == []
    assert detect_best(junk) is None


# --- service lookups and URLs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "service"),
    [
        ("1ZXX3150YW44070023", "UPS SurePost - Delivered by the USPS"),
        # 1Z + shipper 5R8939 + service "03" + package id + check digit
        ("1Z5R89390357567127", "UPS United States Ground"),
        ("K1506235620", "UPS Ground"),
        ("J4603636537", "UPS Next Day Express"),
        ("9261292700768711948021", "Parcel Select"),
        ("0307 1790 0005 2348 3741", "Delivery Confirmation"),
        ("RB123456785GB", "Letter Post Registered"),
        ("EA123456785US", "EMS"),
        ("00 81827 0998 0000 0200 33 350 276 C", "AM0"),
        ("986578788855", None),
    ],
)
def test_service_lookup(number: str, service: str | None) -> None:
    best = detect_best(number)
    assert best is not None
    assert best.service == service


def test_tracking_urls() -> None:
    ups = detect_best("1Z5R89390357567127")
    assert ups is not None
    assert ups.tracking_url == (
        "https://wwwapps.ups.com/WebTracking/track?track=yes&trackNums=1Z5R89390357567127"
    )
    usps = detect_best("9400 1112 0620 6406 2607 87")
    assert usps is not None
    assert usps.tracking_url == (
        "https://tools.usps.com/go/TrackConfirmAction?tLabels=9400111206206406260787"
    )
    s10 = detect_best("RB123456785GB")
    assert s10 is not None and s10.tracking_url == "https://t.17track.net/en#nums=RB123456785GB"
    amazon = detect_best("TBA000000000000")
    assert amazon is not None
    assert amazon.tracking_url == "https://track.amazon.com/tracking/TBA000000000000"


@pytest.mark.parametrize("courier", sorted(COURIER_NAMES))
def test_every_courier_has_a_public_tracking_page(courier: str) -> None:
    template = COURIER_TRACKING_URLS[courier]
    assert template.startswith("https://") and template.count("%s") == 1
    number = random_tracking_number(courier, random.Random(courier))
    assert courier_tracking_url(courier, number) == template.replace("%s", number)


@pytest.mark.parametrize("fmt", FORMATS, ids=[f.id for f in FORMATS])
def test_every_format_links_to_its_couriers_page(fmt: CarrierFormat) -> None:
    if fmt.id == "dhl_paket_20":  # dhl.de follows DHL Paket numbers, dhl.com the others
        assert fmt.tracking_url is not None and fmt.tracking_url.startswith("https://www.dhl.de/")
        assert COURIER_TRACKING_URLS["dhl"].startswith("https://www.dhl.com/")
    else:
        assert fmt.tracking_url == COURIER_TRACKING_URLS[fmt.courier]


def test_a_dhl_paket_number_links_to_dhl_de_and_an_express_one_to_dhl_com() -> None:
    paket, express = "00340434161094042557", "3318810025"
    assert courier_tracking_url("dhl", paket) == (
        f"https://www.dhl.de/en/privatkunden/dhl-sendungsverfolgung.html?piececode={paket}"
    )
    assert courier_tracking_url("dhl", express) == (
        f"https://www.dhl.com/en/express/tracking.html?brand=DHL&AWB={express}"
    )


def test_tracking_page_of_a_platform_code_is_the_numbers_couriers() -> None:
    assert courier_tracking_url("dhl_express", "3318810025") == (
        "https://www.dhl.com/en/express/tracking.html?brand=DHL&AWB=3318810025"
    )
    assert courier_tracking_url(None, "1Z5R89390357567127") is not None
    assert courier_tracking_url("royal_mail", "not a number") is None
    assert courier_tracking_url("ups", "1z5r 8939-0357 567127") == (
        "https://wwwapps.ups.com/WebTracking/track?track=yes&trackNums=1Z5R89390357567127"
    )


@pytest.mark.parametrize("courier", sorted(SHAPES))
def test_random_numbers_are_valid_numbers_of_their_courier(courier: str) -> None:
    rng = random.Random(f"samples-{courier}")
    numbers = {random_tracking_number(courier, rng) for _ in range(300)}
    assert len(numbers) > 290
    for number in numbers:
        best = detect_best(number)
        assert best is not None and (best.courier, best.format) == (courier, SHAPES[courier][0])


def test_random_numbers_cover_every_courier() -> None:
    assert set(SHAPES) == set(COURIER_NAMES)


def test_display_names() -> None:
    assert courier_display_name("usps") == "USPS"
    assert courier_display_name("canada_post") == "Canada Post"
    assert courier_display_name("nonesuch") == "nonesuch"


def test_match_is_frozen_model() -> None:
    match = CarrierMatch(courier="ups", format="ups", name="UPS", valid=True)
    with pytest.raises(ValueError):
        match.valid = False  # type: ignore[misc]
    assert CarrierMatch.model_validate(match.model_dump()) == match


# --- check-digit algorithms on known values ----------------------------------------------------


def test_mod10_ups_letters_folded() -> None:
    # 1Z5R89390357567127: serial 5R8939035756712, check 7 (evens x1, odds x2; R -> (82-3)%10 = 9)
    assert (
        checksums.mod10_check_digit("5R8939035756712", evens_multiplier=1, odds_multiplier=2) == 7
    )
    assert checksums.mod10("5R8939035756712", "7", evens_multiplier=1, odds_multiplier=2)
    assert not checksums.mod10("5R8939035756712", "8", evens_multiplier=1, odds_multiplier=2)


def test_mod10_reverse_usps_impb_n() -> None:
    assert (
        checksums.mod10_check_digit(
            "940011120620640626078", evens_multiplier=3, odds_multiplier=1, reverse=True
        )
        == 7
    )


def test_mod7() -> None:
    assert checksums.mod7("331881002", "5")  # 331881002 % 7 == 5
    assert not checksums.mod7("331881001", "0")


def test_s10_check_digit_special_cases() -> None:
    assert checksums.s10_check_digit("12345678") == 5
    assert checksums.s10_check_digit("00000008") == 0  # sum % 11 == 1 -> 0
    assert checksums.s10_check_digit("00000015") == 5  # sum % 11 == 0 -> 5
    assert checksums.s10("12345678", "5")
    assert not checksums.s10("1234567", "5")


def test_luhn() -> None:
    assert checksums.luhn("7992739871", "3")  # the classic Luhn example
    assert checksums.luhn("32059546393", "8")
    assert not checksums.luhn("32059546393", "9")


def test_sum_product_with_weightings_and_modulo() -> None:
    weights = (3, 1, 7, 3, 1, 7, 3, 1, 7, 3, 1)
    assert checksums.sum_product_with_weightings_and_modulo(
        "98657878885", "5", weightings=weights, modulo1=11, modulo2=10
    )
    assert not checksums.sum_product_with_weightings_and_modulo(
        "99657878885", "5", weightings=weights, modulo1=11, modulo2=10
    )


def test_mod_37_36() -> None:
    assert checksums.mod37_36_check_char("09980000020033") == "F"
    assert checksums.mod37_36_check_char("008182709980000020033350276") == "C"
    assert not checksums.mod_37_36("008182709980000020033350276", "A")


def test_detect_is_fast() -> None:
    numbers = [f[0] for f in FIXTURES]
    start = time.perf_counter()
    for _ in range(50):
        for number in numbers:
            detect(number)
    assert time.perf_counter() - start < 2.0  # ~1500 calls; typically well under 0.2 s


# --- workflow sandbox --------------------------------------------------------------------------


@workflow.defn(sandboxed=True)
class _DetectInSandboxWorkflow:
    @workflow.run
    async def run(self, number: str) -> str:
        best = detect_best(number)
        return f"{best.courier}/{best.format}" if best else "none"


async def test_detect_runs_inside_the_default_workflow_sandbox(client: Client) -> None:
    """trackflow.carriers is NOT passed through here: the sandbox imports and runs it itself."""
    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("pydantic", "pytest")
    )
    task_queue = f"carriers-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[_DetectInSandboxWorkflow],
        workflow_runner=runner,
    ):
        result = await client.execute_workflow(
            _DetectInSandboxWorkflow.run,
            "1Z5R89390357567127",
            id=f"carriers-sandbox-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )
    assert result == "ups/ups"
