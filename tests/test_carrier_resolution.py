"""The number's own carrier wins for links and wording; what the platform said is kept."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.factories import ANY_TIME_POLICY, at, make_event, make_shipment
from trackflow.carriers.resolve import with_detected_carrier
from trackflow.messages import Brand, render
from trackflow.models import CarrierStatus, Shipment
from trackflow.pinning import pin
from trackflow.policy import on_event, view
from trackflow.shipment_state import ShipmentState
from trackflow.tracking_policy import TrackingPolicy

SMARTPOST = "9261292700768711948021"  # a FedEx Ground Economy label that USPS delivers


def test_relay_number_named_fedex_by_the_platform_is_followed_as_usps() -> None:
    shipment = make_shipment(
        tracking_number=SMARTPOST, carrier="FedEx", tracking_url="https://fedex.example/t"
    )
    resolved = with_detected_carrier(shipment)
    assert resolved.carrier == "usps"
    assert resolved.declared_carrier == "fedex"
    assert resolved.detected_format == "usps_impb_c"
    assert resolved.tracking_url is not None
    assert resolved.tracking_url.startswith("https://tools.usps.com/")


def test_message_and_view_use_the_detected_carrier_and_keep_the_declared_one() -> None:
    shipment = pinned(make_shipment(tracking_number=SMARTPOST, carrier="fedex"))
    event = make_event(CarrierStatus.IN_TRANSIT, at(1), tracking_number=SMARTPOST)
    decision = on_event(ShipmentState(), event, shipment, ANY_TIME_POLICY, at(1))
    email = render(shipment, decision.sends[0], Brand(store_name="Acme"))
    shown = view(decision.state, shipment, ANY_TIME_POLICY)
    assert "USPS" in email.body
    assert "FedEx" not in email.body
    assert (shown.carrier, shown.declared_carrier) == ("usps", "fedex")


def test_agreeing_or_unrecognised_numbers_keep_the_platform_carrier() -> None:
    agreeing = make_shipment(tracking_number="1Z5R89390357567127", carrier="ups")
    unknown = make_shipment(tracking_number="ZZ0000000000", carrier="canpar")
    assert with_detected_carrier(agreeing) is agreeing
    assert with_detected_carrier(unknown) is unknown


def test_missing_platform_carrier_is_filled_in_from_the_number() -> None:
    shipment = make_shipment(tracking_number="1Z5R89390357567127", carrier=None)
    resolved = with_detected_carrier(shipment)
    assert (resolved.carrier, resolved.declared_carrier) == ("ups", None)
    assert resolved.tracking_url is not None
    assert "1Z5R89390357567127" in resolved.tracking_url


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "starters.cli", "carrier", "detect", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_cli_carrier_detect_json_ranks_matches() -> None:
    result = _cli("4201028200009261290113185417468510", "--json")
    assert result.returncode == 0, result.stderr
    matches = json.loads(result.stdout)["matches"]
    assert [(m["courier"], m["format"], m["valid"]) for m in matches] == [
        ("usps", "usps_impb_c", True),
        ("fedex", "fedex_34", True),
    ]
    assert matches[0]["service"] == "Parcel Select"


def test_cli_carrier_detect_reports_no_match() -> None:
    as_json = _cli("not-a-number", "--json")
    as_text = _cli("not-a-number")
    assert json.loads(as_json.stdout) == {"matches": []}
    assert as_text.returncode == 1
    assert "no known carrier format" in as_text.stdout


def pinned(shipment: Shipment) -> Shipment:
    return pin(shipment, TrackingPolicy())
