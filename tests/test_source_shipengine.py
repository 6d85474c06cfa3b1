"""ShipEngine: status tables, track webhook parsing, bad payloads."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from trackflow.models import CarrierStatus, ExceptionKind
from trackflow.sources import shipengine
from trackflow.sources.shipengine import ShipEnginePayloadError, normalize, parse_webhook

FIXTURES = Path(__file__).parent / "fixtures" / "shipengine"
S, K = CarrierStatus, ExceptionKind
RECEIVED = datetime(2026, 4, 28, 12, 0, tzinfo=UTC)

# Reference 03_shipengine.md: status_code (7 documented + SP) and status_detail_code (72).
STATUSES = {
    "UN": (S.EXCEPTION, K.UNKNOWN),
    "AC": (S.IN_TRANSIT, None),
    "IT": (S.IN_TRANSIT, None),
    "DE": (S.DELIVERED, None),
    "EX": (S.EXCEPTION, K.UNKNOWN),
    "AT": (S.EXCEPTION, K.FAILED_ATTEMPT),
    "NY": (S.LABEL_CREATED, None),
    "SP": (S.AVAILABLE_FOR_PICKUP, None),
}
_IT = (S.IN_TRANSIT, None)
_PICKUP = (S.AVAILABLE_FOR_PICKUP, None)


def _x(kind: ExceptionKind) -> tuple[CarrierStatus, ExceptionKind]:
    return (S.EXCEPTION, kind)


# Expected result of each detail code under status "IT".
DETAILS: dict[str, tuple[CarrierStatus, ExceptionKind | None]] = {
    "COLLECTION_FAILED": _x(K.CARRIER_DELAY),
    "AWAITING_DESPATCH": _IT,
    "COLLECTION_REQUESTED": _IT,
    "DESPATCHED": _IT,
    "ELEC_ADVICE_RECD_BY_CARRIER": _IT,
    "NOT_YET_RECEIVED_BY_CARRIER": _IT,
    "COLLECTION_MADE": _IT,
    "ATTEMPTED_DELIVERY": _x(K.FAILED_ATTEMPT),
    "ATTEMPTED_DELIVERY_2ND": _x(K.FAILED_ATTEMPT),
    "ATTEMPTED_DELIVERY_3RD": _x(K.FAILED_ATTEMPT),
    "COD_AMOUNT_NOT_PAID": _x(K.FAILED_ATTEMPT),
    "COD_AMOUNT_PAID": _IT,
    "CUSTOMER_CARDED": _x(K.FAILED_ATTEMPT),
    "CUSTOMER_IDENTIFICATION_FAILED": _x(K.FAILED_ATTEMPT),
    "INVALID_METHOD_OF_PAYMENT": _x(K.FAILED_ATTEMPT),
    "NO_ACCESS_TO_RECIPIENTS_ADDRESS": _x(K.FAILED_ATTEMPT),
    "OUT_FOR_DELIVERY": (S.OUT_FOR_DELIVERY, None),
    "DELIVERED": _IT,
    "DELIVERED_DAMAGED": _x(K.DAMAGED),
    "DELIVERED_IN_PART": _IT,
    "DELIVERED_SPECIFIED_SAFE_PLACE": _IT,
    "DELIVERED_TO_ALTERNATIVE_DELIVERY_LOCATION": _IT,
    "DELIVERED_TO_NEIGHBOUR": _IT,
    "DELIVERED_TO_PO_BOX": _IT,
    "PARCEL_COLLECTED_FROM_PICKUP_POINT": _IT,
    "POST_TRANSIT_STATUS": _IT,
    "PROOF_OF_DELIVERY": _IT,
    "CANCELLED": _IT,
    "CANCELLED_BEFORE_DESPATCH": _IT,
    "CUSTOMER_MOVED": _x(K.ADDRESS_ISSUE),
    "HAZARDOUS_PROHIBITED": _IT,
    "NOT_COLLECTED_FROM_PICKUP_POINT": _x(K.RETURN_TO_SENDER),
    "NOT_DELIVERED": _x(K.RETURN_TO_SENDER),
    "NOT_DELIVERED_ADDRESSEE_DECEASED": _x(K.RETURN_TO_SENDER),
    "PARCEL_DAMAGED": _x(K.DAMAGED),
    "PARCEL_DISPOSED": _x(K.LOST),
    "PARCEL_LOST": _x(K.LOST),
    "PARCEL_OUTSIDE_OF_SERVICE_CAPABILITY": _IT,
    "REFUSED_BY_CUSTOMER": _x(K.RETURN_TO_SENDER),
    "RETURN_TO_SENDER": _x(K.RETURN_TO_SENDER),
    "ADDRESS_QUERY": _x(K.ADDRESS_ISSUE),
    "CARRIER_DELAYS": _x(K.CARRIER_DELAY),
    "CUSTOMS_CLEARED": _IT,
    "CUSTOMS_PROCESSING": _IT,
    "DELAYED_NOT_CARRIER": _x(K.CARRIER_DELAY),
    "DELIVERY_ARRANGED_WITH_RECIPIENT": _IT,
    "HELD_BY_CARRIER": _x(K.HELD_AT_FACILITY),
    "HELD_BY_CARRIER_FOR_CLEARANCE_PRE_PROCESSING": _x(K.CUSTOMS_HOLD),
    "HELD_BY_CUSTOMS": _x(K.CUSTOMS_HOLD),
    "HELD_BY_EXPORT_CUSTOMS": _x(K.CUSTOMS_HOLD),
    "HELD_BY_IMPORT_CUSTOMS": _x(K.CUSTOMS_HOLD),
    "HUB_SCAN_OUT": _IT,
    "IN_TRANSIT": _IT,
    "INCORRECT_DECLARATION": _x(K.CUSTOMS_HOLD),
    "INFORMATION": _IT,
    "MISSORTED": _x(K.CARRIER_DELAY),
    "PARCEL_OVER_LABELLED": _IT,
    "PARCEL_REPACKED": _IT,
    "PARCEL_UPDATE_NOTIFICATION_VIA_EMAIL": _IT,
    "PARCEL_UPDATE_NOTIFICATION_VIA_SMS": _IT,
    "RECEIVED_BY_CARRIER": _IT,
    "RECEIVED_LOCAL_DELIVERY_DEPOT": _IT,
    "ROUTING_ERROR": _x(K.CARRIER_DELAY),
    "SUB_CONTRACTOR_EVENT": _IT,
    "SUB_CONTRACTOR_RECEIVED": _IT,
    "RECD_BY_CARRIER_NO_ELEC_ADVICE": _IT,
    "AWAITING_ELECTRONIC_ADVICE": _IT,
    "AWAITING_COLLECTION_FROM_PICKUP_POINT": _PICKUP,
    "COLLECT_AT_LOCAL_PO": _PICKUP,
    "CUSTOMER_TO_COLLECT_FROM_CARRIER": _PICKUP,
    "DELIVERED_TO_LOCKER_COLLECTION_POINT": _PICKUP,
    "CARRIER_STATUS_NOT_MAPPED": _IT,
}


def _examples() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "shipengine_api_track_examples.json").read_text())
    return data


def _example(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = copy.deepcopy(_examples()[name])
    return payload


def test_tables_match_the_documented_enumerations() -> None:
    assert set(shipengine.STATUS) == set(STATUSES)
    assert set(shipengine.DETAIL) == set(DETAILS)
    assert len(DETAILS) == 72


@pytest.mark.parametrize(("code", "expected"), STATUSES.items())
def test_every_status(code: str, expected: tuple[CarrierStatus, ExceptionKind | None]) -> None:
    result = normalize(code)
    assert (result.status, result.exception) == expected
    assert result.known and result.raw_status == code


@pytest.mark.parametrize(("code", "expected"), DETAILS.items())
def test_every_detail(code: str, expected: tuple[CarrierStatus, ExceptionKind | None]) -> None:
    result = normalize("IT", code)
    assert (result.status, result.exception) == expected
    assert result.known and result.raw_detail == code


@pytest.mark.parametrize("detail", sorted(DETAILS))
def test_delivered_is_never_overridden(detail: str) -> None:
    assert normalize("DE", detail).status == S.DELIVERED


def test_detail_refines_exception_and_attempt() -> None:
    assert normalize("EX", "HELD_BY_CUSTOMS").exception == K.CUSTOMS_HOLD
    assert normalize("AT", "NO_ACCESS_TO_RECIPIENTS_ADDRESS").exception == K.FAILED_ATTEMPT
    assert normalize("EX", "DELIVERED_DAMAGED").exception == K.DAMAGED
    assert normalize("EX", "OUT_FOR_DELIVERY").status == S.OUT_FOR_DELIVERY


def test_codes_are_case_insensitive() -> None:
    result = normalize("de", "delivered_to_neighbour")
    assert result.status == S.DELIVERED and result.known
    assert (result.raw_status, result.raw_detail) == ("DE", "DELIVERED_TO_NEIGHBOUR")


def test_unknown_codes_kept_raw() -> None:
    status = normalize("ZZ")
    assert (status.status, status.exception, status.known) == (S.EXCEPTION, K.UNKNOWN, False)
    assert status.raw_status == "ZZ"
    detail = normalize("IT", "TELEPORTED")
    assert (detail.status, detail.exception, detail.known) == (S.IN_TRANSIT, None, False)
    assert detail.raw_detail == "TELEPORTED"


def test_ups_in_transit_example() -> None:
    events = parse_webhook(_example("third_party_test_payload_2025_ups_in_transit"))
    # The only scan has "status_code": null, so only the shipment state is emitted.
    [state] = events
    assert (state.status, state.exception) == (S.IN_TRANSIT, None)
    assert state.tracking_number == "1Z9634841399247181"
    assert state.source == "shipengine"
    assert state.occurred_at == datetime(2025, 10, 22, 20, 0, tzinfo=UTC)
    assert state.location == "Oakland, CA, US"
    assert state.description == "Your package is moving within the UPS network"
    assert state.estimated_delivery == date(2025, 10, 23)
    assert state.event_id == "shipengine:1Z9634841399247181:status:2025-10-22T20:00:00+00:00:IT:"


def test_usps_delivered_example_old_shape() -> None:
    [state] = parse_webhook(_example("third_party_captured_2019_usps_delivered"))
    assert state.status == S.DELIVERED
    assert state.occurred_at == datetime(2019, 4, 12, 17, 45, 26, 734000, tzinfo=UTC)
    assert state.location == "AUSTIN, TX"  # blank country_code dropped
    assert state.estimated_delivery is None


def test_partial_official_examples_need_received_at() -> None:
    payload = _example("official_partial_help_shipengine_com_stamps_com")
    with pytest.raises(ShipEnginePayloadError, match=r"data\.events"):
        parse_webhook(payload)
    [state] = parse_webhook(payload, received_at=RECEIVED)
    assert (state.status, state.occurred_at) == (S.IN_TRANSIT, RECEIVED)
    assert state.tracking_number == "9400111205476899201487"


def test_v2_example() -> None:
    [state] = parse_webhook(
        _example("official_shipstation_v2_TRACK_EVENT_V2_partial"), received_at=RECEIVED
    )
    assert (state.status, state.exception) == (S.LABEL_CREATED, None)
    assert state.description == "Shipper created a label, UPS has not received the package yet."
    assert state.estimated_delivery == date(2026, 4, 30)


def test_scans_with_status_codes_become_events() -> None:
    payload = _example("third_party_test_payload_2025_ups_in_transit")
    data = payload["data"]
    data["status_code"], data["status_detail_code"] = "EX", "HELD_BY_IMPORT_CUSTOMS"
    data["exception_description"] = "Held by customs"
    older = dict(data["events"][0], occurred_at="2025-10-21T08:00:00Z", event_code="AC")
    older["status_code"] = "AC"
    data["events"][0]["status_code"] = "EX"
    data["events"][0]["status_detail_code"] = "HELD_BY_IMPORT_CUSTOMS"
    data["events"].append(older)  # most recent first, as ShipEngine sends them
    events = parse_webhook(payload)
    assert [e.status for e in events] == [S.IN_TRANSIT, S.EXCEPTION, S.EXCEPTION]
    assert events[0].event_id == "shipengine:1Z9634841399247181:2025-10-21T08:00:00+00:00:AC"
    assert events[1].exception == K.CUSTOMS_HOLD
    assert events[2].exception == K.CUSTOMS_HOLD
    assert events[2].description == "Held by customs"
    assert len({e.event_id for e in events}) == 3


def test_unknown_scan_code_is_not_dropped() -> None:
    payload = _example("third_party_test_payload_2025_ups_in_transit")
    payload["data"]["events"][0]["status_code"] = "QQ"
    first, _state = parse_webhook(payload)
    assert (first.status, first.exception) == (S.EXCEPTION, K.UNKNOWN)


def _mutate(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    payload = _example("third_party_test_payload_2025_ups_in_transit")
    target: Any = payload
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return payload


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (_mutate(("resource_type",), "API_BATCH"), "resource_type"),
        (_mutate(("data",), []), "data"),
        (_mutate(("data", "tracking_number"), None), r"data\.tracking_number"),
        (_mutate(("data", "tracking_number"), "1Z"), r"data\.tracking_number"),
        (_mutate(("data", "status_code"), None), r"data\.status_code"),
        (_mutate(("data", "events"), "none"), r"data\.events"),
        (_mutate(("data", "events", 0), 7), r"data\.events\[0\]"),
        (_mutate(("data", "events", 0, "occurred_at"), "later"), r"data\.events\[0\]\.occurred_at"),
        (_mutate(("data", "estimated_delivery_date"), "soon"), r"data\.estimated_delivery_date"),
    ],
)
def test_bad_payloads_name_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ShipEnginePayloadError, match=field) as caught:
        parse_webhook(payload)
    assert isinstance(caught.value, ValueError)


def test_scan_without_any_time() -> None:
    payload = _example("third_party_test_payload_2025_ups_in_transit")
    scan = payload["data"]["events"][0]
    del scan["occurred_at"], scan["carrier_occurred_at"]
    with pytest.raises(ShipEnginePayloadError, match=r"data\.events\[0\]\.occurred_at"):
        parse_webhook(payload)
