"""The shopper's tracking page, `/t/<token>` (pure): what it says and its HTML.

`tracking_page(row, brand, now)` turns a read-model row (`ShipmentProjection`) into the page's
view model: a headline, the four milestones (label created, in transit, out for delivery,
delivered) with their local times, the estimated delivery, the last scan (time in the shopper's
zone, place), and, when delayed or lost, what happened and what happens next in plain words,
the carrier's link, the store's support contact and return link. `render_page` makes it a
self-contained, mobile-first HTML page (the Jinja2 template `templates/page/tracking.html`:
inline CSS, nothing fetched but the store's https logo); every text is escaped. Of the
customer it shows the first name only.

Every message links to the page (`page_link`): `<public URL>/t/<token>?m=<ref>`, where `ref`
(`message_ref`) is a short digest of the message's idempotency key; a view with `m` counts as
a click of that message.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo

from jinja2 import Environment, PackageLoader, StrictUndefined

from trackflow.brand import Brand, button_text_color
from trackflow.carriers import courier_tracking_url
from trackflow.estimates import tellable_estimate
from trackflow.messages import carrier_display_name, format_eta
from trackflow.models import CarrierStatus, ExceptionKind
from trackflow.shipment_state import Phase, ShipmentProjection
from trackflow.zones import zone_name, zone_or_utc

PAGE_PATH = "/t/"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MESSAGE_REF_BYTES = 6  # 8 URL-safe characters
ENDED = (Phase.DELIVERED, Phase.RETURNED, Phase.CANCELLED)
START_A_RETURN = "Start a return"

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

    @property
    def buttons(self) -> tuple[Link, ...]:
        return tuple(link for link in self.links if link.text != START_A_RETURN)

    @property
    def return_link(self) -> Link | None:
        return next((link for link in self.links if link.text == START_A_RETURN), None)


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


def tracking_page(row: ShipmentProjection, brand: Brand, now: datetime) -> PageView:
    """The page as it reads at `now` (an estimate over by then is not shown)."""
    document = row.document
    zone = zone_or_utc(document.timezone)
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


def _steps(row: ShipmentProjection, zone: tzinfo, *, problem: bool) -> tuple[Step, ...]:
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


def _problem(kind: ExceptionKind, carrier: str, brand: Brand) -> Problem:
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


def _support(brand: Brand) -> tuple[Link, ...]:
    links = []
    if brand.support_email and "@" in brand.support_email and " " not in brand.support_email:
        links.append(Link(brand.support_email, f"mailto:{brand.support_email}"))
    if brand.support_phone:
        digits = "".join(c for c in brand.support_phone if c.isdigit() or c == "+")
        links.append(Link(brand.support_phone, f"tel:{digits}"))
    if brand.support_url and _web(brand.support_url):
        links.append(Link("Help centre", brand.support_url))
    return tuple(links)


def _links(brand: Brand, problem: Problem | None) -> tuple[Link, ...]:
    links = []
    if problem is not None and problem.offers_resolution and brand.resolution_url:
        links.append(Link("Choose a replacement or a refund", brand.resolution_url))
    if brand.return_url and _web(brand.return_url):
        links.append(Link(START_A_RETURN, brand.return_url))
    return tuple(links)


# --- time ------------------------------------------------------------------------------------


def _zone_name(zone: tzinfo) -> str:
    return zone_name(zone).replace("_", " ")


def _local_time(at: datetime, zone: tzinfo) -> str:
    """`Tuesday, November 24, 3:05 PM EST` in the shopper's zone."""
    local = at.astimezone(zone)
    hour = local.hour % 12 or 12
    meridiem = "AM" if local.hour < 12 else "PM"
    abbreviation = local.tzname() or ""
    return (
        f"{format_eta(local.date())}, {hour}:{local.minute:02d} {meridiem} {abbreviation}".strip()
    )


def _short_time(at: datetime, zone: tzinfo) -> str:
    """`Nov 24, 3:05 PM` in the shopper's zone (the progress steps)."""
    local = at.astimezone(zone)
    hour = local.hour % 12 or 12
    meridiem = "AM" if local.hour < 12 else "PM"
    return f"{_MONTHS[local.month - 1]} {local.day}, {hour}:{local.minute:02d} {meridiem}"


def _eta(day: date, status: Phase) -> str:
    text = format_eta(day)
    return f"Today, {text}" if status is Phase.OUT_FOR_DELIVERY else text


# --- HTML (trackflow/templates/page/) ---------------------------------------------------------


def render_page(view: PageView, brand: Brand) -> str:
    return _env.get_template("tracking.html").render(
        view=view,
        brand=brand,
        color=brand.primary_color,
        on_color=button_text_color(brand.primary_color),
    )


def not_found_page() -> str:
    return _env.get_template("not_found.html").render()


def unavailable_page() -> str:
    """What the shopper sees while the page's data cannot be read (503, `Retry-After`)."""
    return _env.get_template("unavailable.html").render()


_env = Environment(
    loader=PackageLoader("trackflow", "templates/page"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _web(url: str | None) -> bool:
    return bool(url) and str(url).lower().startswith(("https://", "http://"))


def _capfirst(text: str) -> str:
    return text[:1].upper() + text[1:]


def _possessive(name: str) -> str:
    if name == "the carrier":
        return "the carrier's"
    return f"{name}'" if name.endswith("s") else f"{name}'s"
