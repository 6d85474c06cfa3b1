"""EasyPost: status tables, tracker webhook parsing, bad payloads."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from trackflow.models import CarrierStatus, ExceptionKind
from trackflow.sources import easypost
from trackflow.sources.easypost import EasyPostPayloadError, normalize, parse_webhook

FIXTURES = Path(__file__).parent / "fixtures" / "easypost"
S, K = CarrierStatus, ExceptionKind

# Reference 02_easypost.md: Tracker.status (10 values) and status_detail (28 values).
STATUSES = {
    "unknown": (S.LABEL_CREATED, None),
    "pre_transit": (S.LABEL_CREATED, None),
    "in_transit": (S.IN_TRANSIT, None),
    "out_for_delivery": (S.OUT_FOR_DELIVERY, None),
    "delivered": (S.DELIVERED, None),
    "available_for_pickup": (S.AVAILABLE_FOR_PICKUP, None),
    "return_to_sender": (S.RETURNED, None),
    "failure": (S.EXCEPTION, K.UNKNOWN),
    "cancelled": (S.EXCEPTION, K.UNKNOWN),
    "error": (S.EXCEPTION, K.UNKNOWN),
}
# Expected result of each detail under status "in_transit".
DETAILS = {
    "address_correction": (S.EXCEPTION, K.ADDRESS_ISSUE),
    "arrived_at_destination": (S.IN_TRANSIT, None),
    "arrived_at_facility": (S.IN_TRANSIT, None),
    "arrived_at_pickup_location": (S.AVAILABLE_FOR_PICKUP, None),
    "awaiting_information": (S.IN_TRANSIT, None),
    "cancelled": (S.IN_TRANSIT, None),
    "damaged": (S.EXCEPTION, K.DAMAGED),
    "delayed": (S.EXCEPTION, K.CARRIER_DELAY),
    "delivery_exception": (S.EXCEPTION, K.UNKNOWN),
    "departed_facility": (S.IN_TRANSIT, None),
    "departed_origin_facility": (S.IN_TRANSIT, None),
    "expired": (S.IN_TRANSIT, None),
    "failure": (S.EXCEPTION, K.UNKNOWN),
    "held": (S.EXCEPTION, K.HELD_AT_FACILITY),
    "in_transit": (S.IN_TRANSIT, None),
    "label_created": (S.IN_TRANSIT, None),
    "lost": (S.EXCEPTION, K.LOST),
    "missorted": (S.EXCEPTION, K.CARRIER_DELAY),
    "out_for_delivery": (S.OUT_FOR_DELIVERY, None),
    "received_at_destination_facility": (S.IN_TRANSIT, None),
    "received_at_origin_facility": (S.IN_TRANSIT, None),
    "refused": (S.EXCEPTION, K.RETURN_TO_SENDER),
    "return": (S.EXCEPTION, K.RETURN_TO_SENDER),
    "status_update": (S.IN_TRANSIT, None),
    "transferred_to_destination_carrier": (S.IN_TRANSIT, None),
    "transit_exception": (S.EXCEPTION, K.UNKNOWN),
    "unknown": (S.IN_TRANSIT, None),
    "weather_delay": (S.EXCEPTION, K.WEATHER_DELAY),
}


def _event() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (FIXTURES / "easypost_tracker_updated_event.json").read_text()
    )
    return data


def _usable_event() -> dict[str, Any]:
    """The official sample uses tracking_code "1", too short for a real number."""
    payload = _event()
    payload["result"]["tracking_code"] = "794612345678"
    return payload


def test_tables_match_the_documented_enumerations() -> None:
    assert set(easypost.STATUS) == set(STATUSES)
    assert set(easypost.DETAIL) == set(DETAILS)
    assert len(DETAILS) == 28


@pytest.mark.parametrize(("code", "expected"), STATUSES.items())
def test_every_status(code: str, expected: tuple[CarrierStatus, ExceptionKind | None]) -> None:
    result = normalize(code, None)
    assert (result.status, result.exception) == expected
    assert result.known and result.raw_status == code and result.raw_detail is None


@pytest.mark.parametrize(("code", "expected"), DETAILS.items())
def test_every_detail(code: str, expected: tuple[CarrierStatus, ExceptionKind | None]) -> None:
    result = normalize("in_transit", code)
    assert (result.status, result.exception) == expected
    assert result.known and result.raw_detail == code


@pytest.mark.parametrize("detail", sorted(DETAILS))
def test_delivered_and_returned_are_never_overridden(detail: str) -> None:
    assert normalize("delivered", detail).status == S.DELIVERED
    assert normalize("return_to_sender", detail).status == S.RETURNED


def test_detail_refines_a_failure() -> None:
    assert normalize("failure", "weather_delay").exception == K.WEATHER_DELAY
    assert normalize("failure", "cancelled").exception == K.UNKNOWN


def test_codes_are_case_and_space_insensitive() -> None:
    result = normalize(" Delivered ", "ARRIVED_AT_FACILITY")
    assert result.status == S.DELIVERED and result.known
    assert result.raw_status == "delivered"


def test_unknown_status_is_an_unknown_exception_kept_raw() -> None:
    result = normalize("teleported", "weather_delay")
    assert (result.status, result.exception) == (S.EXCEPTION, K.WEATHER_DELAY)
    assert not result.known and result.raw_status == "teleported"
    bare = normalize("teleported", None)
    assert (bare.status, bare.exception, bare.known) == (S.EXCEPTION, K.UNKNOWN, False)


def test_unknown_detail_keeps_the_status_mapping() -> None:
    result = normalize("out_for_delivery", "beamed_up")
    assert (result.status, result.exception) == (S.OUT_FOR_DELIVERY, None)
    assert not result.known and result.raw_detail == "beamed_up"


def test_missing_status_is_unknown() -> None:
    result = normalize(None, None)
    assert (result.status, result.exception, result.known) == (S.EXCEPTION, K.UNKNOWN, False)


def test_official_sample_parses() -> None:
    events = parse_webhook(_usable_event())
    assert len(events) == 8  # 7 tracking details + the tracker state
    assert all(e.source == "easypost" and e.tracking_number == "794612345678" for e in events)
    assert [e.occurred_at for e in events] == sorted(e.occurred_at for e in events)

    first = events[0]
    assert (first.status, first.exception) == (S.LABEL_CREATED, None)
    assert first.occurred_at == datetime(2024, 7, 31, 15, 0, tzinfo=UTC)
    assert first.description == "Shipment information sent to FedEx"
    assert first.location == "US"
    assert first.event_id == (
        "easypost:794612345678:2024-07-31T15:00:00+00:00:pre_transit:label_created"
    )
    assert events[1].location == "ORLANDO, FL, US"
    assert {e.status for e in events[1:]} == {S.IN_TRANSIT}

    state = events[-1]
    assert state.status == S.IN_TRANSIT and state.exception is None
    assert state.occurred_at == datetime(2024, 8, 2, 19, 26, 51, tzinfo=UTC)
    assert state.event_id == "easypost:trk_1:2024-08-02T19:26:51+00:00"
    assert state.estimated_delivery == date(2024, 8, 5)
    assert state.description == "Arrived at FedEx location"
    assert state.location == "EDISON, NJ, US"
    assert len({e.event_id for e in events}) == len(events)


def test_event_ids_are_stable_across_retries() -> None:
    assert [e.event_id for e in parse_webhook(_usable_event())] == [
        e.event_id for e in parse_webhook(_usable_event())
    ]


def test_verbatim_sample_tracking_code_is_rejected_by_name() -> None:
    with pytest.raises(EasyPostPayloadError, match=r"result\.tracking_code"):
        parse_webhook(_event())


def test_bare_tracker_and_exception_state() -> None:
    tracker = _usable_event()["result"]
    tracker["status"], tracker["status_detail"] = "failure", "lost"
    tracker["tracking_details"] = []
    tracker["carrier_detail"] = None
    [state] = parse_webhook(tracker)
    assert (state.status, state.exception) == (S.EXCEPTION, K.LOST)
    assert state.estimated_delivery == date(2024, 8, 5)


def test_unknown_codes_still_emit_events() -> None:
    payload = _usable_event()
    payload["result"]["tracking_details"][0]["status"] = "brand_new_status"
    events = parse_webhook(payload)
    assert (events[0].status, events[0].exception) == (S.EXCEPTION, K.UNKNOWN)
    assert "brand_new_status" in (events[0].event_id or "")


def _mutate(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    payload = copy.deepcopy(_usable_event())
    target: Any = payload
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return payload


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (_mutate(("result",), None), "result"),
        (_mutate(("description",), "shipment.invoice.created"), "description"),
        (_mutate(("object",), "Batch"), "object"),
        (_mutate(("result", "object"), "Shipment"), "result.object"),
        (_mutate(("result", "tracking_code"), None), "result.tracking_code"),
        (_mutate(("result", "status"), ""), "result.status"),
        (_mutate(("result", "tracking_details"), {}), "result.tracking_details"),
        (_mutate(("result", "tracking_details", 2), "x"), r"result\.tracking_details\[2\]"),
        (
            _mutate(("result", "tracking_details", 1, "datetime"), "yesterday"),
            r"result\.tracking_details\[1\]\.datetime",
        ),
        (_mutate(("result", "updated_at"), "soon"), "result.updated_at"),
        (
            _mutate(("result", "carrier_detail", "est_delivery_date_local"), "2024-13-45"),
            r"result\.carrier_detail\.est_delivery_date_local",
        ),
    ],
)
def test_bad_payloads_name_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(EasyPostPayloadError, match=field) as caught:
        parse_webhook(payload)
    assert isinstance(caught.value, ValueError)


def test_not_a_mapping() -> None:
    with pytest.raises(EasyPostPayloadError, match="payload"):
        parse_webhook([])  # type: ignore[arg-type]
