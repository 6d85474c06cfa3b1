"""Message rendering: pure, so no Temporal here."""

from __future__ import annotations

import random
import re
from datetime import date
from decimal import Decimal
from typing import Any

import jinja2
import pytest

from trackflow import messages
from trackflow.carriers.formats import COURIER_NAMES
from trackflow.carriers.samples import random_tracking_number
from trackflow.effects import SendNotification, Tone
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
from trackflow.settings import Settings
from workers.worker import message_brand

UPS_URL = "https://www.ups.com/track?tracknum=1Z999AA10123456784"
# A carrier outside the detection table and a number of no known format: no link to offer.
NO_LINK: dict[str, Any] = {
    "carrier": "acme_freight",
    "tracking_number": "ACME0000123",
    "tracking_url": None,
}
CLAIMS_URL = "https://acme.test/claims"
REVIEW_URL = "https://acme.test/review"
BRAND = Brand(store_name="Acme", support_email="help@acme.test")
FULL_BRAND = Brand(
    store_name="Acme",
    support_email="help@acme.test",
    support_phone="+1 502 555 0100",
    resolution_url=CLAIMS_URL,
    review_url=REVIEW_URL,
)
ETA = date(2026, 11, 23)
HOLD_UNTIL = date(2026, 11, 30)
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
    brand = kw.pop("brand", BRAND)
    return render(shipment, make_send(trigger, Channel.EMAIL, kind, **kw), brand)


def sms(trigger: Trigger, kind: ExceptionKind | None = None, **kw: Any) -> RenderedMessage:
    shipment = kw.pop("shipment", make_shipment())
    brand = kw.pop("brand", BRAND)
    return render(shipment, make_send(trigger, Channel.SMS, kind, **kw), brand)


@pytest.mark.parametrize("tone", list(Tone))
@pytest.mark.parametrize(("trigger", "kind"), EVERY_SEND)
def test_email_has_subject_text_and_html(
    trigger: Trigger, kind: ExceptionKind | None, tone: Tone
) -> None:
    message = email(trigger, kind, tone=tone)

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
    assert message.html.lower().startswith("<!doctype html>")
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
    assert phrase in (message.html or "")


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
    shipment = make_shipment(items=[LineItem(title=title, quantity=2)], **NO_LINK)

    message = sms(Trigger.LABEL_CREATED, shipment=shipment)

    assert '(Dad\'s "Best" Mug - Large... x 2)' in message.body
    assert is_gsm7(message.body)


def test_sms_drops_items_that_are_not_gsm7() -> None:
    shipment = make_shipment(items=[LineItem(title="Party hat \U0001f389")])

    message = sms(Trigger.IN_TRANSIT, shipment=shipment)

    assert "Party hat" not in message.body
    assert is_gsm7(message.body)


def test_sms_without_any_tracking_link_gives_the_tracking_number() -> None:
    message = sms(Trigger.IN_TRANSIT, shipment=make_shipment(**NO_LINK))

    assert message.body.endswith("Tracking: ACME0000123")


def test_email_without_any_tracking_link_still_renders() -> None:
    message = email(Trigger.IN_TRANSIT, shipment=make_shipment(**NO_LINK))

    assert "Track your package" not in message.body
    assert "Tracking number: ACME0000123 (Acme Freight)" in message.body
    assert "href=" not in (message.html or "").split("Questions?")[0]
    assert "ACME0000123" in (message.html or "")


CARRIER_PAGE = "https://wwwapps.ups.com/WebTracking/track?track=yes&trackNums=1Z999AA10123456784"


@pytest.mark.parametrize(("trigger", "kind"), EVERY_SEND)
def test_without_a_platform_link_every_message_links_to_the_carriers_page(
    trigger: Trigger, kind: ExceptionKind | None
) -> None:
    shipment = make_shipment(tracking_url=None)

    mail = email(trigger, kind, shipment=shipment)
    text = sms(trigger, kind, shipment=shipment, brand=Brand(store_name="Acme"))

    assert f"Track your package: {CARRIER_PAGE}" in mail.body
    assert f'href="{CARRIER_PAGE.replace("&", "&amp;")}"' in (mail.html or "")
    assert f"Track: {CARRIER_PAGE}" in text.body


@pytest.mark.parametrize("courier", sorted(COURIER_NAMES))
def test_every_courier_of_the_detection_table_gets_a_tracking_link(courier: str) -> None:
    number = random_tracking_number(courier, random.Random(courier))
    for carrier in (courier, None):
        shipment = make_shipment(tracking_number=number, carrier=carrier, tracking_url=None)

        mail = email(Trigger.OUT_FOR_DELIVERY, shipment=shipment)
        text = sms(Trigger.OUT_FOR_DELIVERY, shipment=shipment)

        [link] = [line for line in mail.body.splitlines() if line.startswith("Track your package")]
        assert number in link and "https://" in link
        assert 'href="https://' in (mail.html or "") and number in (mail.html or "")
        assert "Track: https://" in text.body and number in text.body.split("Track: ")[1]


def test_the_platforms_web_link_comes_before_the_carriers_page() -> None:
    mail = email(Trigger.IN_TRANSIT, shipment=make_shipment(tracking_url=UPS_URL))

    assert f"Track your package: {UPS_URL}" in mail.body
    assert CARRIER_PAGE not in mail.body


def test_a_platform_link_that_is_not_a_web_link_gives_way_to_the_carriers_page() -> None:
    mail = email(Trigger.IN_TRANSIT, shipment=make_shipment(tracking_url="ftp://acme.test/t"))

    assert f"Track your package: {CARRIER_PAGE}" in mail.body
    assert "ftp://" not in mail.body and "ftp://" not in (mail.html or "")


def test_a_platform_carrier_code_outside_the_table_links_to_the_numbers_courier() -> None:
    shipment = make_shipment(tracking_number="3318810025", carrier="dhl_express", tracking_url=None)

    assert messages.tracking_link(shipment) == (
        "https://www.dhl.com/en/express/tracking.html?brand=DHL&AWB=3318810025"
    )


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
    assert "&lt;script&gt;alert('x')&lt;/script&gt;" in html
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


# --- Exceptions, durable timers and send timing: the new triggers and wording -------------

NEW_SENDS: list[tuple[Trigger, ExceptionKind | None, dict[str, Any]]] = [
    (Trigger.LOST, None, {}),
    (Trigger.STALE, None, {}),
    (Trigger.REVIEW_REQUEST, None, {}),
    (Trigger.RETURN_REQUESTED, None, {}),
    (Trigger.IN_TRANSIT, None, {"revived": True}),
    (Trigger.EXCEPTION, ExceptionKind.HELD_AT_FACILITY, {"hold_until": HOLD_UNTIL}),
    (Trigger.EXCEPTION, ExceptionKind.DAMAGED, {}),
    (Trigger.EXCEPTION, ExceptionKind.LOST, {}),
]
ACTION_LINKS = {
    (Trigger.LOST, None): CLAIMS_URL,
    (Trigger.EXCEPTION, ExceptionKind.DAMAGED): CLAIMS_URL,
    (Trigger.EXCEPTION, ExceptionKind.LOST): CLAIMS_URL,
    (Trigger.REVIEW_REQUEST, None): REVIEW_URL,
}


@pytest.mark.parametrize("brand", [BRAND, FULL_BRAND], ids=["email_only", "full"])
@pytest.mark.parametrize("tone", list(Tone))
@pytest.mark.parametrize(("trigger", "kind", "extra"), NEW_SENDS)
def test_new_messages_render_and_fit_one_sms(
    trigger: Trigger, kind: ExceptionKind | None, extra: dict[str, Any], tone: Tone, brand: Brand
) -> None:
    mail = email(trigger, kind, tone=tone, brand=brand, **extra)
    text = sms(trigger, kind, tone=tone, brand=brand, **extra)

    assert mail.body.startswith("Hi Jane,")
    assert "#1001" in (mail.subject or "")
    assert "#1001" in text.body
    assert (mail.html or "").lower().startswith("<!doctype html>")
    assert len(text.body) <= 160
    assert is_gsm7(text.body)
    assert ("welcome back" in text.body.lower()) == (tone == Tone.RETURNING_CUSTOMER)
    # One link per SMS: the call to action when the store has one, else the tracking link.
    action = ACTION_LINKS.get((trigger, kind)) if brand is FULL_BRAND else None
    assert text.body.endswith(action or UPS_URL)
    assert (UPS_URL in text.body) == (action is None)


def test_support_phone_is_offered_in_the_footer_and_in_sentences() -> None:
    message = email(Trigger.RETURN_REQUESTED, brand=FULL_BRAND)
    phone_only = email(Trigger.RETURN_REQUESTED, brand=Brand(support_phone="+15025550100"))

    assert "contact us at help@acme.test or call +1 502 555 0100." in message.body
    assert "Questions? Email help@acme.test. Call +1 502 555 0100." in message.body
    assert 'href="tel:+15025550100"' in (message.html or "")
    assert "contact us at +15025550100." in phone_only.body
    assert "Questions? Call +15025550100." in phone_only.body


def test_shared_support_sentences_are_escaped_in_html() -> None:
    brand = Brand(store_name="Acme", support_email="<b>help</b>@acme.test")

    message = email(Trigger.LOST, brand=brand)

    assert "<b>" not in (message.html or "")
    assert "contact us at &lt;b&gt;help&lt;/b&gt;@acme.test" in (message.html or "")
    assert "contact us at <b>help</b>@acme.test" in message.body


def test_lost_without_resolution_link_asks_for_a_reply() -> None:
    mail = email(Trigger.LOST)
    text = sms(Trigger.LOST)

    assert "seems to be lost" in (mail.subject or "")
    assert "we're treating the package as lost" in mail.body
    assert "the last one was in Louisville, KY" in mail.body
    assert (
        "Just reply to this email, or contact us at help@acme.test, and tell us whether "
        "you'd like a replacement or a refund."
    ) in mail.body
    assert "Get a replacement or refund" not in (mail.html or "")
    assert "Estimated delivery" not in mail.body
    assert "seems lost. We'll make it right: contact help@acme.test." in text.body


def test_lost_with_resolution_link_links_it() -> None:
    mail = email(Trigger.LOST, brand=FULL_BRAND)
    text = sms(Trigger.LOST, brand=FULL_BRAND)

    assert "Choose a replacement or a refund using the link below" in mail.body
    assert f"Replacement or refund: {CLAIMS_URL}" in mail.body
    assert f'href="{CLAIMS_URL}"' in (mail.html or "")
    assert "Just reply to this email" not in mail.body
    assert text.body.endswith(f"Replacement or refund: {CLAIMS_URL}")


@pytest.mark.parametrize("kind", [ExceptionKind.DAMAGED, ExceptionKind.LOST])
def test_damaged_or_lost_offers_the_resolution_path(kind: ExceptionKind) -> None:
    without = email(Trigger.EXCEPTION, kind)
    with_link = email(Trigger.EXCEPTION, kind, brand=FULL_BRAND)
    sms_without = sms(Trigger.EXCEPTION, kind)
    sms_with = sms(Trigger.EXCEPTION, kind, brand=FULL_BRAND)

    assert "We will make it right." in without.body
    assert "Just reply to this email, or contact us at help@acme.test," in without.body
    assert CLAIMS_URL not in without.body
    assert "Get a replacement or refund" not in (without.html or "")
    assert "contact help@acme.test" in sms_without.body
    assert sms_without.body.endswith(UPS_URL)

    assert "Choose a replacement or a refund using the link below" in with_link.body
    assert "contact us at help@acme.test or call +1 502 555 0100" in with_link.body
    assert f"Replacement or refund: {CLAIMS_URL}" in with_link.body
    assert f'href="{CLAIMS_URL}"' in (with_link.html or "")
    assert sms_with.body.endswith(f"Replacement or refund: {CLAIMS_URL}")


def test_other_exceptions_do_not_show_the_resolution_link() -> None:
    message = email(Trigger.EXCEPTION, ExceptionKind.WEATHER_DELAY, brand=FULL_BRAND)

    assert CLAIMS_URL not in message.body
    assert CLAIMS_URL not in (message.html or "")


def test_only_web_resolution_and_review_urls_become_links() -> None:
    brand = Brand(
        store_name="Acme", resolution_url="javascript:alert(1)", review_url="ftp://acme.test"
    )

    lost = email(Trigger.LOST, brand=brand)
    review = email(Trigger.REVIEW_REQUEST, brand=brand)

    for message in (lost, review):
        assert "javascript:" not in (message.html or "") + message.body
        assert "ftp:" not in (message.html or "") + message.body
    assert "Just reply to this email, or contact us, and tell us" in lost.body
    assert "Just reply to this email; we read every reply." in review.body


def test_stale_is_calm_and_gives_the_eta() -> None:
    mail = email(Trigger.STALE)
    text = sms(Trigger.STALE)
    no_eta = email(Trigger.STALE, estimated_delivery=None)
    sms_no_eta = sms(Trigger.STALE, estimated_delivery=None)

    assert mail.subject == "Your order #1001 is still on its way"
    assert "no new scan from UPS for a little while" in mail.body
    assert "This happens" in mail.body
    assert "we're keeping an eye on it" in mail.body
    assert "Estimated delivery: Monday, November 23" in mail.body
    assert "Due Monday, November 23." in text.body
    assert "Estimated delivery" not in no_eta.body
    assert "keeping an eye on it" in sms_no_eta.body
    for alarming in ("lost", "sorry", "problem"):
        assert alarming not in mail.body.lower()
        assert alarming not in text.body.lower()


def test_review_request_with_and_without_review_link() -> None:
    with_link = email(Trigger.REVIEW_REQUEST, brand=FULL_BRAND)
    without = email(Trigger.REVIEW_REQUEST)
    sms_with = sms(Trigger.REVIEW_REQUEST, brand=FULL_BRAND)
    sms_without = sms(Trigger.REVIEW_REQUEST)

    assert f"Your review helps other shoppers and helps us get better: {REVIEW_URL}" in (
        with_link.body
    )
    assert f'href="{REVIEW_URL}"' in (with_link.html or "")
    assert "Write a review" in (with_link.html or "")
    assert "Just reply to this email; we read every reply." in without.body
    assert "Write a review" not in (without.html or "")
    assert "Estimated delivery" not in without.body
    assert sms_with.body.endswith(f"Tell us how it went: {REVIEW_URL}")
    assert "Reply and tell us how it went." in sms_without.body


def test_review_request_is_warmer_for_returning_customers() -> None:
    new = email(Trigger.REVIEW_REQUEST)
    back = email(Trigger.REVIEW_REQUEST, tone=Tone.RETURNING_CUSTOMER)
    new_sms = sms(Trigger.REVIEW_REQUEST)
    back_sms = sms(Trigger.REVIEW_REQUEST, tone=Tone.RETURNING_CUSTOMER)

    assert new.subject == "How was your order #1001?"
    assert back.subject == "Thanks for coming back! How are you finding order #1001?"
    assert "Thank you for coming back to us." in back.body
    assert "Thank you for coming back" not in new.body
    assert "another favorite" in back_sms.body
    assert "another favorite" not in new_sms.body


def test_return_request_is_acknowledged_with_next_steps() -> None:
    mail = email(Trigger.RETURN_REQUESTED)
    text = sms(Trigger.RETURN_REQUESTED)

    assert mail.subject == "We got your request for order #1001"
    assert "We got your return or refund request for order #1001" in mail.body
    assert "Here's what happens next:" in mail.body
    assert "<ol" in (mail.html or "")
    assert "Reply to this email or contact us at help@acme.test." in mail.body
    assert "Estimated delivery" not in mail.body
    assert "We got your return or refund request for order #1001" in text.body


def test_revived_in_transit_says_it_is_moving_again() -> None:
    normal = email(Trigger.IN_TRANSIT)
    revived = email(Trigger.IN_TRANSIT, revived=True)
    normal_sms = sms(Trigger.IN_TRANSIT)
    revived_sms = sms(Trigger.IN_TRANSIT, revived=True)

    assert revived.subject == "Good news: your order #1001 is moving again"
    assert "which we thought was lost, is moving again with UPS" in revived.body
    assert "If you've already arranged a replacement or a refund" in revived.body
    assert "which we thought was lost" in (revived.html or "")
    assert "Estimated delivery: Monday, November 23" in revived.body
    assert "Good news: order #1001 turned up and is moving!" in revived_sms.body
    assert "Good news" not in (normal.subject or "") + normal.body + normal_sms.body
    assert "lost" not in normal.body


@pytest.mark.parametrize(
    "kind", [ExceptionKind.WEATHER_DELAY, ExceptionKind.CARRIER_DELAY, ExceptionKind.CUSTOMS_HOLD]
)
def test_delays_set_new_expectations(kind: ExceptionKind) -> None:
    with_eta = email(Trigger.EXCEPTION, kind)
    without = email(Trigger.EXCEPTION, kind, estimated_delivery=None)
    sms_with = sms(Trigger.EXCEPTION, kind)
    sms_without = sms(Trigger.EXCEPTION, kind, estimated_delivery=None)

    assert "We now expect it to arrive Monday, November 23" in with_eta.body
    assert "as soon as it's" in without.body
    assert "moving again." in without.body
    assert "November 23" not in without.body
    assert "New estimate: Monday, November 23." in sms_with.body
    assert "We'll tell you when it moves again." in sms_without.body


def test_address_issue_asks_the_customer_to_act_and_says_how() -> None:
    mail = email(Trigger.EXCEPTION, ExceptionKind.ADDRESS_ISSUE, brand=FULL_BRAND)
    text = sms(Trigger.EXCEPTION, ExceptionKind.ADDRESS_ISSUE)

    assert (
        "Please reply to this email or contact us at help@acme.test or call +1 502 555 0100 "
        "to confirm your address"
    ) in mail.body
    assert "send us the correct one" in mail.body
    assert "call UPS directly with your tracking number, 1Z999AA10123456784" in mail.body
    assert "confirm your address with help@acme.test or call UPS." in text.body


def test_failed_attempt_says_what_happens_next() -> None:
    generic = email(
        Trigger.EXCEPTION, ExceptionKind.FAILED_ATTEMPT, shipment=make_shipment(carrier="fedex")
    )

    assert "FedEx will usually try again on the next business day." in generic.body
    assert "After a few missed attempts (usually three)" in generic.body
    assert "nearby pickup point" in generic.body


def test_usps_failed_attempt_gives_the_redelivery_path_unlike_ups() -> None:
    usps = make_shipment(carrier="usps")
    usps_mail = email(Trigger.EXCEPTION, ExceptionKind.FAILED_ATTEMPT, shipment=usps)
    usps_sms = sms(Trigger.EXCEPTION, ExceptionKind.FAILED_ATTEMPT, shipment=usps)
    ups_mail = email(Trigger.EXCEPTION, ExceptionKind.FAILED_ATTEMPT)
    ups_sms = sms(Trigger.EXCEPTION, ExceptionKind.FAILED_ATTEMPT)

    assert "PS Form 3849" in usps_mail.body
    assert "schedule a redelivery online at usps.com/redelivery" in usps_mail.body
    assert "pick the package up at your local Post Office" in usps_mail.body
    assert "usps.com/redelivery" in usps_sms.body
    assert "Post Office" in usps_sms.body
    assert "UPS InfoNotice" in ups_mail.body
    assert "up to three attempts" in ups_mail.body
    assert "UPS Access Point" in ups_mail.body
    assert "usps.com" not in ups_mail.body + ups_sms.body
    assert usps_mail.body != ups_mail.body.replace("UPS", "USPS")
    assert usps_sms.body != ups_sms.body.replace("UPS", "USPS")
    assert len(usps_sms.body) <= 160


@pytest.mark.parametrize(
    ("carrier", "where"),
    [
        ("fedex", "waiting for you at Louisville, KY"),
        ("ups", "waiting for you at Louisville, KY"),
        ("usps", "held at the Post Office in Louisville, KY"),
    ],
)
def test_held_at_facility_says_where_and_until_when(carrier: str, where: str) -> None:
    shipment = make_shipment(carrier=carrier)
    kind = ExceptionKind.HELD_AT_FACILITY

    mail = email(Trigger.EXCEPTION, kind, shipment=shipment, hold_until=HOLD_UNTIL)
    text = sms(Trigger.EXCEPTION, kind, shipment=shipment, hold_until=HOLD_UNTIL)
    open_ended = email(Trigger.EXCEPTION, kind, shipment=shipment)

    assert where in mail.body
    assert "until Monday, November 30, so please pick it up by then." in mail.body
    assert "Louisville, KY" in text.body
    assert "Monday, November 30" in text.body
    assert len(text.body) <= 160
    assert "November 30" not in open_ended.body
    assert "don't wait too long" in open_ended.body


def test_carrier_specific_held_at_facility_wording() -> None:
    kind = ExceptionKind.HELD_AT_FACILITY
    usps = email(Trigger.EXCEPTION, kind, shipment=make_shipment(carrier="usps"))
    ups = email(Trigger.EXCEPTION, kind)
    fedex = email(Trigger.EXCEPTION, kind, shipment=make_shipment(carrier="fedex"))

    assert "usually holds items for 15 days" in usps.body
    assert "held at the Post Office" in (usps.subject or "")
    assert "UPS Access Point location or a UPS Customer Center" in ups.body
    assert "government-issued photo ID" in ups.body
    assert "Post Office" not in fedex.body
    assert "Access Point" not in fedex.body


def test_candidates_for_reason_go_carrier_then_kind_then_generic() -> None:
    assert messages._candidates(
        Trigger.EXCEPTION, "reason.txt", "usps", ExceptionKind.FAILED_ATTEMPT
    ) == [
        "exception/usps/failed_attempt/reason.txt",
        "exception/failed_attempt/reason.txt",
        "exception/reason.txt",
    ]
    names = set(messages._env.list_templates())
    for carrier in ("usps", "ups"):
        for kind in (ExceptionKind.FAILED_ATTEMPT, ExceptionKind.HELD_AT_FACILITY):
            assert f"exception/{carrier}/{kind}/reason.txt" in names


def test_reason_resolves_carrier_then_kind_then_generic(monkeypatch: pytest.MonkeyPatch) -> None:
    macros = (
        "{% macro headline() %}HEADLINE{% endmacro %}"
        "{% macro detail() %}DETAIL{% endmacro %}"
        "{% macro sms_reason() %}REASON{% endmacro %}"
    )
    overrides = jinja2.DictLoader(
        {
            "exception/fedex/unknown/reason.txt": macros.replace("REASON", "FedEx-specific"),
            "exception/fedex/damaged/reason.txt": macros.replace("REASON", "FedEx damaged"),
        }
    )
    packaged = messages._env.loader
    assert packaged is not None
    monkeypatch.setattr(messages._env, "loader", jinja2.ChoiceLoader([overrides, packaged]))
    fedex = make_shipment(carrier="fedex")

    assert "FedEx-specific" in sms(Trigger.EXCEPTION, ExceptionKind.UNKNOWN, shipment=fedex).body
    assert "FedEx damaged" in sms(Trigger.EXCEPTION, ExceptionKind.DAMAGED, shipment=fedex).body
    assert "was damaged" in sms(Trigger.EXCEPTION, ExceptionKind.DAMAGED).body
    assert "reported an issue" in sms(Trigger.EXCEPTION, ExceptionKind.UNKNOWN).body


# --- issue 18, item 6: "contact us" always says how ---------------------------------------------

SENDER = "Acme Outdoor <shop@acme.test>"
CONTACTS = [
    (Trigger.LOST, None),
    (Trigger.EXCEPTION, ExceptionKind.LOST),
    (Trigger.EXCEPTION, ExceptionKind.DAMAGED),
    (Trigger.EXCEPTION, ExceptionKind.ADDRESS_ISSUE),
    (Trigger.EXCEPTION, ExceptionKind.RETURN_TO_SENDER),
]
_BARE_CONTACT = re.compile(r"contact us(?! at )|with us or call", re.IGNORECASE)


@pytest.mark.parametrize(("trigger", "kind"), CONTACTS)
@pytest.mark.parametrize("channel", [Channel.EMAIL, Channel.SMS])
def test_without_a_support_contact_messages_give_the_sender_address(
    trigger: Trigger, kind: ExceptionKind | None, channel: Channel
) -> None:
    brand = message_brand(Settings(email_from=SENDER))

    text = render(make_shipment(), make_send(trigger, channel, kind), brand)

    assert not _BARE_CONTACT.search(text.body), text.body
    if channel == Channel.EMAIL:
        assert "shop@acme.test" in text.body and "mailto:shop@acme.test" in (text.html or "")
    elif kind != ExceptionKind.RETURN_TO_SENDER:  # its SMS says "we'll contact you"
        assert "shop@acme.test" in text.body, text.body


def test_a_support_contact_the_merchant_set_is_not_joined_by_the_sender_address() -> None:
    brand = message_brand(Settings(email_from=SENDER, support_phone="+1 502 555 0100"))

    for channel in (Channel.EMAIL, Channel.SMS):
        text = render(make_shipment(), make_send(Trigger.LOST, channel), brand)
        assert "502 555 0100" in text.body and "shop@acme.test" not in text.body
    # The mailto: unsubscribe goes where shoppers are told to write (SendGrid verified that
    # the sender's mailbox receives mail).
    assert message_brand(Settings(email_from=SENDER)).unsubscribe_mailbox == "shop@acme.test"


@pytest.mark.parametrize(("trigger", "kind"), EVERY_SEND)
def test_with_no_contact_at_all_no_message_asks_the_shopper_to_contact_us_without_a_way(
    trigger: Trigger, kind: ExceptionKind | None
) -> None:
    """No support contact and no sender: an SMS never says "contact us"; an email offers its
    reply wherever it does."""
    brand = message_brand(Settings())
    for resolution in (None, CLAIMS_URL):
        shown = brand.model_copy(update={"resolution_url": resolution})
        sms = render(make_shipment(), make_send(trigger, Channel.SMS, kind), shown)
        assert not _BARE_CONTACT.search(sms.body), sms.body
        mail = render(make_shipment(), make_send(trigger, Channel.EMAIL, kind), shown)
        for sentence in re.split(r"(?<=[.!?])\s+", mail.body):
            assert not _BARE_CONTACT.search(sentence) or "reply" in sentence.lower(), sentence


def test_the_worker_says_at_start_that_the_support_contact_is_not_set() -> None:
    assert Settings(support_email="help@acme.test").support_contact_warning is None
    assert Settings(support_url="https://acme.test/help").support_contact_warning is None
    with_sender = Settings(email_from=SENDER).support_contact_warning
    assert with_sender is not None and "TRACKFLOW_SUPPORT_EMAIL" in with_sender
    assert "shop@acme.test" in with_sender and "\n" not in with_sender
    without = Settings().support_contact_warning
    assert without is not None and "TRACKFLOW_SUPPORT_EMAIL" in without and "\n" not in without
