"""Message rendering: pure, so no Temporal here."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import jinja2
import pytest

from trackflow import messages
from trackflow.messages import Brand, RenderedMessage, carrier_display_name, is_gsm7, render
from trackflow.models import (
    Channel,
    Customer,
    ExceptionKind,
    LineItem,
    Shipment,
    ShippingSpeed,
    Trigger,
)
from trackflow.policy import SendNotification, Tone

UPS_URL = "https://www.ups.com/track?tracknum=1Z999AA10123456784"
BRAND = Brand(store_name="Acme", support_email="help@acme.test")
ETA = date(2026, 11, 23)
MILESTONES = [t for t in Trigger if t != Trigger.EXCEPTION]
EVERY_SEND = [(t, None) for t in MILESTONES] + [(Trigger.EXCEPTION, k) for k in ExceptionKind]


def make_shipment(**overrides: Any) -> Shipment:
    fields: dict[str, Any] = {
        "order_id": "1001",
        "order_name": "#1001",
        "tracking_number": "1Z999AA10123456784",
        "carrier": "ups",
        "customer": Customer(
            name="Jane Doe", email="jane@example.com", phone="+15025550123", sms_consent=True
        ),
        "order_value": Decimal("49.00"),
        "tracking_url": UPS_URL,
        "items": [LineItem(title="Mug", quantity=2), LineItem(title="Tee")],
    }
    fields.update(overrides)
    return Shipment(**fields)


def make_send(
    trigger: Trigger,
    channel: Channel,
    kind: ExceptionKind | None = None,
    *,
    tone: Tone = Tone.NEW_CUSTOMER,
    **overrides: Any,
) -> SendNotification:
    fields: dict[str, Any] = {
        "idempotency_key": f"k:{trigger}:{channel}",
        "trigger": trigger,
        "channel": channel,
        "to": "jane@example.com" if channel == Channel.EMAIL else "+15025550123",
        "exception": kind,
        "tone": tone,
        "estimated_delivery": ETA,
        "event_location": "Louisville, KY",
    }
    fields.update(overrides)
    return SendNotification(**fields)


def email(trigger: Trigger, kind: ExceptionKind | None = None, **kw: Any) -> RenderedMessage:
    shipment = kw.pop("shipment", make_shipment())
    return render(shipment, make_send(trigger, Channel.EMAIL, kind, **kw), BRAND)


def sms(trigger: Trigger, kind: ExceptionKind | None = None, **kw: Any) -> RenderedMessage:
    shipment = kw.pop("shipment", make_shipment())
    brand = kw.pop("brand", BRAND)
    return render(shipment, make_send(trigger, Channel.SMS, kind, **kw), brand)


@pytest.mark.parametrize(("trigger", "kind"), EVERY_SEND)
def test_email_has_subject_text_and_html(trigger: Trigger, kind: ExceptionKind | None) -> None:
    message = email(trigger, kind)

    assert message.channel == Channel.EMAIL
    assert message.to == "jane@example.com"
    assert message.subject is not None
    assert "#1001" in message.subject
    assert "\n" not in message.subject
    assert message.body.startswith("Hi Jane,")
    assert "#1001" in message.body
    assert UPS_URL in message.body
    assert "The Acme team" in message.body
    assert message.html is not None
    assert message.html.startswith("<!doctype html>")
    assert f'href="{UPS_URL}"' in message.html
    assert "Hi Jane," in message.html


@pytest.mark.parametrize("tone", list(Tone))
@pytest.mark.parametrize(("trigger", "kind"), EVERY_SEND)
def test_sms_fits_one_gsm7_segment_with_sender_and_link(
    trigger: Trigger, kind: ExceptionKind | None, tone: Tone
) -> None:
    message = sms(trigger, kind, tone=tone)

    assert message.channel == Channel.SMS
    assert message.to == "+15025550123"
    assert message.subject is None
    assert message.html is None
    assert message.body.startswith("Acme: ")
    assert message.body.endswith(UPS_URL)
    assert len(message.body) <= 160
    assert is_gsm7(message.body)


def test_each_trigger_says_something_different() -> None:
    subjects = {email(t).subject for t in MILESTONES}
    texts = {sms(t).body for t in MILESTONES}

    assert len(subjects) == len(MILESTONES)
    assert len(texts) == len(MILESTONES)
    assert "out for delivery" in (email(Trigger.OUT_FOR_DELIVERY).subject or "")
    assert "delivered" in sms(Trigger.DELIVERED).body


def test_every_exception_kind_has_its_own_wording() -> None:
    kinds = list(ExceptionKind)

    subjects = {email(Trigger.EXCEPTION, k).subject for k in kinds}
    bodies = {email(Trigger.EXCEPTION, k).body for k in kinds}
    texts = {sms(Trigger.EXCEPTION, k).body for k in kinds}

    assert len(subjects) == len(kinds)
    assert len(bodies) == len(kinds)
    assert len(texts) == len(kinds)


@pytest.mark.parametrize(
    ("kind", "phrase"),
    [
        (ExceptionKind.WEATHER_DELAY, "We now expect it to arrive Monday, November 23."),
        (ExceptionKind.CARRIER_DELAY, "We now expect it to arrive Monday, November 23."),
        (ExceptionKind.ADDRESS_ISSUE, "to confirm your address"),
        (ExceptionKind.FAILED_ATTEMPT, "try again on the next business day"),
        (ExceptionKind.HELD_AT_FACILITY, "waiting for you at Louisville, KY"),
        (ExceptionKind.CUSTOMS_HOLD, "held at customs"),
        (ExceptionKind.DAMAGED, "We will make it right."),
        (ExceptionKind.LOST, "We will make it right."),
        (ExceptionKind.RETURN_TO_SENDER, "on its way back to us"),
        (ExceptionKind.UNKNOWN, "We're watching it closely"),
    ],
)
def test_exception_email_says_what_happens_next(kind: ExceptionKind, phrase: str) -> None:
    message = email(Trigger.EXCEPTION, kind)

    assert phrase in message.body
    assert phrase.replace("'", "&#39;") in (message.html or "")


@pytest.mark.parametrize("kind", [ExceptionKind.ADDRESS_ISSUE, ExceptionKind.DAMAGED])
def test_exceptions_needing_the_customer_give_the_support_contact(kind: ExceptionKind) -> None:
    assert "help@acme.test" in sms(Trigger.EXCEPTION, kind).body
    assert "contact us at help@acme.test" in email(Trigger.EXCEPTION, kind).body


def test_exception_without_kind_uses_the_generic_wording() -> None:
    assert (
        email(Trigger.EXCEPTION, None).body == email(Trigger.EXCEPTION, ExceptionKind.UNKNOWN).body
    )


def test_returning_customer_is_welcomed_back_in_email_and_sms() -> None:
    new_email = email(Trigger.IN_TRANSIT, tone=Tone.NEW_CUSTOMER)
    back_email = email(Trigger.IN_TRANSIT, tone=Tone.RETURNING_CUSTOMER)
    new_sms = sms(Trigger.IN_TRANSIT, tone=Tone.NEW_CUSTOMER)
    back_sms = sms(Trigger.IN_TRANSIT, tone=Tone.RETURNING_CUSTOMER)

    assert back_email.body.startswith("Hi Jane, welcome back!")
    assert "Thanks for shopping with us again," in back_email.body
    assert "welcome back" in (back_email.html or "")
    assert "welcome back" not in new_email.body.lower()
    assert "Thanks for shopping with us," in new_email.body
    assert "welcome back" in back_sms.body.lower()
    assert "welcome back" not in new_sms.body.lower()


def test_returning_welcome_survives_the_shortest_sms() -> None:
    long_items = [LineItem(title=f"Extra long product name number {n}") for n in range(3)]
    shipment = make_shipment(items=long_items)

    message = sms(
        Trigger.EXCEPTION, ExceptionKind.DAMAGED, tone=Tone.RETURNING_CUSTOMER, shipment=shipment
    )

    assert message.body.startswith("Acme: Welcome back! Sorry, order #1001 was damaged.")
    assert len(message.body) <= 160


def test_sms_drops_items_then_greeting_to_fit() -> None:
    few = sms(Trigger.OUT_FOR_DELIVERY, shipment=make_shipment(items=[LineItem(title="Mug")]))
    many = sms(
        Trigger.OUT_FOR_DELIVERY,
        shipment=make_shipment(items=[LineItem(title=f"Ceramic mug no. {n}") for n in range(3)]),
    )
    crowded = sms(Trigger.IN_TRANSIT, brand=Brand(store_name="Northwind Outdoor Supply"))

    assert few.body.startswith("Acme: Hi Jane! Your order #1001 (Mug) is out for delivery")
    assert many.body.startswith("Acme: Hi Jane! Your order #1001 is out for delivery")
    assert crowded.body.startswith("Northwind Outdoor Supply: Your order #1001 is on its way")
    assert all(len(m.body) <= 160 for m in (few, many, crowded))


def test_sms_never_cuts_the_tracking_link() -> None:
    long_url = "https://track.example.com/" + "x" * 150

    message = sms(Trigger.IN_TRANSIT, shipment=make_shipment(tracking_url=long_url))

    assert len(message.body) > 160
    assert message.body.endswith(long_url)
    assert "Hi Jane" not in message.body


def test_sms_replaces_typographic_characters_with_gsm7_ones() -> None:
    title = "Dad\u2019s \u201cBest\u201d Mug \u2014 Large\u2026"
    shipment = make_shipment(items=[LineItem(title=title, quantity=2)], tracking_url=None)

    message = sms(Trigger.LABEL_CREATED, shipment=shipment)

    assert '(Dad\'s "Best" Mug - Large... x 2)' in message.body
    assert is_gsm7(message.body)


def test_sms_drops_items_that_are_not_gsm7() -> None:
    shipment = make_shipment(items=[LineItem(title="Party hat \U0001f389")])

    message = sms(Trigger.IN_TRANSIT, shipment=shipment)

    assert "Party hat" not in message.body
    assert is_gsm7(message.body)


def test_sms_without_tracking_url_gives_the_tracking_number() -> None:
    message = sms(Trigger.IN_TRANSIT, shipment=make_shipment(tracking_url=None))

    assert message.body.endswith("Tracking: 1Z999AA10123456784")


def test_email_without_tracking_url_still_renders() -> None:
    message = email(Trigger.IN_TRANSIT, shipment=make_shipment(tracking_url=None))

    assert "Track your package" not in message.body
    assert "Tracking number: 1Z999AA10123456784 (UPS)" in message.body
    assert "<a href" not in (message.html or "").split("Questions?")[0]
    assert "1Z999AA10123456784" in (message.html or "")


def test_non_web_tracking_url_is_not_linked() -> None:
    message = email(Trigger.IN_TRANSIT, shipment=make_shipment(tracking_url="javascript:alert(1)"))

    assert "javascript:" not in (message.html or "")
    assert "javascript:" not in message.body


def test_html_escapes_customer_supplied_text() -> None:
    shipment = make_shipment(
        customer=Customer(name="<b>Bob</b> Smith", email="bob@example.com"),
        items=[LineItem(title="<script>alert('x')</script>")],
    )

    message = email(Trigger.DELIVERED, shipment=shipment, event_location="<img src=x>")

    html = message.html or ""
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "<b>Bob</b>" not in html
    assert "Hi &lt;b&gt;Bob&lt;/b&gt;," in html
    assert "<img" not in html
    assert "<script>alert('x')</script>" in message.body


def test_html_escapes_carrier_text_inside_exception_wording() -> None:
    message = email(
        Trigger.EXCEPTION, ExceptionKind.HELD_AT_FACILITY, event_location="<i>Depot</i>"
    )

    assert "<i>" not in (message.html or "")
    assert "waiting for you at &lt;i&gt;Depot&lt;/i&gt;" in (message.html or "")


def test_long_item_lists_are_cut_after_three() -> None:
    items = [LineItem(title=f"Item {n}", quantity=n) for n in range(1, 6)]

    message = email(Trigger.LABEL_CREATED, shipment=make_shipment(items=items))

    assert "- Item 1\n- Item 2 \u00d7 2\n- Item 3 \u00d7 3\n- and 2 more\n" in message.body
    assert "Item 4" not in message.body
    assert "<li>and 2 more</li>" in (message.html or "")
    assert "Item 4" not in (message.html or "")


def test_greeting_and_order_name_fall_back() -> None:
    shipment = make_shipment(
        customer=Customer(email="anon@example.com"), order_name=None, order_id="555"
    )

    message = email(Trigger.IN_TRANSIT, shipment=shipment)

    assert message.body.startswith("Hi there,")
    assert "Your order #555 is on its way" in (message.subject or "")


def test_eta_is_spelled_out() -> None:
    assert "Estimated delivery: Monday, November 23" in email(Trigger.IN_TRANSIT).body
    assert "Arriving Monday, November 23." in sms(Trigger.IN_TRANSIT).body
    assert "Estimated delivery" not in email(Trigger.IN_TRANSIT, estimated_delivery=None).body
    assert "Estimated delivery" not in email(Trigger.DELIVERED).body


def test_event_location_is_mentioned_in_transit() -> None:
    assert "last scanned in Louisville, KY" in email(Trigger.IN_TRANSIT).body
    assert "last scanned" not in email(Trigger.IN_TRANSIT, event_location=None).body


def test_express_shipments_say_so() -> None:
    express = make_shipment(shipping_speed=ShippingSpeed.EXPRESS)

    assert "Your express order #1001" in (email(Trigger.IN_TRANSIT, shipment=express).subject or "")
    assert "express" not in (email(Trigger.IN_TRANSIT).subject or "")


def test_unknown_carrier_reads_naturally() -> None:
    message = email(
        Trigger.EXCEPTION, ExceptionKind.FAILED_ATTEMPT, shipment=make_shipment(carrier=None)
    )

    assert "The carrier tried to deliver your package" in message.body
    assert "Tracking number: 1Z999AA10123456784 (the carrier)" in message.body


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("ups", "UPS"),
        ("fedex", "FedEx"),
        ("usps", "USPS"),
        ("dhl", "DHL"),
        ("canada_post", "Canada Post"),
        ("royal_mail", "Royal Mail"),
        (None, "the carrier"),
    ],
)
def test_carrier_display_name(code: str | None, name: str) -> None:
    assert carrier_display_name(code) == name


def test_candidates_go_from_most_to_least_specific() -> None:
    assert messages._candidates(Trigger.EXCEPTION, "sms.txt", "ups", ExceptionKind.LOST) == [
        "exception/ups/lost/sms.txt",
        "exception/lost/sms.txt",
        "exception/sms.txt",
    ]
    assert messages._candidates(Trigger.EXCEPTION, "sms.txt", None, ExceptionKind.LOST) == [
        "exception/lost/sms.txt",
        "exception/sms.txt",
    ]
    assert messages._candidates(Trigger.DELIVERED, "email.html", "ups", None) == [
        "delivered/email.html"
    ]
    assert messages._candidates(Trigger.EXCEPTION, "sms.txt", "../x", ExceptionKind.LOST)[0] == (
        "exception/lost/sms.txt"
    )


def test_resolve_prefers_carrier_then_kind_specific_templates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    overrides = jinja2.DictLoader(
        {
            "exception/ups/lost/sms.txt": "UPS lost it: {{ tracking_number }}",
            "exception/lost/sms.txt": "Lost: {{ tracking_number }}",
        }
    )
    packaged = messages._env.loader
    assert packaged is not None
    monkeypatch.setattr(messages._env, "loader", jinja2.ChoiceLoader([overrides, packaged]))

    ups = sms(Trigger.EXCEPTION, ExceptionKind.LOST)
    fedex = sms(Trigger.EXCEPTION, ExceptionKind.LOST, shipment=make_shipment(carrier="fedex"))
    damaged = sms(Trigger.EXCEPTION, ExceptionKind.DAMAGED)

    assert ups.body == "Acme: UPS lost it: 1Z999AA10123456784"
    assert fedex.body == "Acme: Lost: 1Z999AA10123456784"
    assert "was damaged" in damaged.body


def test_every_trigger_and_kind_ships_its_templates() -> None:
    names = set(messages._env.list_templates())

    for trigger in Trigger:
        for part in ("subject.txt", "email.txt", "email.html", "sms.txt"):
            assert f"{trigger}/{part}" in names
    for kind in ExceptionKind:
        if kind != ExceptionKind.UNKNOWN:
            assert f"exception/{kind}/reason.txt" in names
    assert "exception/reason.txt" in names


def test_missing_template_variable_is_an_error() -> None:
    with pytest.raises(jinja2.UndefinedError):
        messages._env.from_string("{{ not_in_context }}").render()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Acme: Hi Jane! @ \u00a35 \u00e9t\u00e9", True),
        ("Braces {} and \u20ac are in the extension table", True),
        ("Curly \u2019quote\u2019", False),
        ("Party \U0001f389", False),
        ("", True),
    ],
)
def test_is_gsm7(text: str, expected: bool) -> None:
    assert is_gsm7(text) is expected
