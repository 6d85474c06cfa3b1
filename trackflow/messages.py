"""Renders one `SendNotification` into the email or SMS the customer receives.

Pure: the only input besides the arguments is the packaged Jinja2 templates in
`trackflow/templates/`, one set per trigger (`<trigger>/subject.txt`, `email.txt`,
`email.html`, `sms.txt`). Exception wording per `ExceptionKind` lives in
`exception/<kind>/reason.txt`, with carrier-specific wording in
`exception/<carrier>/<kind>/reason.txt`; see `_candidates` for how more specific files win.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, Template, select_autoescape

from trackflow.carriers import courier_tracking_url
from trackflow.carriers.formats import COURIER_NAMES
from trackflow.effects import SendNotification, Tone
from trackflow.models import Channel, ExceptionKind, Model, Shipment, ShippingSpeed, Trigger

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

_env = Environment(
    loader=PackageLoader("trackflow", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["capfirst"] = lambda text: text[:1].upper() + text[1:]


class Brand(Model):
    store_name: str = "Our store"
    support_email: str | None = None
    support_url: str | None = None
    support_phone: str | None = None
    resolution_url: str | None = None
    """Where a customer picks a replacement or a refund for a lost or damaged package."""
    review_url: str | None = None
    """Where a customer leaves a review after delivery."""


class RenderedMessage(Model):
    channel: Channel
    to: str
    subject: str | None
    body: str
    html: str | None


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
    return RenderedMessage(
        channel=send.channel,
        to=send.to,
        subject=_squash(part("subject.txt").render(context)),
        body=_tidy(part("email.txt").render(context)),
        html=part("email.html").render(context),
    )


def is_gsm7(text: str) -> bool:
    return all(char in _GSM7_BASIC or char in _GSM7_EXTENSION for char in text)


def carrier_display_name(code: str | None) -> str:
    if not code:
        return "the carrier"
    return CARRIER_NAMES.get(code, code.replace("_", " ").title())


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
        "carrier": carrier_display_name(order.carrier),
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
    return _web_link(shipment.tracking_url) or courier_tracking_url(
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
        _squash(f"{sender}: {template.render(context, **flags)}".translate(_GSM7_LOOKALIKES))
        for flags in _SMS_VARIANTS
    ]
    return next((text for text in texts if _fits_one_sms(text)), texts[-1])


def _fits_one_sms(text: str) -> bool:
    if is_gsm7(text):
        return len(text) + sum(char in _GSM7_EXTENSION for char in text) <= SMS_MAX_CHARS
    return len(text.encode("utf-16-le")) // 2 <= UNICODE_SMS_MAX_CHARS


def _squash(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def _tidy(text: str) -> str:
    lines = "\n".join(line.rstrip() for line in text.strip().splitlines())
    return _BLANK_LINES.sub("\n\n", lines) + "\n"
