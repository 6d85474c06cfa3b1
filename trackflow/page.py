"""The shopper's tracking page, `/t/<token>` (pure): what it says and its HTML.

`tracking_page(row, brand, now)` turns a read-model row (`ShipmentProjection`) into the page's
view model: a headline, the four milestones (label created, in transit, out for delivery,
delivered) with their local times, the estimated delivery, the last scan (time in the shopper's
zone, place), and, when delayed or lost, what happened and what happens next in plain words,
the carrier's link, the store's support contact and return link. `render_page` makes it a
self-contained, mobile-first HTML page (inline CSS, nothing fetched but the store's https
logo); every text is escaped. Of the customer it shows the first name only.

Every message links to the page (`page_link`): `<public URL>/t/<token>?m=<ref>`, where `ref`
(`message_ref`) is a short digest of the message's idempotency key; a view with `m` counts as
a click of that message.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from trackflow.carriers import courier_tracking_url
from trackflow.estimates import tellable_estimate
from trackflow.messages import button_text_color, carrier_display_name, format_eta
from trackflow.models import CarrierStatus, ExceptionKind
from trackflow.shipment_state import Phase, ShipmentProjection

PAGE_PATH = "/t/"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MESSAGE_REF_BYTES = 6  # 8 URL-safe characters
DEFAULT_COLOR = "#18181b"
ENDED = (Phase.DELIVERED, Phase.RETURNED, Phase.CANCELLED)

MILESTONES: tuple[tuple[CarrierStatus, str], ...] = (
    (CarrierStatus.LABEL_CREATED, "Label created"),
    (CarrierStatus.IN_TRANSIT, "In transit"),
    (CarrierStatus.OUT_FOR_DELIVERY, "Out for delivery"),
    (CarrierStatus.DELIVERED, "Delivered"),
)
_REACHED_BY_PHASE = {
    Phase.LABEL_CREATED: 0,
    Phase.IN_TRANSIT: 1,
    Phase.OUT_FOR_DELIVERY: 2,
    Phase.DELIVERED: 3,
}


@dataclass(frozen=True)
class PageBrand:
    """How the store presents itself on the page (from the settings)."""

    store_name: str = "Our store"
    color: str = DEFAULT_COLOR
    logo_url: str | None = None
    support_email: str | None = None
    support_phone: str | None = None
    support_url: str | None = None
    return_url: str | None = None
    resolution_url: str | None = None


@dataclass(frozen=True)
class Step:
    label: str
    state: str  # done | current | problem | todo
    at: str | None = None  # when it was first reached, in the shopper's zone


@dataclass(frozen=True)
class Problem:
    """What happened and what happens next, in plain words, when delayed or lost."""

    what: str
    next_steps: tuple[str, ...]
    offers_resolution: bool = False


@dataclass(frozen=True)
class Link:
    text: str
    href: str


@dataclass(frozen=True)
class PageView:
    title: str
    greeting: str
    headline: str
    tone: str  # ok | good | problem
    summary: str
    order: str
    carrier: str
    tracking_number: str
    steps: tuple[Step, ...]
    eta_label: str | None = None
    eta: str | None = None
    last_scan_at: str | None = None
    last_scan_place: str | None = None
    last_scan_detail: str | None = None
    problem: Problem | None = None
    carrier_link: Link | None = None
    support: tuple[Link, ...] = ()
    links: tuple[Link, ...] = field(default_factory=tuple)
    zone_note: str | None = None


# --- links and lifetime ----------------------------------------------------------------------


def message_ref(idempotency_key: str) -> str:
    """A message's short id in its tracking link: not its key (which holds the tracking number
    and order), 8 URL-safe characters of its digest; the page matches it against the keys of
    the shipment's messages."""
    digest = hashlib.blake2b(idempotency_key.encode(), digest_size=MESSAGE_REF_BYTES).digest()
    return base64.urlsafe_b64encode(digest).decode()


def page_link(public_url: str, token: str, idempotency_key: str | None = None) -> str:
    """The tracking page's URL, with the message's ref when a message carries it."""
    url = f"{public_url.rstrip('/')}{PAGE_PATH}{token}"
    return f"{url}?m={message_ref(idempotency_key)}" if idempotency_key else url


def shown_until(row: ShipmentProjection, days: int) -> datetime | None:
    """Until when the page is served: `days` after tracking ended (the row's last write), or
    None while the shipment is still tracked."""
    document = row.document
    if document.closed_reason is None and document.status not in ENDED:
        return None
    return row.updated_at + timedelta(days=days)


def expired(row: ShipmentProjection, days: int, now: datetime) -> bool:
    until = shown_until(row, days)
    return until is not None and now > until


# --- the view model --------------------------------------------------------------------------


def tracking_page(row: ShipmentProjection, brand: PageBrand, now: datetime) -> PageView:
    """The page as it reads at `now` (an estimate over by then is not shown)."""
    document = row.document
    zone = _zone(document.timezone)
    carrier = carrier_display_name(document.carrier, document.carrier_label)
    timeline = sorted(document.timeline, key=lambda e: e.occurred_at)
    kind = _problem_kind(row)
    steps = _steps(row, zone, problem=kind is not None)
    headline, tone, summary = _headline(document.status, kind, carrier)
    problem = _problem(kind, carrier, brand) if kind is not None else None
    last = timeline[-1] if timeline else None

    eta_label: str | None = None
    eta: str | None = None
    delivered = next((e for e in timeline if e.status is CarrierStatus.DELIVERED), None)
    if document.status is Phase.DELIVERED and delivered is not None:
        eta_label, eta = "Delivered", _local_time(delivered.occurred_at, zone)
    elif document.status not in (Phase.LOST, *ENDED) and kind is not ExceptionKind.LOST:
        estimate = tellable_estimate(
            document.estimated_delivery or row.estimated_delivery, now, document.timezone
        )
        if estimate is not None:
            eta_label = (
                "Arriving" if document.status is Phase.OUT_FOR_DELIVERY else "Estimated delivery"
            )
            eta = _eta(estimate, document.status)

    carrier_url = courier_tracking_url(document.carrier, document.tracking_number)
    first_name = (row.first_name or "").strip()
    return PageView(
        title=f"{headline} — {brand.store_name}",
        greeting=f"Hi {first_name}," if first_name else "Hi there,",
        headline=headline,
        tone=tone,
        summary=summary,
        order=f"Order {row.order_name}" if row.order_name else f"Order #{document.order_id}",
        carrier=carrier,
        tracking_number=document.tracking_number,
        steps=steps,
        eta_label=eta_label,
        eta=eta,
        last_scan_at=_local_time(last.occurred_at, zone) if last else None,
        last_scan_place=last.location if last and last.location else None,
        last_scan_detail=last.description if last and last.description else None,
        problem=problem,
        carrier_link=(
            Link(f"Track on {_possessive(carrier)} website", carrier_url)
            if carrier_url and _web(carrier_url)
            else None
        ),
        support=_support(brand),
        links=_links(brand, problem),
        zone_note=f"Times are in {_zone_name(zone)}." if timeline else None,
    )


def _problem_kind(row: ShipmentProjection) -> ExceptionKind | None:
    document = row.document
    if document.status is Phase.LOST:
        return ExceptionKind.LOST
    if document.status is Phase.EXCEPTION:
        return document.exception or ExceptionKind.UNKNOWN
    return None


def _steps(row: ShipmentProjection, zone: ZoneInfo, *, problem: bool) -> tuple[Step, ...]:
    firsts: dict[CarrierStatus, datetime] = {}
    for entry in sorted(row.document.timeline, key=lambda e: e.occurred_at):
        firsts.setdefault(entry.status, entry.occurred_at)
    reached = _REACHED_BY_PHASE.get(row.document.status, -1)
    for index, (status, _label) in enumerate(MILESTONES):
        if status in firsts:
            reached = max(reached, index)
    if row.document.status in (Phase.RETURNED, Phase.CANCELLED):
        reached = min(reached, 2)
    steps = []
    for index, (status, label) in enumerate(MILESTONES):
        if index < reached or (index == reached and status is CarrierStatus.DELIVERED):
            state = "done"
        elif index == reached:
            state = "problem" if problem else "current"
        else:
            state = "todo"
        at = firsts.get(status)
        steps.append(Step(label, state, _short_time(at, zone) if at and index <= reached else None))
    return tuple(steps)


def _headline(status: Phase, kind: ExceptionKind | None, carrier: str) -> tuple[str, str, str]:
    """(headline, tone, one sentence)."""
    if kind is not None:
        headline, _what, _next = PROBLEMS.get(kind, PROBLEMS[ExceptionKind.UNKNOWN])
        summary = (
            "Your package is delayed. Here's what we know."
            if kind in DELAYS
            else "There's a problem with your delivery. Here's what we know."
        )
        return headline.format(carrier=carrier), "problem", summary
    return {
        Phase.PENDING: ("Order received", "ok", "We're getting your order ready to ship."),
        Phase.LABEL_CREATED: (
            "Getting ready to ship",
            "ok",
            f"The shipping label is ready; {carrier} hasn't picked the package up yet.",
        ),
        Phase.IN_TRANSIT: (
            "On its way",
            "ok",
            f"Your package is moving through {_possessive(carrier)} network.",
        ),
        Phase.OUT_FOR_DELIVERY: (
            "Out for delivery",
            "ok",
            "Your package is on the delivery vehicle and should arrive today.",
        ),
        Phase.DELIVERED: ("Delivered", "good", "Your package has been delivered. Enjoy!"),
        Phase.RETURNED: (
            "Returned to us",
            "problem",
            "The package came back to us. We'll be in touch about a reshipment or a refund.",
        ),
        Phase.CANCELLED: ("Tracking stopped", "ok", "We're no longer tracking this shipment."),
    }.get(status, ("On its way", "ok", ""))


# (headline, what happened, what happens next); {carrier} is the carrier's name.
PROBLEMS: dict[ExceptionKind, tuple[str, str, tuple[str, ...]]] = {
    ExceptionKind.WEATHER_DELAY: (
        "Delayed by weather",
        "Severe weather is slowing deliveries down, so your package is running a little "
        "behind. It's safe, and there's nothing you need to do.",
        (
            "{carrier} will move it on as soon as it's safe to.",
            "This page shows the new estimate as soon as {carrier} gives one.",
        ),
    ),
    ExceptionKind.CARRIER_DELAY: (
        "Running late",
        "{carrier} is running behind schedule, so your package will arrive later than "
        "planned. It's safe, and there's nothing you need to do.",
        (
            "{carrier} keeps it moving; most delays clear within a day or two.",
            "We're watching it and will let you know when it's back on track.",
        ),
    ),
    ExceptionKind.ADDRESS_ISSUE: (
        "Address problem",
        "{carrier} couldn't deliver your package because of a problem with the address.",
        (
            "Contact us so we can confirm the address with {carrier}.",
            "{carrier} holds the package for a few days while it's sorted out.",
        ),
    ),
    ExceptionKind.FAILED_ATTEMPT: (
        "Delivery attempted",
        "{carrier} tried to deliver your package but couldn't.",
        (
            "{carrier} usually tries again on the next business day.",
            "If they left a notice, it says how to reschedule or pick the package up.",
        ),
    ),
    ExceptionKind.HELD_AT_FACILITY: (
        "Held at a {carrier} facility",
        "Your package is being held at a {carrier} location.",
        (
            "It may be waiting for you to collect: {carrier}'s page has the location and hours.",
            "We'll let you know as soon as it moves again.",
        ),
    ),
    ExceptionKind.CUSTOMS_HOLD: (
        "Held in customs",
        "Your package is going through customs checks, which can take a few days.",
        (
            "Most packages clear customs within a few days, with nothing for you to do.",
            "If customs need anything from you, {carrier} will contact you directly.",
        ),
    ),
    ExceptionKind.DAMAGED: (
        "Damaged in transit",
        "{carrier} reported that your package was damaged on the way. We're sorry.",
        (
            "We will make it right with a replacement or a refund.",
            "Contact us, or use the link below, to tell us which you'd prefer.",
        ),
    ),
    ExceptionKind.LOST: (
        "Lost in transit",
        "We're sorry: {carrier} can't locate your package. We know that's frustrating.",
        (
            "We will make it right with a replacement or a refund.",
            "Contact us, or use the link below, to tell us which you'd prefer.",
            "If the package turns up after all, this page will show it.",
        ),
    ),
    ExceptionKind.RETURN_TO_SENDER: (
        "Returning to us",
        "{carrier} is sending the package back to us.",
        (
            "When it reaches us, we'll contact you about a reshipment or a refund.",
            "If you think the address was right, contact us and we'll look into it.",
        ),
    ),
    ExceptionKind.UNKNOWN: (
        "We're looking into it",
        "{carrier} reported an unexpected issue with your package.",
        (
            "We're watching it closely and will let you know as soon as we know more.",
            "There's nothing you need to do for now.",
        ),
    ),
}
_RESOLUTION = (ExceptionKind.DAMAGED, ExceptionKind.LOST)
# Steps as the page words them when it shows no support contact (nothing set, not even a
# sender address): never "contact us" without saying how. An empty one is left out.
_WITHOUT_CONTACT = {
    "Contact us so we can confirm the address with {carrier}.": (
        "Call {carrier} with your tracking number to confirm the address."
    ),
    "Contact us, or use the link below, to tell us which you'd prefer.": (
        "Use the link below to tell us which you'd prefer."
    ),
    "If you think the address was right, contact us and we'll look into it.": "",
}
_WITHOUT_RESOLUTION_LINK = (
    ("Contact us, or use the link below,", "Contact us"),
    ("Use the link below to tell us", "We'll be in touch to ask"),
)
DELAYS = (
    ExceptionKind.WEATHER_DELAY,
    ExceptionKind.CARRIER_DELAY,
    ExceptionKind.CUSTOMS_HOLD,
    ExceptionKind.FAILED_ATTEMPT,
    ExceptionKind.HELD_AT_FACILITY,
)


def _problem(kind: ExceptionKind, carrier: str, brand: PageBrand) -> Problem:
    _headline_text, what, next_steps = PROBLEMS.get(kind, PROBLEMS[ExceptionKind.UNKNOWN])
    if not _support(brand):
        next_steps = tuple(_WITHOUT_CONTACT.get(step, step) for step in next_steps)
    steps = [step.format(carrier=carrier) for step in next_steps if step]
    resolution = kind in _RESOLUTION
    if resolution and not _web(brand.resolution_url):
        for linked, unlinked in _WITHOUT_RESOLUTION_LINK:
            steps = [step.replace(linked, unlinked) for step in steps]
    return Problem(
        what=_capfirst(what.format(carrier=carrier)),
        next_steps=tuple(_capfirst(step) for step in steps),
        offers_resolution=resolution and _web(brand.resolution_url),
    )


def _support(brand: PageBrand) -> tuple[Link, ...]:
    links = []
    if brand.support_email and "@" in brand.support_email and " " not in brand.support_email:
        links.append(Link(brand.support_email, f"mailto:{brand.support_email}"))
    if brand.support_phone:
        digits = "".join(c for c in brand.support_phone if c.isdigit() or c == "+")
        links.append(Link(brand.support_phone, f"tel:{digits}"))
    if brand.support_url and _web(brand.support_url):
        links.append(Link("Help centre", brand.support_url))
    return tuple(links)


def _links(brand: PageBrand, problem: Problem | None) -> tuple[Link, ...]:
    links = []
    if problem is not None and problem.offers_resolution and brand.resolution_url:
        links.append(Link("Choose a replacement or a refund", brand.resolution_url))
    if brand.return_url and _web(brand.return_url):
        links.append(Link("Start a return", brand.return_url))
    return tuple(links)


# --- time ------------------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _zone_name(zone: ZoneInfo) -> str:
    return str(zone.key).replace("_", " ")


def _local_time(at: datetime, zone: ZoneInfo) -> str:
    """`Tuesday, November 24, 3:05 PM EST` in the shopper's zone."""
    local = at.astimezone(zone)
    hour = local.hour % 12 or 12
    meridiem = "AM" if local.hour < 12 else "PM"
    abbreviation = local.tzname() or ""
    return (
        f"{format_eta(local.date())}, {hour}:{local.minute:02d} {meridiem} {abbreviation}".strip()
    )


def _short_time(at: datetime, zone: ZoneInfo) -> str:
    """`Nov 24, 3:05 PM` in the shopper's zone (the progress steps)."""
    local = at.astimezone(zone)
    hour = local.hour % 12 or 12
    meridiem = "AM" if local.hour < 12 else "PM"
    return f"{_MONTHS[local.month - 1]} {local.day}, {hour}:{local.minute:02d} {meridiem}"


def _eta(day: date, status: Phase) -> str:
    text = format_eta(day)
    return f"Today, {text}" if status is Phase.OUT_FOR_DELIVERY else text


# --- HTML ------------------------------------------------------------------------------------


def render_page(view: PageView, brand: PageBrand) -> str:
    color = brand.color if _hex(brand.color) else DEFAULT_COLOR
    on_color = button_text_color(color)
    logo = (
        f'<img src="{_e(brand.logo_url)}" alt="{_e(brand.store_name)}" class="logo">'
        if brand.logo_url and brand.logo_url.startswith("https://")
        else f'<span class="store">{_e(brand.store_name)}</span>'
    )
    parts = [
        f'<p class="greeting">{_e(view.greeting)}</p>',
        f'<h1 class="headline tone-{_e(view.tone)}" id="status">{_e(view.headline)}</h1>',
        f'<p class="summary">{_e(view.summary)}</p>' if view.summary else "",
        f'<p class="meta">{_e(view.order)} · {_e(view.carrier)} '
        f'<span class="number">{_e(view.tracking_number)}</span></p>',
    ]
    if view.eta:
        parts.append(
            f'<section class="card eta" id="eta"><p class="label">{_e(view.eta_label or "")}</p>'
            f'<p class="value">{_e(view.eta)}</p></section>'
        )
    parts.append(_progress(view.steps))
    if view.problem is not None:
        items = "".join(f"<li>{_e(step)}</li>" for step in view.problem.next_steps)
        parts.append(
            '<section class="card problem" id="problem"><h2>What happened</h2>'
            f"<p>{_e(view.problem.what)}</p><h2>What happens next</h2><ul>{items}</ul></section>"
        )
    if view.last_scan_at:
        lines = [f'<p class="value">{_e(view.last_scan_at)}</p>']
        if view.last_scan_place:
            lines.append(f'<p class="place">{_e(view.last_scan_place)}</p>')
        if view.last_scan_detail:
            lines.append(f'<p class="detail">{_e(view.last_scan_detail)}</p>')
        note = f'<p class="note">{_e(view.zone_note)}</p>' if view.zone_note else ""
        parts.append(
            '<section class="card scan" id="last-scan"><p class="label">Latest update</p>'
            f"{''.join(lines)}{note}</section>"
        )
    buttons = [
        f'<a class="button" href="{_e(link.href)}" rel="noopener noreferrer">{_e(link.text)}</a>'
        for link in view.links
        if link.text != "Start a return"
    ]
    if view.carrier_link:
        buttons.append(
            f'<a class="button secondary" id="carrier-link" href="{_e(view.carrier_link.href)}" '
            f'rel="noopener noreferrer">{_e(view.carrier_link.text)}</a>'
        )
    if buttons:
        parts.append(f'<div class="actions">{"".join(buttons)}</div>')
    parts.append(_help(view))
    return _PAGE.format(
        title=_e(view.title),
        color=color,
        on_color=on_color,
        header=logo,
        main="".join(parts),
        store=_e(brand.store_name),
    )


def _progress(steps: Sequence[Step]) -> str:
    items = []
    for step in steps:
        when = f'<span class="when">{_e(step.at)}</span>' if step.at else ""
        current = ' aria-current="step"' if step.state in ("current", "problem") else ""
        items.append(
            f'<li class="step is-{step.state}"{current}><span class="dot"></span>'
            f'<span class="text"><span class="name">{_e(step.label)}</span>{when}</span></li>'
        )
    return (
        f'<ol class="progress" id="progress" aria-label="Delivery progress">{"".join(items)}</ol>'
    )


def _help(view: PageView) -> str:
    contact = " · ".join(f'<a href="{_e(link.href)}">{_e(link.text)}</a>' for link in view.support)
    returns = next((link for link in view.links if link.text == "Start a return"), None)
    lines = []
    if contact:
        lines.append(f"<p>Questions about your order? Contact us: {contact}</p>")
    if returns:
        lines.append(
            f'<p>Need to send something back? <a href="{_e(returns.href)}" id="return-link">'
            f"{_e(returns.text)}</a></p>"
        )
    if not lines:
        return ""
    return f'<section class="help" id="help"><h2>Need help?</h2>{"".join(lines)}</section>'


def not_found_page() -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex"><title>Not found</title></head>'
        '<body style="font-family:system-ui,sans-serif;margin:2rem;color:#18181b">'
        "<h1>Tracking page not found</h1>"
        "<p>This link is not valid, or the tracking page is no longer available.</p>"
        "</body></html>"
    )


def unavailable_page() -> str:
    """What the shopper sees while the page's data cannot be read (503, `Retry-After`)."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex"><title>Try again shortly</title></head>'
        '<body style="font-family:system-ui,sans-serif;margin:2rem;color:#18181b">'
        "<h1>Try again shortly</h1>"
        "<p>This page cannot be shown right now. Please try again in a few minutes.</p>"
        "</body></html>"
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><meta name="referrer" content="no-referrer">
<title>{title}</title>
<style>
*{{box-sizing:border-box}}
body{{margin:0;background:#f4f4f5;color:#18181b;font:16px/1.5 system-ui,-apple-system,
"Segoe UI",Roboto,Helvetica,Arial,sans-serif}}
header{{background:{color};color:{on_color};padding:14px 20px}}
header .store{{font-weight:700;font-size:1.15rem}}
header .logo{{max-height:36px;max-width:180px;display:block}}
main{{max-width:640px;margin:0 auto;padding:20px 16px 32px}}
.greeting{{margin:0;color:#52525b}}
h1{{font-size:1.75rem;line-height:1.2;margin:4px 0 8px}}
h1.tone-good{{color:#15803d}}h1.tone-problem{{color:#b45309}}
.summary{{margin:0 0 8px}}
.meta{{margin:0 0 16px;color:#52525b;font-size:.9rem;overflow-wrap:anywhere}}
.card{{background:#fff;border-radius:12px;padding:14px 16px;margin:0 0 14px;
box-shadow:0 1px 2px rgba(0,0,0,.08)}}
.card p{{margin:0}}
.label{{color:#52525b;font-size:.85rem;text-transform:uppercase;letter-spacing:.04em}}
.value{{font-weight:700;font-size:1.15rem}}
.eta{{border-left:6px solid {color}}}
.place{{font-weight:600}}.detail,.note{{color:#52525b;font-size:.9rem}}
.problem{{border-left:6px solid #d97706;background:#fffbeb}}
.problem h2{{font-size:1rem;margin:0 0 4px}}.problem p{{margin:0 0 12px}}
.problem ul{{margin:0;padding-left:20px}}
.progress{{list-style:none;margin:0 0 14px;padding:14px 16px;background:#fff;
border-radius:12px;box-shadow:0 1px 2px rgba(0,0,0,.08)}}
.step{{display:flex;gap:12px;align-items:flex-start;padding:6px 0;position:relative}}
.step .dot{{flex:none;width:18px;height:18px;border-radius:50%;margin-top:3px;
border:3px solid #d4d4d8;background:#fff}}
.step.is-done .dot{{background:{color};border-color:{color}}}
.step.is-current .dot{{border-color:{color};box-shadow:0 0 0 4px rgba(0,0,0,.06)}}
.step.is-problem .dot{{border-color:#d97706;background:#fbbf24}}
.step.is-todo .name{{color:#71717a}}
.step .text{{display:flex;flex-direction:column}}
.step .name{{font-weight:600}}.step .when{{color:#52525b;font-size:.85rem}}
.actions{{display:flex;flex-direction:column;gap:10px;margin:0 0 18px}}
.button{{display:block;text-align:center;padding:12px 16px;border-radius:10px;
background:{color};color:{on_color};font-weight:700;text-decoration:none}}
.button.secondary{{background:#fff;color:#18181b;border:2px solid {color}}}
.help{{font-size:.95rem;color:#3f3f46}}.help h2{{font-size:1rem;margin:0 0 4px}}
.help p{{margin:0 0 6px}}.help a{{color:inherit;font-weight:600;white-space:nowrap}}
footer{{text-align:center;color:#71717a;font-size:.8rem;padding:0 16px 24px}}
@media (min-width:768px){{
main{{padding-top:32px}}h1{{font-size:2.1rem}}
.progress{{display:flex;justify-content:space-between;gap:8px}}
.step{{flex:1;flex-direction:column;align-items:center;text-align:center}}
.step .text{{align-items:center}}
.actions{{flex-direction:row}}.actions .button{{flex:1}}
}}
</style></head>
<body><header>{header}</header>
<main>{main}</main>
<footer>{store}</footer>
</body></html>
"""


def _e(text: str | None) -> str:
    return html.escape(text or "", quote=True)


def _hex(color: str) -> bool:
    return (
        len(color) == 7
        and color[0] == "#"
        and all(c in "0123456789abcdefABCDEF" for c in color[1:])
    )


def _web(url: str | None) -> bool:
    return bool(url) and str(url).lower().startswith(("https://", "http://"))


def _capfirst(text: str) -> str:
    return text[:1].upper() + text[1:]


def _possessive(name: str) -> str:
    if name == "the carrier":
        return "the carrier's"
    return f"{name}'" if name.endswith("s") else f"{name}'s"
