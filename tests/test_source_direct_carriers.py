"""Direct carrier code tables (UPS, FedEx, USPS, DHL) and the UPS Track Alert webhook parser."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from trackflow.models import CarrierStatus, ExceptionKind
from trackflow.sources import dhl, fedex, ups, usps
from trackflow.sources.normalized import SourcePayloadError

S = CarrierStatus
K = ExceptionKind
FIXTURE = Path(__file__).parent / "fixtures" / "direct" / "ups_track_alert_webhook_examples.json"

LABEL = (S.LABEL_CREATED, None)
MOVING = (S.IN_TRANSIT, None)
OUT = (S.OUT_FOR_DELIVERY, None)
DELIVERED = (S.DELIVERED, None)
PICKUP = (S.AVAILABLE_FOR_PICKUP, None)
RETURNED = (S.RETURNED, None)
EXC_UNKNOWN = (S.EXCEPTION, K.UNKNOWN)
DELAY = (S.EXCEPTION, K.CARRIER_DELAY)
ADDRESS = (S.EXCEPTION, K.ADDRESS_ISSUE)

Expected = tuple[CarrierStatus, ExceptionKind | None]

# Every code listed in /work/shared/reference/05_direct_carriers.md, with the mapping we expect.
UPS_CODES: dict[str, Expected] = {
    # Track Alert status types
    "D": DELIVERED,
    "I": MOVING,
    "M": LABEL,
    "MV": EXC_UNKNOWN,
    "U": MOVING,
    "X": EXC_UNKNOWN,
    # classic Track API types (unverified)
    "P": MOVING,
    "RS": RETURNED,
    "DO": MOVING,
    "DD": MOVING,
    "O": OUT,
    # activity status codes
    "OT": OUT,
    "FS": DELIVERED,
    # numeric package status codes
    "002": MOVING,
    "003": DELIVERED,
    "004": OUT,
    "006": MOVING,
    "007": LABEL,
}

FEDEX_CODES: dict[str, Expected] = {
    "AA": MOVING,
    "AC": MOVING,
    "AD": OUT,
    "AF": MOVING,
    "AO": MOVING,
    "AP": LABEL,
    "AR": MOVING,
    "AX": MOVING,
    "CA": EXC_UNKNOWN,
    "CH": MOVING,
    "DD": DELAY,
    "DE": (S.EXCEPTION, K.FAILED_ATTEMPT),
    "DL": DELIVERED,
    "DP": MOVING,
    "DR": LABEL,
    "DS": LABEL,
    "DY": DELAY,
    "EA": MOVING,
    "ED": OUT,
    "EO": MOVING,
    "EP": LABEL,
    "FD": MOVING,
    "HL": PICKUP,
    "HP": PICKUP,
    "IT": MOVING,
    "IX": MOVING,
    "LO": MOVING,
    "OC": LABEL,
    "OD": OUT,
    "OF": MOVING,
    "OX": MOVING,
    "PD": DELAY,
    "PF": MOVING,
    "PL": MOVING,
    "PM": MOVING,
    "PU": MOVING,
    "PX": MOVING,
    "RR": MOVING,
    "RM": MOVING,
    "RC": MOVING,
    "RS": RETURNED,
    "RP": LABEL,
    "LP": EXC_UNKNOWN,
    "RG": LABEL,
    "RD": EXC_UNKNOWN,
    "SE": EXC_UNKNOWN,
    "SF": MOVING,
    "SP": MOVING,
    "TR": MOVING,
    "CC": MOVING,
    "CD": (S.EXCEPTION, K.CUSTOMS_HOLD),
    "CP": MOVING,
}

USPS_CODES: dict[str, Expected] = {
    "83": MOVING,
    "89": LABEL,
    "AD": MOVING,
    "GC": LABEL,
    "GX": LABEL,
    "MA": LABEL,
    "OA": MOVING,
    "TM": MOVING,
    "UA": MOVING,
    "01": DELIVERED,
    "07": MOVING,
    "OF": OUT,
    "03": MOVING,
    "04": (S.EXCEPTION, K.RETURN_TO_SENDER),
    "05": ADDRESS,
    "10": MOVING,
    "21": ADDRESS,
    "22": ADDRESS,
    "23": ADDRESS,
    "29": RETURNED,
    "DX": DELAY,
    "PC": MOVING,
    "NT": MOVING,
    "U1": MOVING,
    "T1": MOVING,
    "A1": MOVING,
    "L1": MOVING,
    "SF": MOVING,
    # statusCategory
    "Out for Delivery": OUT,
    "Delivered": DELIVERED,
    "Preparing for Delivery": MOVING,
}

DHL_CODES: dict[str, Expected] = {
    "pre-transit": LABEL,
    "transit": MOVING,
    "delivered": DELIVERED,
    "failure": EXC_UNKNOWN,
    "return-transit": RETURNED,
}

# Listed in the reference but deliberately not trusted: kept raw as unknown.
AMBIGUOUS = [(ups, "005"), (dhl, "unknown")]

CARRIERS: list[tuple[Any, dict[str, Expected]]] = [
    (ups, UPS_CODES),
    (fedex, FEDEX_CODES),
    (usps, USPS_CODES),
    (dhl, DHL_CODES),
]
ALL_CODES = [
    pytest.param(module, code, expected, id=f"{module.__name__.rsplit('.', 1)[1]}-{code}")
    for module, table in CARRIERS
    for code, expected in table.items()
]


@pytest.mark.parametrize(("module", "code", "expected"), ALL_CODES)
def test_every_documented_code_maps(module: Any, code: str, expected: Expected) -> None:
    result = module.normalize(code)
    assert (result.status, result.exception) == expected
    assert result.known is True
    assert result.raw_status == code
    assert result.raw_detail is None


@pytest.mark.parametrize(("module", "code", "expected"), ALL_CODES)
def test_codes_are_case_and_space_insensitive(module: Any, code: str, expected: Expected) -> None:
    variant = f"  {code.swapcase()} "
    result = module.normalize(variant)
    assert (result.status, result.exception) == expected
    assert result.known is True
    assert result.raw_status == variant  # the raw code exactly as the carrier sent it


@pytest.mark.parametrize(("module", "code"), AMBIGUOUS)
def test_ambiguous_documented_codes_are_kept_as_unknown(module: Any, code: str) -> None:
    result = module.normalize(code, "whatever it says")
    assert (result.status, result.exception, result.known) == (S.EXCEPTION, K.UNKNOWN, False)
    assert (result.raw_status, result.raw_detail) == (code, "whatever it says")


@pytest.mark.parametrize("module", [ups, fedex, usps, dhl])
@pytest.mark.parametrize("code", ["ZZ", "999", "Lost in Space", ""])
def test_unknown_codes_are_kept_not_dropped(module: Any, code: str) -> None:
    result = module.normalize(code, "Some new carrier text: weather")
    assert result.status is S.EXCEPTION
    assert result.exception is K.UNKNOWN  # the detail never upgrades an unknown code
    assert result.known is False
    assert result.raw_status == code
    assert result.raw_detail == "Some new carrier text: weather"


# --- detail refinement ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "code", "detail", "kind"),
    [
        (ups, "X", "Severe weather conditions have delayed delivery.", K.WEATHER_DELAY),
        (ups, "X", "The address is incorrect; UPS is attempting to update it", K.ADDRESS_ISSUE),
        (ups, "X", "Package held in warehouse for customs clearance", K.CUSTOMS_HOLD),
        (ups, "X", "The package was damaged", K.DAMAGED),
        (ups, "X", "Returned to shipper", K.RETURN_TO_SENDER),
        (fedex, "DE", "Customer not available or business closed", K.FAILED_ATTEMPT),
        (fedex, "DE", "Incorrect address", K.ADDRESS_ISSUE),
        (fedex, "SE", "Package at station, held for pickup", K.HELD_AT_FACILITY),
        (fedex, "DY", "Weather delay", K.WEATHER_DELAY),
        (fedex, "SE", "Unable to locate package", K.LOST),
        (usps, "DX", "Delayed due to hurricane", K.WEATHER_DELAY),
        (dhl, "failure", "Clearance delay - import", K.CUSTOMS_HOLD),
        (dhl, "failure", "Delivery attempted; recipient not home", K.FAILED_ATTEMPT),
    ],
)
def test_detail_names_the_exception_kind(
    module: Any, code: str, detail: str, kind: ExceptionKind
) -> None:
    result = module.normalize(code, detail)
    assert (result.status, result.exception, result.known) == (S.EXCEPTION, kind, True)
    assert result.raw_detail == detail


@pytest.mark.parametrize(
    ("module", "code", "detail"),
    [
        (fedex, "DE", "Something unexpected"),  # no keyword: the code's own kind stands
        (fedex, "DL", "Delivered - weather was fine, no delay"),  # detail never changes status
        (usps, "29", "Return to Sender: damaged"),
        (ups, "FS", "Delivered"),
    ],
)
def test_detail_does_not_override_without_reason(module: Any, code: str, detail: str) -> None:
    plain = module.normalize(code)
    with_detail = module.normalize(code, detail)
    assert (with_detail.status, with_detail.exception) == (plain.status, plain.exception)


@pytest.mark.parametrize(
    ("detail", "status"),
    [
        ("Out for delivery", S.OUT_FOR_DELIVERY),
        ("Loaded on delivery vehicle", S.OUT_FOR_DELIVERY),
        ("Delivered", S.DELIVERED),
        (None, S.DELIVERED),
    ],
)
def test_ups_type_d_is_refined_by_its_text(detail: str | None, status: CarrierStatus) -> None:
    assert ups.normalize("D", detail).status is status


@pytest.mark.parametrize(
    ("detail", "status"),
    [
        ("Shipment is out for delivery", S.OUT_FOR_DELIVERY),
        ("With delivery courier", S.OUT_FOR_DELIVERY),
        ("Ready for pickup at DHL Service Point", S.AVAILABLE_FOR_PICKUP),
        ("Arrived at Sort Facility LEIPZIG - GERMANY", S.IN_TRANSIT),
    ],
)
def test_dhl_transit_is_refined_by_its_text(detail: str, status: CarrierStatus) -> None:
    result = dhl.normalize("transit", detail)
    assert (result.status, result.exception, result.known) == (status, None, True)
    assert result.raw_status == "transit"


def test_dhl_text_does_not_refine_other_codes() -> None:
    assert dhl.normalize("delivered", "out for delivery").status is S.DELIVERED


# --- UPS activity (code, else type) ---------------------------------------------------------


def test_ups_activity_prefers_the_code() -> None:
    result = ups.normalize_activity("I", "OT", "Out for Delivery")
    assert (result.status, result.known, result.raw_status) == (S.OUT_FOR_DELIVERY, True, "OT")


def test_ups_activity_falls_back_to_the_type_for_an_unknown_code() -> None:
    result = ups.normalize_activity("X", "UX", "A winter storm delayed the package")
    assert (result.status, result.exception) == (S.EXCEPTION, K.WEATHER_DELAY)
    assert result.known is False  # the code itself was not recognised ...
    assert result.raw_status == "UX"  # ... and is kept


def test_ups_activity_with_only_a_type() -> None:
    result = ups.normalize_activity("M", None)
    assert (result.status, result.known, result.raw_status) == (S.LABEL_CREATED, True, "M")


def test_ups_activity_with_nothing_known() -> None:
    result = ups.normalize_activity("Q", "ZZ")
    assert (result.status, result.exception, result.known) == (S.EXCEPTION, K.UNKNOWN, False)
    assert result.raw_status == "ZZ"


# --- UPS Track Alert webhook ----------------------------------------------------------------


def _samples() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    return data


EDT = timedelta(hours=-4)


def test_fixture_is_the_reference_file_verbatim() -> None:
    reference = Path("/work/shared/reference/payloads/ups_track_alert_webhook_examples.json")
    if not reference.exists():
        pytest.skip("shared reference not mounted")
    assert FIXTURE.read_bytes() == reference.read_bytes()


def test_out_for_delivery_sample() -> None:
    [event] = ups.parse_track_alert(_samples()["out_for_delivery"])
    assert event.tracking_number == "1Z204W4R0308071865"
    assert (event.status, event.exception) == (S.OUT_FOR_DELIVERY, None)
    assert event.occurred_at == datetime(2024, 4, 23, 13, 15, 19, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == EDT  # local wall clock 09:15:19 kept
    assert event.occurred_at.hour == 9
    assert event.description == "Out for Delivery"
    assert event.location == "Charlotte, NC, US"
    assert event.estimated_delivery == date(2024, 4, 23)
    assert event.event_id == "ups:1Z204W4R0308071865:20240423091519:OT"
    assert event.source == "ups"


def test_delivered_sample() -> None:
    [event] = ups.parse_track_alert(_samples()["delivered"])
    assert event.tracking_number == "1Z204W4R0308071865"
    assert (event.status, event.exception) == (S.DELIVERED, None)
    assert event.occurred_at == datetime(2024, 4, 23, 13, 50, 4, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == EDT
    assert event.location == "CHARLOTTE, NC, US"
    assert event.description == "Delivered"
    assert event.estimated_delivery is None  # the stale 2019 schedule is not carried over
    assert event.event_id == "ups:1Z204W4R0308071865:20240423095004:FS"


def test_samples_are_distinct_and_stable() -> None:
    samples = _samples()
    first = [ups.parse_track_alert(samples[k])[0] for k in ("out_for_delivery", "delivered")]
    again = [ups.parse_track_alert(samples[k])[0] for k in ("out_for_delivery", "delivered")]
    assert [e.event_id for e in first] == [e.event_id for e in again]
    assert len({e.dedupe_key for e in first}) == 2


def test_numeric_description_code_is_tolerated() -> None:
    # YAML 1.1 readers turn the unquoted descriptionCode 021 into a number.
    payload = copy.deepcopy(_samples()["out_for_delivery"])
    payload["activityStatus"]["descriptionCode"] = 17
    [event] = ups.parse_track_alert(payload)
    assert event.status is S.OUT_FOR_DELIVERY


def test_without_local_time_the_event_is_in_utc() -> None:
    payload = copy.deepcopy(_samples()["out_for_delivery"])
    del payload["localActivityDate"], payload["localActivityTime"]
    [event] = ups.parse_track_alert(payload)
    assert event.occurred_at == datetime(2024, 4, 23, 13, 15, 19, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.event_id == "ups:1Z204W4R0308071865:20240423131519:OT"


def test_odd_local_offset_falls_back_to_utc() -> None:
    payload = copy.deepcopy(_samples()["out_for_delivery"])
    payload["localActivityTime"] = "091520"  # one second off a whole quarter hour
    [event] = ups.parse_track_alert(payload)
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.occurred_at == datetime(2024, 4, 23, 13, 15, 19, tzinfo=UTC)


def test_unknown_activity_code_becomes_an_exception_event_with_its_code() -> None:
    payload = copy.deepcopy(_samples()["out_for_delivery"])
    payload["activityStatus"] = {"type": "X", "code": "UQ", "description": "Severe weather"}
    [event] = ups.parse_track_alert(payload)
    assert (event.status, event.exception) == (S.EXCEPTION, K.WEATHER_DELAY)
    assert event.event_id == "ups:1Z204W4R0308071865:20240423091519:UQ"
    assert event.estimated_delivery == date(2024, 4, 23)


def test_missing_location_is_none() -> None:
    payload = copy.deepcopy(_samples()["out_for_delivery"])
    del payload["activityLocation"]
    [event] = ups.parse_track_alert(payload)
    assert event.location is None


def _broken(path: tuple[str, ...], value: object) -> dict[str, Any]:
    payload: dict[str, Any] = copy.deepcopy(_samples()["out_for_delivery"])
    target = payload
    for part in path[:-1]:
        target = target[part]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return payload


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("trackingNumber",), _DELETE, "trackingNumber"),
        (("trackingNumber",), "1Z!", "trackingNumber"),
        (("activityStatus",), _DELETE, "activityStatus"),
        (("activityStatus",), "OT", "activityStatus"),
        (("activityStatus",), {"description": "?"}, "activityStatus.code"),
        (("activityStatus", "code"), ["OT"], "activityStatus.code"),
        (("gmtActivityDate",), _DELETE, "gmtActivityDate"),
        (("gmtActivityDate",), "2024-04-23", "gmtActivityDate"),
        (("gmtActivityTime",), "251519", "gmtActivityTime"),
        (("gmtActivityTime",), "1315", "gmtActivityTime"),
        (("localActivityDate",), "20241323", "localActivityDate"),
        (("scheduledDeliveryDate",), "soon", "scheduledDeliveryDate"),
        (("activityLocation",), "Charlotte", "activityLocation"),
        (("activityLocation", "city"), {"name": "x"}, "activityLocation.city"),
    ],
)
def test_bad_payload_names_the_field(path: tuple[str, ...], value: object, field: str) -> None:
    with pytest.raises(ups.UpsPayloadError) as caught:
        ups.parse_track_alert(_broken(path, value))
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}:")
    assert isinstance(caught.value, SourcePayloadError)
    assert isinstance(caught.value, ValueError)


def test_payload_must_be_an_object() -> None:
    with pytest.raises(ups.UpsPayloadError, match="payload"):
        ups.parse_track_alert([_samples()["delivered"]])  # type: ignore[arg-type]
