"""Renders one `SendNotification` into the email or SMS the customer receives.

Pure: the only input besides the arguments is the packaged Jinja2 templates in
`trackflow/templates/`, one set per trigger (`<trigger>/subject.txt`, `email.txt`,
`email.html`, `sms.txt`). Exception wording per `ExceptionKind` lives in
`exception/<kind>/reason.txt`, with carrier-specific wording in
`exception/<carrier>/<kind>/reason.txt`; see `_candidates` for how more specific files win.

Emails look like the merchant's (`Brand`): a logo header, call-to-action buttons in the brand
colour, a footer with the postal address, the support contact and an unsubscribe link. The
HTML is written with a `<style>` element that `render` inlines into style attributes
(css-inline) and then drops, so clients that ignore `<head>` styles render it the same; no
external stylesheet is ever referenced. Each email also carries `List-Unsubscribe` (and, with
an https link, RFC 8058 one-click `List-Unsubscribe-Post`) headers; see `unsubscribe_url`.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Any
from urllib.parse import quote

import css_inline
from jinja2 import Environment, PackageLoader, StrictUndefined, Template, select_autoescape
from pydantic import Field, field_validator

from trackflow.carrier_codes import carrier_code
from trackflow.carriers import courier_tracking_url
from trackflow.carriers.formats import COURIER_NAMES
from trackflow.effects import SendNotification, Tone
from trackflow.links import web_link
from trackflow.models import Channel, ExceptionKind, Model, Shipment, ShippingSpeed, Trigger
from trackflow.unsubscribe_token import unsubscribe_token

SMS_MAX_CHARS = 160
UNICODE_SMS_MAX_CHARS = 70
MAX_LISTED_ITEMS = 3

# Detection's names, plus codes platforms use that are not courier codes of the data set.
CARRIER_NAMES = {**COURIER_NAMES, "dhl_express": "DHL Express", "royal_mail": "Royal Mail"}

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip

# GSM 03.38: the basic table (ESC left out) and the extension table, whose characters
# cost two of the 160 septets.
_GSM7_BASIC = frozenset(
    "@\u00a3$\u00a5\u00e8\u00e9\u00f9\u00ec\u00f2\u00c7\n\u00d8\u00f8\r\u00c5\u00e5"
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e\u00c6\u00e6\u00df\u00c9"
    " !\"#\u00a4%&'()*+,-./0123456789:;<=>?"
    "\u00a1ABCDEFGHIJKLMNOPQRSTUVWXYZ\u00c4\u00d6\u00d1\u00dc\u00a7"
    "\u00bfabcdefghijklmnopqrstuvwxyz\u00e4\u00f6\u00f1\u00fc\u00e0"
)
_GSM7_EXTENSION = frozenset("\f^{}\\[~]|\u20ac")
_GSM7_LOOKALIKES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2026": "...",
        "\u00a0": " ",
        "\u00d7": "x",
        "\u2022": "-",
    }
)
_WHITESPACE = re.compile(r"\s+")
_BLANK_LINES = re.compile(r"\n{3,}")
_SAFE_PATH_SEGMENT = re.compile(r"^[a-z0-9_]+$")
_EXCEPTION_MACROS = ("headline", "detail", "sms_reason")
_SUPPORT_MACROS = ("contact_us", "resolution_path")
_SMS_VARIANTS = (  # optional parts dropped in order while the text is too long
    {"with_items": True, "with_greeting": True},
    {"with_items": False, "with_greeting": True},
    {"with_items": False, "with_greeting": False},
)

_MAILBOX = re.compile(r"^[^\s<>\"(),;:@]+@[^\s<>\"(),;:@]+$")
# Inlines the <style> element of the HTML emails into style attributes and drops it; never
# fetches anything (the templates link no stylesheet, and a remote one would stay unloaded).
_INLINER = css_inline.CSSInliner(
    keep_style_tags=False, keep_link_tags=False, load_remote_stylesheets=False
)

_env = Environment(
    loader=PackageLoader("trackflow", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["capfirst"] = lambda text: text[:1].upper() + text[1:]


DEFAULT_BRAND_COLOR = "#18181b"
_HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_DARK_TEXT = "#18181b"
_LIGHT_TEXT = "#ffffff"
UNSUBSCRIBE_PATH = "/u/"
"""Where the API serves unsubscribe links: `<public URL>/u/<token>` (GET shows a confirmation,
POST `List-Unsubscribe=One-Click` unsubscribes at once, per RFC 8058)."""


class Brand(Model):
    """How the store presents itself in messages (configured by `TRACKFLOW_*` settings)."""

    store_name: str = "Our store"
    support_email: str | None = None
    support_url: str | None = None
    support_phone: str | None = None
    resolution_url: str | None = None
    """Where a customer picks a replacement or a refund for a lost or damaged package."""
    review_url: str | None = None
    """Where a customer leaves a review after delivery."""
    logo_url: str | None = None
    """The email header's logo (https only; else the store name is the header)."""
    primary_color: str = DEFAULT_BRAND_COLOR
    """`#rrggbb`: the buttons and the header rule. The button text is white or near-black,
    whichever reads better on it."""
    postal_address: str | None = None
    """The store's postal address for the email footer (lines separated by newlines)."""
    public_url: str | None = None
    """Where trackflow's API is reachable from the internet (unsubscribe links)."""
    unsubscribe_secret: str | None = Field(default=None, repr=False)
    """Signs unsubscribe links; without it (or without `public_url`) emails offer only the
    mailto unsubscribe."""
    unsubscribe_email: str | None = None
    """The mailbox of the `mailto:` unsubscribe (default: `support_email`)."""

    @field_validator("primary_color")
    @classmethod
    def _hex_color(cls, value: str) -> str:
        if not _HEX_COLOR.match(value):
            raise ValueError(f"a brand colour is #rrggbb, not {value!r}")
        return value.lower()

    @property
    def unsubscribe_mailbox(self) -> str | None:
        return self.unsubscribe_email or self.support_email


class RenderedMessage(Model):
    channel: Channel
    to: str
    subject: str | None
    body: str
    html: str | None
    headers: dict[str, str] = {}
    """Email headers for the transport: `List-Unsubscribe` and `List-Unsubscribe-Post`."""


class MessageContext(Model):
    """What messages say about the order: all a send activity needs besides the send itself
    (the shipment's other facts never travel into an activity's input)."""

    tracking_number: str
    order_id: str
    order_name: str
    first_name: str | None
    carrier: str | None
    tracking_url: str | None
    express: bool
    carrier_label: str | None = None
    items: list[str]
    more_items: int

    @classmethod
    def of(cls, shipment: Shipment) -> MessageContext:
        items = shipment.items
        return cls(
            tracking_number=shipment.tracking_number,
            order_id=shipment.order_id,
            order_name=shipment.order_name or f"#{shipment.order_id}",
            first_name=shipment.customer.first_name,
            carrier=shipment.carrier,
            carrier_label=shipment.carrier_label,
            tracking_url=tracking_link(shipment),
            express=shipment.shipping_speed == ShippingSpeed.EXPRESS,
            items=[
                item.title if item.quantity == 1 else f"{item.title} \u00d7 {item.quantity}"
                for item in items[:MAX_LISTED_ITEMS]
            ],
            more_items=max(0, len(items) - MAX_LISTED_ITEMS),
        )


def render(
    about: MessageContext | Shipment, send: SendNotification, brand: Brand
) -> RenderedMessage:
    order = about if isinstance(about, MessageContext) else MessageContext.of(about)
    kind = (send.exception or ExceptionKind.UNKNOWN) if send.trigger == Trigger.EXCEPTION else None
    context = _context(order, send, brand)
    if kind is not None:
        context.update(_exception_wording(context, order.carrier, kind))

    def part(name: str) -> Template:
        return _resolve(send.trigger, name, order.carrier, kind)

    if send.channel == Channel.SMS:
        body = _render_sms(part("sms.txt"), context, brand.store_name)
        return RenderedMessage(channel=send.channel, to=send.to, subject=None, body=body, html=None)
    context.update(_email_context(brand, send.idempotency_key))
    return RenderedMessage(
        channel=send.channel,
        to=send.to,
        subject=_squash(part("subject.txt").render(context)),
        body=_tidy(part("email.txt").render(context)),
        html=_INLINER.inline(part("email.html").render(context)),
        headers=unsubscribe_headers(brand, send.idempotency_key),
    )


# --- unsubscribe -----------------------------------------------------------------------------


def unsubscribe_url(brand: Brand, key: str) -> str | None:
    """The one-click unsubscribe link of the email sent under idempotency key `key`:
    `<brand.public_url>/u/<token>` (see `unsubscribe_token`), or None when the brand has no
    web public URL or no unsubscribe secret. Pure: the route that serves it lives in the API."""
    base = _web_link(brand.public_url)
    if not base or not brand.unsubscribe_secret:
        return None
    return f"{base.rstrip('/')}{UNSUBSCRIBE_PATH}{unsubscribe_token(brand.unsubscribe_secret, key)}"


def unsubscribe_mailto(brand: Brand, key: str) -> str | None:
    """`mailto:<mailbox>?subject=unsubscribe[ <token>]`, or None without a mailbox."""
    mailbox = _mailbox(brand.unsubscribe_mailbox)
    if not mailbox:
        return None
    subject = "unsubscribe"
    if brand.unsubscribe_secret:
        subject += " " + unsubscribe_token(brand.unsubscribe_secret, key)
    return f"mailto:{mailbox}?subject={quote(subject)}"


def unsubscribe_headers(brand: Brand, key: str) -> dict[str, str]:
    """`List-Unsubscribe: <mailto:…>, <https://…>` (RFC 2369, whichever the brand has) and,
    with an https link, `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058, which
    Gmail and Yahoo ask of bulk senders, and which allows https only): the mail client then
    POSTs that body to the link."""
    mailto, url = unsubscribe_mailto(brand, key), unsubscribe_url(brand, key)
    targets = [f"<{target}>" for target in (mailto, url) if target]
    if not targets:
        return {}
    headers = {"List-Unsubscribe": ", ".join(targets)}
    if url and url.startswith("https://"):
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


def _mailbox(address: str | None) -> str | None:
    """Only a plain `local@domain` address: it ends up in a mailto: href."""
    return address if address and _MAILBOX.match(address) else None


# --- brand -----------------------------------------------------------------------------------


def button_text_color(background: str) -> str:
    """White or near-black, whichever contrasts more with `background` (WCAG luminance)."""
    background_l = _luminance(background)
    on_dark = (_luminance(_LIGHT_TEXT) + 0.05) / (background_l + 0.05)
    on_light = (background_l + 0.05) / (_luminance(_DARK_TEXT) + 0.05)
    return _LIGHT_TEXT if on_dark >= on_light else _DARK_TEXT


def _luminance(color: str) -> float:
    def channel(hex_pair: str) -> float:
        c = int(hex_pair, 16) / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(color[i : i + 2]) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _email_context(brand: Brand, key: str) -> dict[str, Any]:
    """What only emails show: the brand's look, the footer and the unsubscribe link."""
    url = unsubscribe_url(brand, key)
    mailto = unsubscribe_mailto(brand, key)
    logo = brand.logo_url if brand.logo_url and brand.logo_url.startswith("https://") else None
    address = (brand.postal_address or "").replace("\\n", "\n")
    return {
        "brand_color": brand.primary_color,
        "button_text_color": button_text_color(brand.primary_color),
        "logo_url": logo,
        "postal_lines": [line.strip() for line in address.splitlines() if line.strip()],
        "unsubscribe_url": url,
        "unsubscribe_mailbox": brand.unsubscribe_mailbox if mailto else None,
        "unsubscribe_link": url or mailto,
    }


def is_gsm7(text: str) -> bool:
    return all(char in _GSM7_BASIC or char in _GSM7_EXTENSION for char in text)


def carrier_display_name(code: str | None, label: str | None = None) -> str:
    """The table's name of a courier; another carrier by the name it was given as (`label`,
    when it is that code's and not the code itself: "PostNL", not "Postnl"), else its code in
    title case ("acme_freight" -> "Acme Freight")."""
    if not code:
        return "the carrier"
    if code in CARRIER_NAMES:
        return CARRIER_NAMES[code]
    if label and label != code and carrier_code(label) == code:
        return label
    return code.replace("_", " ").title()


def format_eta(day: date) -> str:
    return f"{_WEEKDAYS[day.weekday()]}, {_MONTHS[day.month - 1]} {day.day}"


def _candidates(
    trigger: Trigger, part: str, carrier: str | None, kind: ExceptionKind | None
) -> list[str]:
    """Template names to try, most specific first: `<trigger>/<carrier>/<kind>/<part>`,
    then `<trigger>/<kind>/<part>`, then `<trigger>/<part>`."""
    names = [f"{trigger}/{part}"]
    if kind is not None:
        names.insert(0, f"{trigger}/{kind}/{part}")
        if carrier and _SAFE_PATH_SEGMENT.match(carrier):
            names.insert(0, f"{trigger}/{carrier}/{kind}/{part}")
    return names


def _resolve(
    trigger: Trigger, part: str, carrier: str | None, kind: ExceptionKind | None
) -> Template:
    return _env.select_template(_candidates(trigger, part, carrier, kind))


def _context(order: MessageContext, send: SendNotification, brand: Brand) -> dict[str, Any]:
    """Every variable the templates may use; StrictUndefined makes any other name an error."""
    context: dict[str, Any] = {
        "store_name": brand.store_name,
        "support_email": brand.support_email,
        "support_mailto": _mailbox(brand.support_email),
        "support_url": brand.support_url,
        "support_phone": brand.support_phone,
        "support_contact": brand.support_email or brand.support_url or brand.support_phone,
        "resolution_url": _web_link(brand.resolution_url),
        "review_url": _web_link(brand.review_url),
        "first_name": order.first_name or "there",
        "returning": send.tone == Tone.RETURNING_CUSTOMER,
        "order_name": order.order_name,
        "items": order.items,
        "more_items": order.more_items,
        "carrier": carrier_display_name(order.carrier, order.carrier_label),
        "tracking_number": order.tracking_number,
        "tracking_url": order.tracking_url,
        "express": order.express,
        "eta": format_eta(send.estimated_delivery) if send.estimated_delivery else None,
        "event_location": send.event_location,
        "event_description": send.event_description,
        "hold_until": format_eta(send.hold_until) if send.hold_until else None,
        "revived": send.revived,
    }
    # Shared sentences, rendered as plain text (as the exception wording is): a macro of a
    # text template called from an HTML template would come back unescaped.
    support = _env.get_template("_support.txt").make_module(context)
    context.update({name: _squash(str(getattr(support, name)())) for name in _SUPPORT_MACROS})
    return context


def tracking_link(shipment: Shipment) -> str | None:
    """The one link every message offers for following the parcel; this is where a shopper
    tracking page of the store's own would come first. Then the platform's link, then the
    carrier's public page for the number."""
    return web_link(shipment.tracking_url) or courier_tracking_url(
        shipment.carrier, shipment.tracking_number
    )


def _web_link(url: str | None) -> str | None:
    """Only web links: the URL ends up in an href."""
    return url if url and url.lower().startswith(("https://", "http://")) else None


def _exception_wording(
    context: dict[str, Any], carrier: str | None, kind: ExceptionKind
) -> dict[str, Any]:
    """The kind-specific sentences, rendered as plain text so the HTML template escapes them,
    and `offers_resolution`: whether the wording points to the replacement-or-refund link."""
    reason = _resolve(Trigger.EXCEPTION, "reason.txt", carrier, kind).make_module(context)
    wording: dict[str, Any] = {
        name: _squash(str(getattr(reason, name)())) for name in _EXCEPTION_MACROS
    }
    wording["offers_resolution"] = getattr(reason, "offers_resolution", False) is True
    return wording


def _render_sms(template: Template, context: dict[str, Any], sender: str) -> str:
    """The fullest variant that fits one SMS. Never truncated: when even the shortest does
    not fit, it goes out as a multi-part SMS with its link intact."""
    texts = [
        _squash(_fold_to_gsm7(f"{sender}: {template.render(context, **flags)}"))
        for flags in _SMS_VARIANTS
    ]
    return next((text for text in texts if _fits_one_sms(text)), texts[-1])


def _fold_to_gsm7(text: str) -> str:
    """Typographic characters to their GSM-7 look-alikes, then each letter outside GSM-7
    whose accents alone keep it out to its plain letter ("Zoë's Café" -> "Zoe's Café": é is
    GSM-7, ë is not), as Twilio's Smart Encoding does: one such letter would otherwise turn
    the whole text into UCS-2, 70 characters a segment. Anything else (emoji, other scripts)
    stays as it is."""
    text = text.translate(_GSM7_LOOKALIKES)
    if is_gsm7(text):
        return text
    return "".join(_fold_char(char) for char in text)


def _fold_char(char: str) -> str:
    if char in _GSM7_BASIC or char in _GSM7_EXTENSION:
        return char
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    return base if base and is_gsm7(base) else char


def _fits_one_sms(text: str) -> bool:
    if is_gsm7(text):
        return len(text) + sum(char in _GSM7_EXTENSION for char in text) <= SMS_MAX_CHARS
    return len(text.encode("utf-16-le")) // 2 <= UNICODE_SMS_MAX_CHARS


def _squash(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def _tidy(text: str) -> str:
    lines = "\n".join(line.rstrip() for line in text.strip().splitlines())
    return _BLANK_LINES.sub("\n\n", lines) + "\n"
