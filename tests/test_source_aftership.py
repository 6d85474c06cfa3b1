"""AfterShip: tag/subtag tables, tracking webhook parsing, bad payloads."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from trackflow.models import CarrierStatus, ExceptionKind
from trackflow.sources import aftership
from trackflow.sources.aftership import AfterShipPayloadError, normalize, parse_webhook

FIXTURES = Path(__file__).parent / "fixtures" / "aftership"
S, K = CarrierStatus, ExceptionKind

# Reference 04_aftership.md: the 9 tags.
TAGS = {
    "Pending": (S.LABEL_CREATED, None),
    "InfoReceived": (S.LABEL_CREATED, None),
    "InTransit": (S.IN_TRANSIT, None),
    "OutForDelivery": (S.OUT_FOR_DELIVERY, None),
    "AttemptFail": (S.EXCEPTION, K.FAILED_ATTEMPT),
    "Delivered": (S.DELIVERED, None),
    "AvailableForPickup": (S.AVAILABLE_FOR_PICKUP, None),
    "Exception": (S.EXCEPTION, K.UNKNOWN),
    "Expired": (S.EXCEPTION, K.UNKNOWN),
}

# Every documented subtag under its own tag -> expected result.
SUBTAGS = {
    "Delivered_001": (S.DELIVERED, None),
    "Delivered_002": (S.DELIVERED, None),
    "Delivered_003": (S.DELIVERED, None),
    "Delivered_004": (S.DELIVERED, None),
    "Delivered_005": (S.DELIVERED, None),
    "AvailableForPickup_001": (S.AVAILABLE_FOR_PICKUP, None),
    "Exception_001": (S.EXCEPTION, K.UNKNOWN),
    "Exception_002": (S.EXCEPTION, K.ADDRESS_ISSUE),
    "Exception_003": (S.EXCEPTION, K.RETURN_TO_SENDER),
    "Exception_004": (S.EXCEPTION, K.CUSTOMS_HOLD),
    "Exception_005": (S.EXCEPTION, K.CARRIER_DELAY),
    "Exception_006": (S.EXCEPTION, K.HELD_AT_FACILITY),
    "Exception_007": (S.EXCEPTION, K.ADDRESS_ISSUE),
    "Exception_008": (S.EXCEPTION, K.CARRIER_DELAY),
    "Exception_009": (S.EXCEPTION, K.UNKNOWN),
    "Exception_010": (S.EXCEPTION, K.RETURN_TO_SENDER),
    "Exception_011": (S.RETURNED, None),
    "Exception_012": (S.EXCEPTION, K.DAMAGED),
    "Exception_013": (S.EXCEPTION, K.LOST),
    "Exception_016": (S.EXCEPTION, K.CARRIER_DELAY),
    "Exception_017": (S.EXCEPTION, K.WEATHER_DELAY),
    "Exception_018": (S.EXCEPTION, K.CUSTOMS_HOLD),
    "AttemptFail_001": (S.EXCEPTION, K.FAILED_ATTEMPT),
    "AttemptFail_002": (S.EXCEPTION, K.FAILED_ATTEMPT),
    "AttemptFail_003": (S.EXCEPTION, K.FAILED_ATTEMPT),
    **{f"InTransit_00{n}": (S.IN_TRANSIT, None) for n in range(1, 10)},
    "InfoReceived_001": (S.LABEL_CREATED, None),
    "OutForDelivery_001": (S.OUT_FOR_DELIVERY, None),
    "OutForDelivery_003": (S.OUT_FOR_DELIVERY, None),
    "OutForDelivery_004": (S.OUT_FOR_DELIVERY, None),
    **{f"Pending_00{n}": (S.LABEL_CREATED, None) for n in range(1, 7)},
    "Expired_001": (S.EXCEPTION, K.UNKNOWN),
}


def _body() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "aftership_tracking_update.json").read_text())
    body: dict[str, Any] = copy.deepcopy(data["body"])
    return body


def test_tables_match_the_documented_enumerations() -> None:
    assert set(aftership.STATUS) == set(TAGS)
    assert set(aftership.DETAIL) == set(SUBTAGS)


@pytest.mark.parametrize(("tag", "expected"), TAGS.items())
def test_every_tag(tag: str, expected: tuple[CarrierStatus, ExceptionKind | None]) -> None:
    result = normalize(tag)
    assert (result.status, result.exception) == expected
    assert result.known and result.raw_status == tag


@pytest.mark.parametrize(("subtag", "expected"), SUBTAGS.items())
def test_every_subtag(subtag: str, expected: tuple[CarrierStatus, ExceptionKind | None]) -> None:
    result = normalize(subtag.split("_")[0], subtag)
    assert (result.status, result.exception) == expected
    assert result.known and result.raw_detail == subtag


def test_exception_subtag_promotes_an_in_transit_tag() -> None:
    assert normalize("InTransit", "Exception_017").exception == K.WEATHER_DELAY
    assert normalize("Delivered", "Exception_013").status == S.DELIVERED


def test_codes_are_case_insensitive_and_canonicalised() -> None:
    result = normalize("outfordelivery", "OUTFORDELIVERY_001")
    assert result.status == S.OUT_FOR_DELIVERY and result.known
    assert (result.raw_status, result.raw_detail) == ("OutForDelivery", "OutForDelivery_001")


def test_unknown_codes_kept_raw() -> None:
    tag = normalize("Teleported", "Teleported_001")
    assert (tag.status, tag.exception, tag.known) == (S.EXCEPTION, K.UNKNOWN, False)
    assert (tag.raw_status, tag.raw_detail) == ("Teleported", "Teleported_001")
    sub = normalize("InTransit", "InTransit_010")
    assert (sub.status, sub.exception, sub.known) == (S.IN_TRANSIT, None, False)
    assert sub.raw_detail == "InTransit_010"


def test_sample_webhook_parses() -> None:
    checkpoint, state = parse_webhook(_body())
    assert checkpoint.tracking_number == state.tracking_number == "0000000000000000"
    assert checkpoint.source == state.source == "aftership"
    assert (checkpoint.status, checkpoint.exception) == (S.IN_TRANSIT, None)
    # "2021-01-14T00:52:00" has no offset: taken as UTC.
    assert checkpoint.occurred_at == datetime(2021, 1, 14, 0, 52, tzinfo=UTC)
    assert checkpoint.description == "Departed Shipping Partner Facility, USPS Awaiting Item"
    assert (
        checkpoint.event_id == "aftership:0000000000000000:2021-01-14T00:52:00+00:00:InTransit_001"
    )
    assert (state.status, state.exception) == (S.IN_TRANSIT, None)
    assert state.occurred_at == datetime.fromtimestamp(1712741696, tz=UTC)
    assert state.description == "In Transit"
    assert state.event_id == "aftership:94dadd60-ed26-46d0-aa52-3ced925a50ff"


def test_full_checkpoint_fields_and_eta() -> None:
    body = _body()
    msg = body["msg"]
    msg["tag"], msg["subtag"], msg["subtag_message"] = "Exception", "Exception_004", None
    msg["latest_estimated_delivery"] = {"type": "specific", "datetime": "2021-01-20T10:00:00-05:00"}
    msg["checkpoints"].insert(
        0,
        {
            "checkpoint_time": "2021-01-16T09:10:00+08:00",
            "message": "Held at customs",
            "city": "Hong Kong",
            "state": None,
            "country_region": "HKG",
            "tag": "Exception",
            "subtag": "Exception_004",
        },
    )
    del body["event_id"]
    events = parse_webhook(body)
    assert [e.occurred_at.date() for e in events[:2]] == [date(2021, 1, 14), date(2021, 1, 16)]
    customs = events[1]
    assert (customs.status, customs.exception) == (S.EXCEPTION, K.CUSTOMS_HOLD)
    assert customs.location == "Hong Kong, HKG"
    state = events[-1]
    assert (state.status, state.exception) == (S.EXCEPTION, K.CUSTOMS_HOLD)
    assert state.estimated_delivery == date(2021, 1, 20)
    assert state.description == "Held at customs"
    assert state.location == "Hong Kong, HKG"
    assert state.event_id == (
        "aftership:00000000000000000000000000000000:2024-04-10T09:34:56+00:00"
    )


def test_location_text_fallback_and_unknown_checkpoint_code() -> None:
    body = _body()
    body["msg"]["checkpoints"][0].update(location="BROOKLYN, NY 11201", tag="Mystery", subtag="")
    checkpoint, _ = parse_webhook(body)
    assert checkpoint.location == "BROOKLYN, NY 11201"
    assert (checkpoint.status, checkpoint.exception) == (S.EXCEPTION, K.UNKNOWN)


def _mutate(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    payload = _body()
    target: Any = payload
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return payload


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (_mutate(("msg",), None), "msg"),
        (_mutate(("msg", "tracking_number"), ""), r"msg\.tracking_number"),
        (_mutate(("msg", "tracking_number"), "12"), r"msg\.tracking_number"),
        (_mutate(("msg", "tag"), None), r"msg\.tag"),
        (_mutate(("ts",), "yesterday"), "ts"),
        (_mutate(("ts",), True), "ts"),
        (_mutate(("ts",), 10**20), "ts"),
        (_mutate(("msg", "checkpoints"), {}), r"msg\.checkpoints"),
        (_mutate(("msg", "checkpoints", 0), []), r"msg\.checkpoints\[0\]"),
        (
            _mutate(("msg", "checkpoints", 0, "checkpoint_time"), "2021-99-01"),
            r"msg\.checkpoints\[0\]\.checkpoint_time",
        ),
        (_mutate(("msg", "expected_delivery"), "soon"), r"msg\.expected_delivery"),
    ],
)
def test_bad_payloads_name_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(AfterShipPayloadError, match=field) as caught:
        parse_webhook(payload)
    assert isinstance(caught.value, ValueError)
