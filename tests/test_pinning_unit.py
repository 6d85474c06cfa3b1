"""Facts from tables are looked up once, when the shipment is pinned, and then only read."""

from __future__ import annotations

import pytest

from tests.factories import make_shipment
from trackflow import pinning, timezones
from trackflow.contracts import ShipmentWorkflowInput
from trackflow.models import Address
from trackflow.pinning import pin, pinned_facts
from trackflow.policy import customer_region, customer_zone
from trackflow.policy_table import PolicyRef
from trackflow.tracking_policy import TrackingPolicy

POLICY = TrackingPolicy()
SMARTPOST = "9261292700768711948021"  # a FedEx Ground Economy label that USPS delivers


def test_pin_resolves_carrier_zone_and_region_once() -> None:
    shipment = make_shipment(
        tracking_number=SMARTPOST,
        carrier="fedex",
        address=Address(province_code="TX", country_code="US"),
    )
    pinned = pin(shipment, POLICY)
    assert (pinned.carrier, pinned.declared_carrier) == ("usps", "fedex")
    assert pinned.pinned is not None
    assert pinned.pinned.model_dump() == {
        "timezone": "America/Chicago",
        "timezone_source": "address_region",
        "region": "US-TX",
        "carrier_reason": "number_format",
        "warnings": [],  # a USPS label declared FedEx is no wrong number
    }


def test_the_policy_reads_the_pinned_facts_even_when_the_tables_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pinned = pin(make_shipment(address=Address(province_code="TX", country_code="US")), POLICY)

    def moved(*_: object) -> timezones.ResolvedZone:
        return timezones.ResolvedZone(name="Pacific/Honolulu", source="address_region")

    monkeypatch.setattr(pinning, "resolve_timezone", moved)
    monkeypatch.setattr(pinning, "region_code", lambda _: "US-HI")
    assert pin(pinned, POLICY).pinned is not None  # the edit is live for a fresh lookup…
    assert customer_zone(pin(pinned, POLICY), POLICY) == "Pacific/Honolulu"
    # …but a pinned shipment keeps what it was pinned with.
    assert customer_zone(pinned, POLICY) == "America/Chicago"
    assert customer_region(pinned, POLICY) == "US-TX"
    assert pinned_facts(pinned, POLICY) == pinned.pinned


def test_a_workflow_input_needs_a_pinned_shipment() -> None:
    with pytest.raises(ValueError, match="pinned"):
        ShipmentWorkflowInput(shipment=make_shipment(), policy=PolicyRef(digest="x"))
    ShipmentWorkflowInput(shipment=pin(make_shipment(), POLICY), policy=PolicyRef(digest="x"))
