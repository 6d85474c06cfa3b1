"""Issue 18, item 5 (pure): a tracking number that does not fit its carrier is accepted with
typed warnings, pinned with the shipment, shown in its document and `shipment show`, and
raised to ops once per shipment."""

from __future__ import annotations

import pytest

from starters.render import format_shipment
from tests.factories import ANY_TIME_POLICY, at, make_shipment
from trackflow import policy as tracking
from trackflow import policy_table
from trackflow.carriers.samples import SHAPES, random_tracking_number
from trackflow.carriers.validity import number_warnings
from trackflow.contracts import InboxItem, ShipmentWorkflowInput
from trackflow.effects import AlertKind
from trackflow.models import NumberWarningCode, ShipmentUpdate
from trackflow.outlook import first_task
from trackflow.pinning import pin
from trackflow.policy import ShipmentState

VALID_UPS = "1Z999AA10123456784"
WRONG_CHECK_DIGIT = "1Z999AA10123456785"


@pytest.mark.parametrize(
    ("number", "carrier", "code"),
    [
        ("HELLOWORLD", "ups", NumberWarningCode.NOT_CARRIER_FORMAT),
        (WRONG_CHECK_DIGIT, "ups", NumberWarningCode.CHECK_DIGIT),
        (WRONG_CHECK_DIGIT, None, NumberWarningCode.CHECK_DIGIT),
        ("HELLOWORLD", None, NumberWarningCode.UNKNOWN_FORMAT),
        ("9400111899223197428490", "usps", NumberWarningCode.CHECK_DIGIT),
    ],
)
def test_a_number_that_does_not_fit_its_carrier_is_warned_about(
    number: str, carrier: str | None, code: NumberWarningCode
) -> None:
    [warning] = number_warnings(number, carrier)
    assert warning.code is code
    assert number in warning.message


@pytest.mark.parametrize(
    ("number", "carrier"),
    [
        (VALID_UPS, "ups"),
        (VALID_UPS, None),
        ("HELLOWORLD", "royal_mail"),  # a carrier our table does not know: nothing to say
        ("123456789012", "ups"),  # validly FedEx's (a check digit): resolution's business
    ],
)
def test_a_number_that_fits_or_cannot_be_judged_has_no_warning(
    number: str, carrier: str | None
) -> None:
    assert number_warnings(number, carrier) == []


@pytest.mark.parametrize("courier", sorted(SHAPES))
def test_every_sample_number_fits_its_courier(courier: str) -> None:
    assert number_warnings(random_tracking_number(courier), courier) == []


def test_warnings_are_pinned_shown_and_raised_to_ops_once() -> None:
    shipment = pin(make_shipment(tracking_number="HELLOWORLD", carrier="UPS"), ANY_TIME_POLICY)
    assert shipment.pinned is not None
    [warning] = shipment.pinned.warnings
    assert warning.code is NumberWarningCode.NOT_CARRIER_FORMAT

    state = tracking.on_start(ShipmentState(), at(0))
    update = ShipmentUpdate(shipment=shipment)
    state, current, _ = tracking.on_registration(state, shipment, update, at(0))
    decision = tracking.on_number_warnings(state, current, at(0))
    [alert] = decision.alerts
    assert alert.alert is AlertKind.INVALID_TRACKING_NUMBER
    assert alert.tracking_number == "HELLOWORLD" and warning.message in alert.summary
    # Registered again (a retry, an update): no second alert.
    state, current, _ = tracking.on_registration(decision.state, current, update, at(1))
    assert tracking.on_number_warnings(state, current, at(1)).alerts == []

    document = tracking.view(state, current, ANY_TIME_POLICY).public()
    assert document.warnings == [warning]
    assert f"warning: {warning.message} (not_carrier_format)" in format_shipment(document)


def test_a_valid_number_raises_nothing_and_shows_no_warning() -> None:
    shipment = pin(make_shipment(tracking_number=VALID_UPS, carrier="UPS"), ANY_TIME_POLICY)
    state = tracking.on_start(ShipmentState(), at(0))
    assert tracking.on_number_warnings(state, shipment, at(0)).alerts == []
    assert tracking.view(state, shipment, ANY_TIME_POLICY).public().warnings == []
    assert "warning" not in format_shipment(
        tracking.view(state, shipment, ANY_TIME_POLICY).public()
    )


def test_the_first_row_foreseen_at_the_edge_has_the_warnings_and_the_alert_note() -> None:
    shipment = pin(make_shipment(tracking_number="HELLOWORLD", carrier="UPS"), ANY_TIME_POLICY)
    ref = policy_table.ref(ANY_TIME_POLICY, None)
    start = ShipmentWorkflowInput(
        shipment=shipment, policy=ref, inbox=[InboxItem(update=ShipmentUpdate(shipment=shipment))]
    )
    row = first_task(start, ANY_TIME_POLICY, at(0)).row()
    assert [w.code for w in row.document.warnings] == [NumberWarningCode.NOT_CARRIER_FORMAT]
    assert [n.kind for n in row.document.notes] == ["alert"]
