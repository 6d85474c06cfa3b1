"""Issue 18, item 4 (pure): a promised date already over is kept for analytics but never told
(messages, Klaviyo facts, the tracking page), judged in the customer's pinned zone at the
moment it is told; a placeholder `tracking_url` is never a message's or an alert's link."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from tests.factories import ANY_TIME_POLICY, make_event, make_shipment
from trackflow import policy as tracking
from trackflow.estimates import tellable_estimate
from trackflow.links import placeholder_because, web_link
from trackflow.messages import Brand, MessageContext, render
from trackflow.models import CarrierStatus, ExceptionKind, Shipment
from trackflow.policy import ShipmentState
from trackflow.projection import project
from trackflow.tracking_policy import TrackingPolicy

DEC_7 = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
NOV_23 = date(2026, 11, 23)
BRAND = Brand(store_name="Acme", support_email="help@acme.test")
QUIET_NIGHTS = TrackingPolicy()  # the default send windows: held overnight


def _delayed(
    estimate: date, occurred_at: datetime, zone: str = "America/Chicago"
) -> tuple[Shipment, tracking.Decision]:
    shipment = make_shipment(timezone=zone, carrier="ups")
    state = tracking.on_start(ShipmentState(), occurred_at - timedelta(days=3))
    event = make_event(
        CarrierStatus.EXCEPTION,
        occurred_at,
        exception=ExceptionKind.WEATHER_DELAY,
        estimated_delivery=estimate,
    )
    return shipment, tracking.on_event(state, event, shipment, ANY_TIME_POLICY, occurred_at)


def test_an_estimate_before_the_event_is_kept_but_no_message_tells_it() -> None:
    shipment, decision = _delayed(NOV_23, DEC_7)
    assert decision.state.estimated_delivery == NOV_23  # kept: on-time analytics
    assert decision.sends and all(send.estimated_delivery is None for send in decision.sends)
    for send in decision.sends:
        message = render(MessageContext.of(shipment), send, BRAND)
        said = message.body + (message.html or "")
        assert "November 23" not in said and "New estimate" not in said
    row = project(decision.state, shipment, ANY_TIME_POLICY, DEC_7, 1)
    assert row.estimated_delivery == NOV_23


def test_an_estimate_still_ahead_is_told() -> None:
    shipment, decision = _delayed(date(2026, 12, 9), DEC_7)
    assert {send.estimated_delivery for send in decision.sends} == {date(2026, 12, 9)}
    email = render(MessageContext.of(shipment), decision.sends[0], BRAND)
    assert "Wednesday, December 9" in email.body


@pytest.mark.parametrize(
    ("zone", "told"),
    [
        # 03:00 UTC on December 7 is still December 6 in Los Angeles: today, still a promise.
        ("America/Los_Angeles", True),
        # ... and already December 7 in Berlin: yesterday's estimate.
        ("Europe/Berlin", False),
    ],
)
def test_today_is_the_customers_day_in_their_pinned_zone(zone: str, told: bool) -> None:
    night = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    _, decision = _delayed(date(2026, 12, 6), night, zone)
    expected = date(2026, 12, 6) if told else None
    assert {send.estimated_delivery for send in decision.sends} == {expected}


def test_a_held_message_whose_estimate_passed_overnight_goes_out_without_it() -> None:
    zone = "America/New_York"
    shipment = make_shipment(timezone=zone, carrier="ups")
    late_evening = datetime(2026, 12, 7, 4, 30, tzinfo=UTC)  # 23:30 on the 6th in New York
    state = tracking.on_start(ShipmentState(), late_evening - timedelta(days=2))
    event = make_event(CarrierStatus.IN_TRANSIT, late_evening, estimated_delivery=date(2026, 12, 6))
    decided = tracking.on_event(state, event, shipment, QUIET_NIGHTS, late_evening)
    assert not decided.sends and decided.state.pending
    assert {p.send.estimated_delivery for p in decided.state.pending} == {date(2026, 12, 6)}
    morning = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)  # 09:00 on the 7th
    released = tracking.on_tick(decided.state, shipment, QUIET_NIGHTS, morning)
    assert released.sends
    assert all(send.estimated_delivery is None for send in released.sends)


def test_tellable_estimate_is_the_one_rule() -> None:
    assert tellable_estimate(None, DEC_7, "UTC") is None
    assert tellable_estimate(date(2026, 12, 7), DEC_7, "UTC") == date(2026, 12, 7)
    assert tellable_estimate(date(2026, 12, 6), DEC_7, "UTC") is None
    assert tellable_estimate(date(2026, 12, 6), DEC_7, "Pacific/Honolulu") is None
    assert tellable_estimate(date(2026, 12, 6), DEC_7, "No/Such_Zone") is None


# --- placeholder tracking links -----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://...",
        "https://www.ups.com/track?tracknum=...",
        "https://track.example.com/{tracking_number}",
        "https://tracking",
        "https://a..b/x",
        "ftp://ups.com/x",
    ],
)
def test_a_placeholder_tracking_url_is_no_link(url: str) -> None:
    assert placeholder_because(url) is not None
    assert web_link(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://www.ups.com/track?tracknum=1Z999AA10123456784",
        "http://tracking.acme-shop.co.uk/t/123",
        "https://bücher.de/sendung/1",
        "https://t.example/1Z999",
    ],
)
def test_a_real_tracking_url_is_kept(url: str) -> None:
    assert placeholder_because(url) is None and web_link(url) == url


def test_a_placeholder_from_a_platform_is_replaced_by_the_carriers_page() -> None:
    shipment = make_shipment(carrier="ups", tracking_url="https://...")
    context = MessageContext.of(shipment)
    assert context.tracking_url is not None
    assert context.tracking_url.startswith("https://wwwapps.ups.com/")
    assert tracking.carrier_page(shipment) == context.tracking_url
    _, decision = _delayed(date(2026, 12, 9), DEC_7)
    send = decision.sends[0]
    message = render(context, send, BRAND)
    assert "https://..." not in message.body and "https://..." not in (message.html or "")


def test_the_defaults_tell_nothing_with_no_policy_change() -> None:
    """The estimate rule changes what is said, not when: same sends, same keys."""
    _, past = _delayed(NOV_23, DEC_7)
    _, ahead = _delayed(date(2026, 12, 9), DEC_7)
    assert [s.idempotency_key for s in past.sends] == [s.idempotency_key for s in ahead.sends]
