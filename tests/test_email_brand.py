"""Messages that look like the merchant's: the brand in every email, the unsubscribe link and
headers, the inlined CSS, and the store's name in every SMS. Pure rendering: no Temporal."""

from __future__ import annotations

import base64
import hmac
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from pydantic import ValidationError

from tests.test_messages import EVERY_SEND, UPS_URL, make_send, make_shipment
from trackflow.messages import (
    Brand,
    RenderedMessage,
    button_text_color,
    is_gsm7,
    render,
    unsubscribe_headers,
    unsubscribe_url,
)
from trackflow.models import Channel, ExceptionKind, Trigger
from trackflow.settings import Settings
from trackflow.unsubscribe_token import (
    read_legacy_unsubscribe_token,
    read_unsubscribe_token,
    unsubscribe_subject,
    unsubscribe_token,
)

SECRET = "unsubscribe-secret-for-tests"
PUBLIC_URL = "https://track.acme.test"
LOGO = "https://cdn.acme.test/logo.png"
CLAIMS_URL = "https://acme.test/claims"
REVIEW_URL = "https://acme.test/review"
BRAND = Brand(
    store_name="Acme Outdoor",
    support_email="help@acme.test",
    support_phone="+1 502 555 0100",
    resolution_url=CLAIMS_URL,
    review_url=REVIEW_URL,
    logo_url=LOGO,
    primary_color="#0B5FFF",
    postal_address="Acme Outdoor Inc.\n500 Market St\nLouisville, KY 40202",
    public_url=PUBLIC_URL,
    unsubscribe_secret=SECRET,
)
KEY = "1Z999AA10123456784/1001:in_transit:0:email"
# The one call to action of each send's email: the tracking button, or the store's link.
ACTIONS = {
    (Trigger.LOST, None): ("Get a replacement or refund", CLAIMS_URL),
    (Trigger.EXCEPTION, ExceptionKind.DAMAGED): ("Get a replacement or refund", CLAIMS_URL),
    (Trigger.EXCEPTION, ExceptionKind.LOST): ("Get a replacement or refund", CLAIMS_URL),
    (Trigger.REVIEW_REQUEST, None): ("Write a review", REVIEW_URL),
}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""


class Page(HTMLParser):
    """Every element of an HTML email with its attributes (and an <a>'s text)."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[Element] = []
        self._open_links: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.elements.append(element)
        if tag == "a":
            self._open_links.append(element)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open_links:
            self._open_links.pop()

    def handle_data(self, data: str) -> None:
        for link in self._open_links:
            link.text += data

    def links(self, text: str) -> list[Element]:
        return [e for e in self.elements if e.tag == "a" and e.text.strip() == text]


def parse(html: str | None) -> Page:
    page = Page()
    page.feed(html or "")
    page.close()
    return page


def styles(element: Element) -> dict[str, str]:
    declarations = (d.split(":", 1) for d in element.attrs.get("style", "").split(";") if d)
    return {name.strip(): value.strip() for name, value in declarations}


def email(
    trigger: Trigger, kind: ExceptionKind | None = None, brand: Brand = BRAND, **kw: Any
) -> RenderedMessage:
    shipment = kw.pop("shipment", make_shipment())
    return render(shipment, make_send(trigger, Channel.EMAIL, kind, **kw), brand)


@pytest.mark.parametrize(("trigger", "kind"), EVERY_SEND)
def test_every_email_carries_the_brand_the_footer_and_the_unsubscribe_link(
    trigger: Trigger, kind: ExceptionKind | None
) -> None:
    message = email(trigger, kind)
    send = make_send(trigger, Channel.EMAIL, kind)
    html = message.html or ""
    page = parse(html)
    unsubscribe = unsubscribe_url(BRAND, send.idempotency_key)
    assert unsubscribe and unsubscribe.startswith(f"{PUBLIC_URL}/u/")

    # The logo header.
    images = [e for e in page.elements if e.tag == "img"]
    assert [(i.attrs["src"], i.attrs["alt"]) for i in images] == [(LOGO, "Acme Outdoor")]
    # The call to action (the tracking button, or the store's link that replaces it) and the
    # tracking button whenever the message offers one, in the brand colour.
    label, url = ACTIONS.get((trigger, kind), ("Track your package", UPS_URL))
    buttons = page.links(label)
    assert [b.attrs["href"] for b in buttons] == [url]
    for button in page.links("Track your package") + buttons:
        look = styles(button)
        assert look["background"] == "#0b5fff"
        assert look["color"] == "#ffffff"
        assert look["display"] == "inline-block"
    # The footer: postal address, support contact, the unsubscribe link.
    assert "Acme Outdoor Inc.<br>500 Market St<br>Louisville, KY 40202" in html
    assert [a.attrs["href"] for a in page.links("help@acme.test")] == ["mailto:help@acme.test"]
    assert [a.attrs["href"] for a in page.links("+1 502 555 0100")] == ["tel:+15025550100"]
    assert [a.attrs["href"] for a in page.links("Unsubscribe")] == [unsubscribe]
    # The text part says the same.
    assert f"Unsubscribe from these updates: {unsubscribe}\n" in message.body
    assert "500 Market St\nLouisville, KY 40202\n" in message.body
    assert "Questions? Email help@acme.test. Call +1 502 555 0100." in message.body
    # The headers a mail client offers its own unsubscribe button from.
    mailto = f"mailto:help@acme.test?subject=unsubscribe%20{unsubscribe.rsplit('/', 1)[1]}"
    assert message.headers == {
        "List-Unsubscribe": f"<{mailto}>, <{unsubscribe}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


@pytest.mark.parametrize(("trigger", "kind"), EVERY_SEND)
def test_every_email_has_its_css_inlined_and_no_stylesheet(
    trigger: Trigger, kind: ExceptionKind | None
) -> None:
    html = email(trigger, kind).html or ""
    page = parse(html)

    assert html.lower().startswith("<!doctype html>")
    assert not [e for e in page.elements if e.tag in ("style", "link")]
    assert "<style" not in html.lower() and "<link" not in html.lower()
    assert "@import" not in html and "stylesheet" not in html.lower()
    assert not re.search(r"url\(", html)
    # Every element the stylesheet styled by class now carries the style itself.
    classed = [e for e in page.elements if e.attrs.get("class")]
    assert classed
    assert all(e.attrs.get("style") for e in classed), [
        e for e in classed if not e.attrs.get("style")
    ]
    body = next(e for e in page.elements if e.tag == "body")
    assert styles(body)["background"] == "#f4f4f5"


def test_a_light_brand_colour_gets_dark_button_text() -> None:
    yellow = BRAND.model_copy(update={"primary_color": "#ffcc00"})

    button = parse(email(Trigger.IN_TRANSIT, brand=yellow).html).links("Track your package")[0]

    assert styles(button)["background"] == "#ffcc00"
    assert styles(button)["color"] == "#18181b"


@pytest.mark.parametrize(
    ("background", "text"),
    [("#000000", "#ffffff"), ("#ffffff", "#18181b"), ("#0b5fff", "#ffffff"),
     ("#ffcc00", "#18181b"), ("#18181b", "#ffffff"), ("#22c55e", "#18181b")],
)  # fmt: skip
def test_button_text_contrasts_with_the_brand_colour(background: str, text: str) -> None:
    assert button_text_color(background) == text


@pytest.mark.parametrize("color", ["#abc", "blue", "#12345g", "0b5fff", "#0b5fff;", ""])
def test_brand_colour_must_be_rrggbb(color: str) -> None:
    with pytest.raises(ValidationError):
        Brand(primary_color=color)
    with pytest.raises(ValidationError):
        Settings.from_env({"TRACKFLOW_BRAND_COLOR": color or " "})


def test_brand_colour_is_normalized_and_read_from_settings() -> None:
    settings = Settings.from_env(
        {
            "TRACKFLOW_BRAND_COLOR": "#0B5FFF",
            "TRACKFLOW_BRAND_LOGO_URL": LOGO,
            "TRACKFLOW_BRAND_POSTAL_ADDRESS": "Acme Outdoor Inc.\\n500 Market St",
            "TRACKFLOW_UNSUBSCRIBE_SECRET": SECRET,
        }
    )

    assert Brand(primary_color="#0B5FFF").primary_color == "#0b5fff"
    assert settings.brand_color == "#0B5FFF"
    assert SECRET not in repr(settings)
    assert SECRET not in repr(BRAND)
    brand = Brand(postal_address=settings.brand_postal_address, logo_url=settings.brand_logo_url)
    html = email(Trigger.DELIVERED, brand=brand).html or ""
    assert "Acme Outdoor Inc.<br>500 Market St" in html


def test_without_a_logo_the_store_name_heads_the_email() -> None:
    for logo in (None, "http://cdn.acme.test/logo.png", "javascript:alert(1)"):
        brand = BRAND.model_copy(update={"logo_url": logo})
        page = parse(email(Trigger.IN_TRANSIT, brand=brand).html)

        assert not [e for e in page.elements if e.tag == "img"]
        header = next(e for e in page.elements if e.attrs.get("class") == "store")
        assert styles(header)["font-weight"] == "bold"
        assert '<p class="store"' in (email(Trigger.IN_TRANSIT, brand=brand).html or "")


def test_without_a_public_url_or_secret_only_the_mailto_unsubscribe_is_offered() -> None:
    for update in ({"public_url": None}, {"unsubscribe_secret": None}):
        brand = BRAND.model_copy(update=update)
        message = email(Trigger.IN_TRANSIT, brand=brand)

        (link,) = parse(message.html).links("Unsubscribe")
        assert link.attrs["href"].startswith("mailto:help@acme.test?subject=unsubscribe")
        assert set(message.headers) == {"List-Unsubscribe"}
        assert message.headers["List-Unsubscribe"] == f"<{link.attrs['href']}>"
        assert "/u/" not in (message.html or "") + message.body
        assert 'write to help@acme.test with the subject "unsubscribe".' in message.body


def test_a_dedicated_unsubscribe_mailbox_wins_over_support() -> None:
    brand = BRAND.model_copy(update={"unsubscribe_email": "unsubscribe@acme.test"})

    headers = email(Trigger.IN_TRANSIT, brand=brand).headers

    assert headers["List-Unsubscribe"].startswith("<mailto:unsubscribe@acme.test?subject=")


def test_one_click_post_needs_an_https_link() -> None:
    brand = BRAND.model_copy(update={"public_url": "http://127.0.0.1:8000/"})

    message = email(Trigger.IN_TRANSIT, brand=brand)

    url = unsubscribe_url(brand, KEY)
    assert url and url.startswith("http://127.0.0.1:8000/u/")
    assert message.headers["List-Unsubscribe"].endswith(
        ", <http://127.0.0.1:8000/u/" + (unsubscribe_token(SECRET, "k:in_transit:email") + ">")
    )
    assert "List-Unsubscribe-Post" not in message.headers


def test_no_unsubscribe_target_means_no_headers_and_no_link() -> None:
    brand = Brand(store_name="Acme")

    message = email(Trigger.IN_TRANSIT, brand=brand)

    assert message.headers == {}
    assert parse(message.html).links("Unsubscribe") == []
    assert "because you ordered from Acme" in message.body


def test_a_support_email_that_is_no_mailbox_is_not_a_mailto_target() -> None:
    brand = Brand(store_name="Acme", support_email="help at acme dot test")

    message = email(Trigger.IN_TRANSIT, brand=brand)

    assert message.headers == {}
    assert "mailto:" not in (message.html or "")


def test_sms_carries_no_email_headers_and_names_the_store() -> None:
    for trigger, kind in EVERY_SEND:
        text = render(make_shipment(), make_send(trigger, Channel.SMS, kind), BRAND)

        assert text.headers == {}
        assert text.body.startswith("Acme Outdoor: ")
        assert len(text.body) <= 160 and is_gsm7(text.body)


def test_sms_folds_accented_letters_outside_gsm7_to_stay_one_segment() -> None:
    brand = Brand(store_name="Zo\u00eb's Caf\u00e9")  # ë is outside GSM-7, é is in it

    text = render(make_shipment(), make_send(Trigger.IN_TRANSIT, Channel.SMS), brand)

    assert text.body.startswith("Zoe's Caf\u00e9: Hi Jane! Your order #1001")
    assert is_gsm7(text.body)
    assert len(text.body) <= 160
    assert text.body.endswith(UPS_URL)


def test_sms_keeps_a_store_name_in_another_script() -> None:
    brand = Brand(store_name="\u5c0f\u5e97")

    text = render(make_shipment(), make_send(Trigger.IN_TRANSIT, Channel.SMS), brand)

    assert text.body.startswith("\u5c0f\u5e97: ")
    assert text.body.endswith(UPS_URL)


# --- the unsubscribe token ---------------------------------------------------------------------


def test_token_names_the_customer_part_of_the_key_and_reads_back() -> None:
    token = unsubscribe_token(SECRET, KEY)

    assert unsubscribe_subject(KEY) == "1Z999AA10123456784/1001"
    assert read_unsubscribe_token(SECRET, token) == "1Z999AA10123456784/1001"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", token)
    assert unsubscribe_url(BRAND, KEY) == f"{PUBLIC_URL}/u/{token}"
    assert urlsplit(unsubscribe_url(BRAND, KEY) or "").path == f"/u/{token}"


def _base64url_readings(token: str) -> list[bytes]:
    """Every way a reader might decode the token or one of its parts."""
    parts = [token, *token.split("."), *token.split("-"), *token.split("_")]
    readings = []
    for part in parts:
        for start in range(4):
            chunk = part[start:]
            chunk = chunk[: len(chunk) - len(chunk) % 4]
            readings.append(base64.urlsafe_b64decode(chunk + "=" * (-len(chunk) % 4)))
    return readings


def test_the_token_says_nothing_about_the_parcel_or_the_order() -> None:
    """Issue 18, item 12: the token was the subject in plain base64url."""
    number, order = "1Z999AA10123456784", "1001"
    token = unsubscribe_token(SECRET, KEY)

    assert all(
        number.encode() not in r and order.encode() not in r for r in _base64url_readings(token)
    )
    assert number not in token
    # Subjects of nearby lengths give tokens of one length: the length says nothing either.
    lengths = {len(unsubscribe_token(SECRET, f"{number}/{'9' * n}:x")) for n in range(1, 12)}
    assert lengths == {len(token)}


def test_every_email_of_a_shipment_shares_its_token_and_shipments_differ() -> None:
    same = [
        "1Z999AA10123456784/1001:delivered:0:email",
        "1Z999AA10123456784/1001:exception:2:email",
    ]
    other = "1Z999AA10123456784/1002:in_transit:0:email"
    with_colon = "9400111206206406000001/5%3A1/77:in_transit:0:email"
    non_ascii = "CP123456789DE/Bestellung-\u00c0\u20ac:in_transit:0:email"

    assert {unsubscribe_token(SECRET, k) for k in [KEY, *same]} == {unsubscribe_token(SECRET, KEY)}
    assert unsubscribe_token(SECRET, other) != unsubscribe_token(SECRET, KEY)
    assert read_unsubscribe_token(SECRET, unsubscribe_token(SECRET, with_colon)) == (
        "9400111206206406000001/5%3A1/77"
    )
    assert read_unsubscribe_token(SECRET, unsubscribe_token(SECRET, non_ascii)) == (
        unsubscribe_subject(non_ascii)
    )


def _swap(token: str, at: int) -> str:
    return token[:at] + ("B" if token[at] == "A" else "A") + token[at + 1 :]


def legacy_token(secret: str, subject: str) -> str:
    """What `unsubscribe_token` issued before issue 18: `<base64url subject>.<mac>`."""
    mac = hmac.new(secret.encode(), b"trackflow-unsubscribe\x00" + subject.encode(), "sha256")

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return f"{b64(subject.encode())}.{b64(mac.digest()[:16])}"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: _swap(t, 0),
        lambda t: _swap(t, len(t) // 2),
        lambda t: _swap(t, len(t) - 2),
        lambda t: t[:-1] + chr(ord(t[-1]) + 1),  # the same bytes spelt another way
        lambda t: unsubscribe_token("another-secret", KEY),  # another merchant's secret
        lambda t: t[:-4],  # truncated
        lambda t: t[:22],  # a block short
        lambda t: t + "==",  # padding
        lambda t: t + ".!",  # not base64url
        lambda t: legacy_token(SECRET, "1Z999AA10123456784/1001"),  # old format: not issued
        lambda t: "%%%.%%%",
        lambda t: "",
    ],
)
def test_a_forged_or_altered_token_reads_as_none(tamper: Any) -> None:
    token = unsubscribe_token(SECRET, KEY)

    assert read_unsubscribe_token(SECRET, tamper(token)) is None


def test_an_old_format_token_still_reads_as_what_it_named_and_nothing_forged_does() -> None:
    """Emails delivered before the opaque token carry `<subject>.<mac>` links."""
    old = legacy_token(SECRET, "1Z999AA10123456784/1001")

    assert read_legacy_unsubscribe_token(SECRET, old) == "1Z999AA10123456784/1001"
    other = legacy_token(SECRET, "1Z999AA10123456784/1002")
    for forged in (
        legacy_token("another-secret", "1Z999AA10123456784/1001"),
        other.split(".")[0] + "." + old.split(".")[1],  # another shipment under this MAC
        old.split(".")[0],
        old.split(".")[0] + ".",
        "." + old.split(".")[1],
        old + "==",
        unsubscribe_token(SECRET, KEY),  # the new format is not read as an old one
    ):
        assert read_legacy_unsubscribe_token(SECRET, forged) is None, forged


def test_mailto_subject_carries_the_token_readably() -> None:
    headers = unsubscribe_headers(BRAND, KEY)

    mailto = headers["List-Unsubscribe"].split(", ")[0].strip("<>")
    subject = unquote(mailto.split("?subject=", 1)[1])
    assert subject == f"unsubscribe {unsubscribe_token(SECRET, KEY)}"
