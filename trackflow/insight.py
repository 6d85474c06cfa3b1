"""The merchant's figures (issue 12, part 3): pure arithmetic over plain records.

`summarise` takes the rows the ledger database holds (message rows, read-model rows, inbound
ticket rows, tracking-page visits, the suppression list, the imported baseline weeks) and a
period, and returns a `Summary`: what `GET /v1/metrics/summary` answers and what
`trackflow report` draws. No I/O, no clock (the caller passes `now`).

The period
----------
`from` and `to` are calendar dates, both included, in UTC: the window is
`[from 00:00 UTC, to + 1 day 00:00 UTC)`. By default `to` is today and `from` the Monday 8
weeks before the week of `to`. `from` must not be after `to`, and a period spans at
most `MAX_PERIOD_DAYS` days.

Messages, per trigger x channel
-------------------------------
Rows of kind `message` whose time (`sent_at`, else `claimed_at`) falls in the window:

* `decided`: every such row, whatever its status.
* `sent`: status `sent` and transport not `shadow` (handed to the outbox or a provider).
* `shadow`: status `sent` with transport `shadow` (shadow mode: would have gone, did not).
* `delivered`: sent, and the provider reported it delivered (`delivered_at` set or delivery
  status `delivered`). The local outbox reports nothing, so its messages are never counted.
* `opened`: sent and `opened_at` set.
* `clicked`: sent, and `clicked_at` set or a tracking-page visit carries the message's key
  (the page link in every message).
* `bounced`: sent and the latest delivery status is `bounced`, `dropped` or `undelivered`.
* `failed`: status `failed` (the provider refused it), or sent and the latest delivery status
  is `failed` or `canceled`.
* `uncertain`: status `uncertain` (nobody can say whether it went).
* `suppressed`: status `suppressed`, or a transport starting `suppressed:` (the customer's
  consent ruled it out; the reason is in `error_code`).
* `opted_out` (STOP / unsubscribe): each entry of the merchant's suppression list with reason
  `sms_stop` or `unsubscribed` whose time falls in the window is attributed to the last sent
  message on that channel to that address (addresses compared normalised: emails lower-cased,
  numbers without blanks) sent at or before the opt-out; that message's trigger x channel
  counts it. An opt-out no message explains is counted in `opt_outs_unattributed`. The list
  keeps one entry per address and reason, so an opt-out later lifted (START, a resubscribe)
  is not counted, and a repeated one counts once.

Rows are listed by trigger (in `Trigger` order) then channel.

Latency (carrier event -> message sent)
---------------------------------------
Over the `sent` rows above that know when the policy decided them (`decided_at`): the latency
is `sent_at - decided_at` in seconds; `p50` and `p95` are nearest-rank percentiles (the value
at rank `ceil(p / 100 * n)` of the `n` values sorted ascending; none when `n` is 0).
`held` counts those a send window (quiet hours) held (`held_until` set); `held_share` is
`held / n`.

WISMO tickets per 100 shipments, by ISO week
--------------------------------------------
Weeks run Monday 00:00 UTC to the next Monday; the period covers every week from the one
holding `from` to the one holding `to`, each counted inside the window only (the first and
last weeks may be partial).

* shipments of a week: read-model rows registered (`registered_at`, else `updated_at`) in it;
* tickets of a week: inbound ticket rows with intent `wismo` received (`received_at`) in it,
  split by `already_notified`: `notified` (True: a message about the shipment's current
  status had gone out before the customer wrote), `not_notified` (False) and `unknown` (None:
  no shipment found);
* `per_100 = 100 * tickets / shipments` (and likewise per split); none for a week without
  shipments.

The baseline ("before"):

1. the weeks the merchant imported (`trackflow baseline import`), all of them, pooled:
   `100 * sum(wismo_tickets) / sum(shipments)`;
2. else the shadow-mode weeks: from the ISO week of the earliest sent message row, the run of
   consecutive weeks each holding at least one sent message row, all with transport `shadow`
   (the run ends at the first week with a live-sent row or with none); pooled the same way
   from the ledger's own shipments and WISMO tickets of those whole weeks, wherever the
   period lies;
3. else none.

"Now" pools the period's weeks (inside the window) that are not shadow-mode weeks:
`100 * tickets / shipments`. `change_percent = 100 * (now - before) / before`, and the
headline reads `WISMO tickets per 100 shipments: 8.0 → 4.0 (-50%)` (one decimal, the change
rounded to a whole percent, signed with a Unicode minus or a plus); without a baseline
or without shipments it says so.

Carriers, per carrier x service
-------------------------------
Over the read-model rows registered in the window, grouped by carrier (`unknown` when none)
and service (the shipping speed: standard, express):

* `transit_days`: for each delivered row, `delivered_at - start` in days, where `start` is
  the first carrier scan (`first_scan_at`) else the registration (`registered_at`); rows
  whose start is missing or after the delivery are left out. `transit_p50_days` and
  `transit_p90_days` are nearest-rank percentiles (as above); the histogram counts them in
  `TRANSIT_BINS` (lower bound included, upper excluded).
* `exception_rate = 100 * rows with at least one exception episode / rows`;
* `lost_rate = 100 * rows declared lost at some point / rows`;
* `on_time`: delivered rows with an estimate whose delivery date in the customer's time zone
  (the document's `timezone`) is on or before `estimated_delivery`; `late`: after it;
  `no_estimate`: delivered rows without one; `on_time_rate = 100 * on_time / (on_time +
  late)`.

Baseline CSV (`trackflow baseline import`)
------------------------------------------
A header row naming `week_start,shipments,wismo_tickets` (any order; other columns are
ignored), then one row per week: `week_start` the ISO date of the week's Monday,
`shipments` and `wismo_tickets` whole numbers >= 0. A week may appear once. Any bad row is
refused with its line number (`parse_baseline_csv`).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

from trackflow.models import Model, Trigger
from trackflow.shipment_state import ShipmentProjection

MAX_PERIOD_DAYS = 731
OPT_OUT_REASONS = frozenset({"sms_stop", "unsubscribed"})
BOUNCED = frozenset({"bounced", "dropped", "undelivered"})
FAILED_DELIVERY = frozenset({"failed", "canceled"})
TRANSIT_BINS: tuple[tuple[float, float | None, str], ...] = (
    (0, 1, "<1 d"),
    (1, 2, "1-2 d"),
    (2, 3, "2-3 d"),
    (3, 5, "3-5 d"),
    (5, 7, "5-7 d"),
    (7, 10, "7-10 d"),
    (10, None, "10+ d"),
)
BASELINE_COLUMNS = ("week_start", "shipments", "wismo_tickets")
_TRIGGER_ORDER = {trigger.value: rank for rank, trigger in enumerate(Trigger)}


# --- the records read (the ledger's rows fit these) ------------------------------------------


class MessageRow(Protocol):
    @property
    def idempotency_key(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def kind(self) -> str | None: ...
    @property
    def trigger(self) -> str | None: ...
    @property
    def channel(self) -> str | None: ...
    @property
    def to(self) -> str | None: ...
    @property
    def transport(self) -> str | None: ...
    @property
    def claimed_at(self) -> datetime | None: ...
    @property
    def sent_at(self) -> datetime | None: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def delivery_status(self) -> str | None: ...
    @property
    def delivered_at(self) -> datetime | None: ...
    @property
    def opened_at(self) -> datetime | None: ...
    @property
    def clicked_at(self) -> datetime | None: ...
    @property
    def decided_at(self) -> datetime | None: ...
    @property
    def held_until(self) -> datetime | None: ...


class TicketRow(Protocol):
    @property
    def received_at(self) -> datetime: ...
    @property
    def intent(self) -> str: ...
    @property
    def already_notified(self) -> bool | None: ...


class BaselineRow(Protocol):
    @property
    def week_start(self) -> date: ...
    @property
    def shipments(self) -> int: ...
    @property
    def wismo_tickets(self) -> int: ...


class VisitRow(Protocol):
    @property
    def message_key(self) -> str | None: ...


@dataclass(frozen=True)
class OptOut:
    """An entry of the merchant's suppression list."""

    channel: str
    address: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class ImportedWeek:
    """One row of a baseline CSV."""

    week_start: date
    shipments: int
    wismo_tickets: int


# --- the figures -----------------------------------------------------------------------------


class Period(Model):
    start: date = Field(description="the first day (`from`), UTC")
    end: date = Field(description="the last day (`to`), included, UTC")

    @property
    def since(self) -> datetime:
        return datetime.combine(self.start, time(), UTC)

    @property
    def until(self) -> datetime:
        return datetime.combine(self.end + timedelta(days=1), time(), UTC)

    def holds(self, at: datetime | None) -> bool:
        return at is not None and self.since <= at < self.until


class PeriodError(ValueError):
    """A period that cannot be measured, and why."""


def period(start: date | str | None, end: date | str | None, today: date) -> Period:
    """The period asked for: ISO dates, `to` defaulting to `today`, `from` to the Monday 8
    weeks before the week of `to` (8 whole weeks, then the week of `to`)."""
    last = _date(end, "to") if end is not None else today
    first = _date(start, "from") if start is not None else monday(last) - timedelta(weeks=8)
    if first > last:
        raise PeriodError(f"from ({first}) is after to ({last})")
    if (last - first).days + 1 > MAX_PERIOD_DAYS:
        raise PeriodError(f"a period spans at most {MAX_PERIOD_DAYS} days")
    return Period(start=first, end=last)


def _date(value: date | str, name: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise PeriodError(f"{name} must be an ISO date (YYYY-MM-DD), got {value!r}") from None


class MessageFigures(Model):
    trigger: str
    channel: str
    decided: int = 0
    sent: int = 0
    shadow: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    bounced: int = 0
    failed: int = 0
    uncertain: int = 0
    suppressed: int = 0
    opted_out: int = 0


class Latency(Model):
    messages: int
    p50_seconds: float | None
    p95_seconds: float | None
    held: int
    held_share: float | None


class WismoWeek(Model):
    week_start: date
    shadow: bool = Field(description="a shadow-mode week (part of the shadow baseline)")
    shipments: int
    tickets: int
    notified: int
    not_notified: int
    unknown: int
    per_100: float | None
    notified_per_100: float | None
    not_notified_per_100: float | None
    unknown_per_100: float | None


class Baseline(Model):
    source: Literal["imported", "shadow", "none"]
    weeks: list[date]
    shipments: int
    tickets: int
    per_100: float | None


class Wismo(Model):
    weeks: list[WismoWeek]
    baseline: Baseline
    now_shipments: int
    now_tickets: int
    now_per_100: float | None
    change_percent: float | None
    headline: str


class TransitBin(Model):
    label: str
    count: int


class CarrierFigures(Model):
    carrier: str
    service: str
    shipments: int
    delivered: int
    transit_days: list[float] = Field(
        exclude=True, description="each delivered shipment's transit (not serialised)"
    )
    transit_p50_days: float | None
    transit_p90_days: float | None
    histogram: list[TransitBin]
    exceptions: int
    exception_rate: float | None
    lost: int
    lost_rate: float | None
    on_time: int
    late: int
    no_estimate: int
    on_time_rate: float | None


class Summary(Model):
    period: Period
    generated_at: datetime
    messages: list[MessageFigures]
    opt_outs_unattributed: int
    latency: Latency
    wismo: Wismo
    carriers: list[CarrierFigures]


# --- arithmetic ------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest rank: the value at rank ceil(p/100 * n) of the sorted values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def per_100(count: int, of: int) -> float | None:
    return None if of == 0 else 100 * count / of


def normalise_address(channel: str, address: str) -> str:
    address = address.strip()
    return address.lower() if channel == "email" else re.sub(r"[\s\-().]", "", address)


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def week_of(at: datetime) -> date:
    return monday(at.astimezone(UTC).date())


# --- messages --------------------------------------------------------------------------------


def _row_time(row: MessageRow) -> datetime | None:
    return row.sent_at or row.claimed_at


def _live_sent(row: MessageRow) -> bool:
    return row.status == "sent" and row.transport != "shadow"


def _messages(rows: Iterable[MessageRow]) -> list[MessageRow]:
    return [r for r in rows if r.kind in (None, "message") and r.trigger and r.channel]


def message_figures(
    rows: Sequence[MessageRow],
    visits: Sequence[VisitRow],
    opt_outs: Sequence[OptOut],
    window: Period,
) -> tuple[list[MessageFigures], int]:
    """The per trigger x channel counts, and the opt-outs no message explains."""
    messages = _messages(rows)
    visited = {v.message_key for v in visits if v.message_key}
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in messages:
        if not window.holds(_row_time(row)):
            continue
        c = counts[(str(row.trigger), str(row.channel))]
        c["decided"] += 1
        status = row.status
        if status == "sent" and row.transport == "shadow":
            c["shadow"] += 1
        elif status == "suppressed" or (row.transport or "").startswith("suppressed:"):
            c["suppressed"] += 1
        elif status == "failed":
            c["failed"] += 1
        elif status == "uncertain":
            c["uncertain"] += 1
        elif status == "sent":
            c["sent"] += 1
            delivery = row.delivery_status
            c["delivered"] += row.delivered_at is not None or delivery == "delivered"
            c["opened"] += row.opened_at is not None
            c["clicked"] += row.clicked_at is not None or row.idempotency_key in visited
            c["bounced"] += delivery in BOUNCED
            c["failed"] += delivery in FAILED_DELIVERY
    unattributed = 0
    sent_to: dict[tuple[str, str], list[MessageRow]] = defaultdict(list)
    for row in messages:
        if _live_sent(row) and row.to and row.sent_at is not None:
            sent_to[(str(row.channel), normalise_address(str(row.channel), row.to))].append(row)
    for opt_out in opt_outs:
        if opt_out.reason not in OPT_OUT_REASONS or not window.holds(opt_out.at):
            continue
        address = normalise_address(opt_out.channel, opt_out.address)
        before = [
            r
            for r in sent_to.get((opt_out.channel, address), [])
            if r.sent_at is not None and r.sent_at <= opt_out.at
        ]
        if not before:
            unattributed += 1
            continue
        last = max(before, key=lambda r: (r.sent_at or opt_out.at, r.idempotency_key))
        counts[(str(last.trigger), str(last.channel))]["opted_out"] += 1
    figures = [
        MessageFigures(trigger=trigger, channel=channel, **dict(c))
        for (trigger, channel), c in counts.items()
    ]
    figures.sort(
        key=lambda f: (_TRIGGER_ORDER.get(f.trigger, len(_TRIGGER_ORDER)), f.trigger, f.channel)
    )
    return figures, unattributed


def latency(rows: Sequence[MessageRow], window: Period) -> Latency:
    timed = [
        r
        for r in _messages(rows)
        if _live_sent(r) and window.holds(r.sent_at) and r.decided_at and r.sent_at
    ]
    seconds = [
        (r.sent_at - r.decided_at).total_seconds()
        for r in timed
        if r.sent_at is not None and r.decided_at is not None
    ]
    held = sum(1 for r in timed if r.held_until is not None)
    return Latency(
        messages=len(seconds),
        p50_seconds=percentile(seconds, 50),
        p95_seconds=percentile(seconds, 95),
        held=held,
        held_share=held / len(seconds) if seconds else None,
    )


# --- WISMO -----------------------------------------------------------------------------------


def _registered(row: ShipmentProjection) -> datetime:
    return row.registered_at or row.updated_at


def shadow_weeks(rows: Sequence[MessageRow]) -> list[date]:
    """The leading run of weeks whose sent message rows are all shadow-mode rows."""
    by_week: dict[date, list[MessageRow]] = defaultdict(list)
    for row in _messages(rows):
        if row.status == "sent" and row.sent_at is not None:
            by_week[week_of(row.sent_at)].append(row)
    if not by_week:
        return []
    weeks: list[date] = []
    week = min(by_week)
    while week in by_week and all(r.transport == "shadow" for r in by_week[week]):
        weeks.append(week)
        week += timedelta(days=7)
    return weeks


def _wismo(tickets: Iterable[TicketRow]) -> list[TicketRow]:
    return [t for t in tickets if t.intent == "wismo"]


def _headline(before: float | None, now: float | None, change: float | None) -> str:
    label = "WISMO tickets per 100 shipments"
    if now is None:
        return f"{label}: no shipments in the period"
    if before is None:
        return f"{label}: now {now:.1f} (no baseline: import one, or run in shadow mode first)"
    if change is None:
        return f"{label}: {before:.1f} → {now:.1f}"
    whole = round(change)
    sign = "\u2212" if whole < 0 else "+" if whole > 0 else "±"
    return f"{label}: {before:.1f} → {now:.1f} ({sign}{abs(whole)}%)"


def wismo(
    shipments: Sequence[ShipmentProjection],
    tickets: Sequence[TicketRow],
    messages: Sequence[MessageRow],
    imported: Sequence[BaselineRow],
    window: Period,
) -> Wismo:
    asked = _wismo(tickets)
    shadow = shadow_weeks(messages)
    weeks: list[WismoWeek] = []
    week = monday(window.start)
    while week <= window.end:
        inside = [
            t for t in asked if window.holds(t.received_at) and week_of(t.received_at) == week
        ]
        count = sum(
            1 for s in shipments if window.holds(_registered(s)) and week_of(_registered(s)) == week
        )
        notified = sum(1 for t in inside if t.already_notified is True)
        not_notified = sum(1 for t in inside if t.already_notified is False)
        unknown = len(inside) - notified - not_notified
        weeks.append(
            WismoWeek(
                week_start=week,
                shadow=week in shadow,
                shipments=count,
                tickets=len(inside),
                notified=notified,
                not_notified=not_notified,
                unknown=unknown,
                per_100=per_100(len(inside), count),
                notified_per_100=per_100(notified, count),
                not_notified_per_100=per_100(not_notified, count),
                unknown_per_100=per_100(unknown, count),
            )
        )
        week += timedelta(days=7)
    if imported:
        base_shipments = sum(w.shipments for w in imported)
        base_tickets = sum(w.wismo_tickets for w in imported)
        baseline = Baseline(
            source="imported",
            weeks=sorted(w.week_start for w in imported),
            shipments=base_shipments,
            tickets=base_tickets,
            per_100=per_100(base_tickets, base_shipments),
        )
    elif shadow:
        base_shipments = sum(1 for s in shipments if week_of(_registered(s)) in shadow)
        base_tickets = sum(1 for t in asked if week_of(t.received_at) in shadow)
        baseline = Baseline(
            source="shadow",
            weeks=shadow,
            shipments=base_shipments,
            tickets=base_tickets,
            per_100=per_100(base_tickets, base_shipments),
        )
    else:
        baseline = Baseline(source="none", weeks=[], shipments=0, tickets=0, per_100=None)
    now_shipments = sum(w.shipments for w in weeks if not w.shadow)
    now_tickets = sum(w.tickets for w in weeks if not w.shadow)
    now = per_100(now_tickets, now_shipments)
    before = baseline.per_100
    change = 100 * (now - before) / before if now is not None and before else None
    return Wismo(
        weeks=weeks,
        baseline=baseline,
        now_shipments=now_shipments,
        now_tickets=now_tickets,
        now_per_100=now,
        change_percent=change,
        headline=_headline(before, now, change),
    )


# --- carriers --------------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def transit_days(row: ShipmentProjection) -> float | None:
    start = row.first_scan_at or row.registered_at
    if row.delivered_at is None or start is None or start > row.delivered_at:
        return None
    return (row.delivered_at - start).total_seconds() / 86400


def histogram(days: Sequence[float]) -> list[TransitBin]:
    return [
        TransitBin(
            label=label,
            count=sum(1 for d in days if low <= d and (high is None or d < high)),
        )
        for low, high, label in TRANSIT_BINS
    ]


def carrier_figures(
    shipments: Sequence[ShipmentProjection], window: Period
) -> list[CarrierFigures]:
    groups: dict[tuple[str, str], list[ShipmentProjection]] = defaultdict(list)
    for row in shipments:
        if window.holds(_registered(row)):
            carrier = row.document.carrier or "unknown"
            groups[(carrier, row.shipping_speed.value)].append(row)
    figures: list[CarrierFigures] = []
    for (carrier, service), rows in sorted(groups.items()):
        delivered = [r for r in rows if r.delivered_at is not None]
        days = [d for d in (transit_days(r) for r in delivered) if d is not None]
        on_time = late = no_estimate = 0
        for row in delivered:
            if row.estimated_delivery is None or row.delivered_at is None:
                no_estimate += 1
                continue
            local = row.delivered_at.astimezone(_zone(row.document.timezone)).date()
            if local <= row.estimated_delivery:
                on_time += 1
            else:
                late += 1
        exceptions = sum(1 for r in rows if r.exception_episodes > 0)
        lost = sum(1 for r in rows if r.lost)
        figures.append(
            CarrierFigures(
                carrier=carrier,
                service=service,
                shipments=len(rows),
                delivered=len(delivered),
                transit_days=sorted(days),
                transit_p50_days=percentile(days, 50),
                transit_p90_days=percentile(days, 90),
                histogram=histogram(days),
                exceptions=exceptions,
                exception_rate=per_100(exceptions, len(rows)),
                lost=lost,
                lost_rate=per_100(lost, len(rows)),
                on_time=on_time,
                late=late,
                no_estimate=no_estimate,
                on_time_rate=per_100(on_time, on_time + late),
            )
        )
    return figures


# --- everything --------------------------------------------------------------------------


def summarise(
    window: Period,
    now: datetime,
    *,
    messages: Sequence[MessageRow],
    shipments: Sequence[ShipmentProjection],
    tickets: Sequence[TicketRow],
    baseline: Sequence[BaselineRow] = (),
    visits: Sequence[VisitRow] = (),
    opt_outs: Sequence[OptOut] = (),
) -> Summary:
    figures, unattributed = message_figures(messages, visits, opt_outs, window)
    return Summary(
        period=window,
        generated_at=now,
        messages=figures,
        opt_outs_unattributed=unattributed,
        latency=latency(messages, window),
        wismo=wismo(shipments, tickets, messages, baseline, window),
        carriers=carrier_figures(shipments, window),
    )


# --- the baseline CSV ------------------------------------------------------------------------


class BaselineCsvError(ValueError):
    """A baseline file that cannot be imported; the message names the line."""


def parse_baseline_csv(text: str) -> list[ImportedWeek]:
    """The weeks of a baseline CSV (see the module's docstring), or the first bad line."""
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    weeks: dict[date, ImportedWeek] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip().lstrip("\ufeff").lower() for cell in row]
            missing = [c for c in BASELINE_COLUMNS if c not in header]
            if missing:
                raise BaselineCsvError(
                    f"line {line}: the header must name {','.join(BASELINE_COLUMNS)} "
                    f"(missing: {', '.join(missing)})"
                )
            continue
        if len(row) < len(header):
            raise BaselineCsvError(
                f"line {line}: {len(row)} fields, the header names {len(header)}"
            )
        cells = {name: row[i].strip() for i, name in enumerate(header)}
        week = _baseline_cell_date(cells["week_start"], line)
        if week in weeks:
            raise BaselineCsvError(f"line {line}: week {week} appears twice")
        weeks[week] = ImportedWeek(
            week_start=week,
            shipments=_baseline_cell_count(cells["shipments"], "shipments", line),
            wismo_tickets=_baseline_cell_count(cells["wismo_tickets"], "wismo_tickets", line),
        )
    if header is None:
        raise BaselineCsvError(
            f"line 1: empty file: expected a header {','.join(BASELINE_COLUMNS)}"
        )
    if not weeks:
        raise BaselineCsvError("no weeks after the header")
    return sorted(weeks.values(), key=lambda w: w.week_start)


def _baseline_cell_date(value: str, line: int) -> date:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise BaselineCsvError(
            f"line {line}: week_start {value!r} is not an ISO date (YYYY-MM-DD)"
        ) from None
    if day.weekday() != 0:
        raise BaselineCsvError(
            f"line {line}: week_start {day} is a {day:%A}, not a Monday (that week's Monday "
            f"is {monday(day)})"
        )
    return day


def _baseline_cell_count(value: str, name: str, line: int) -> int:
    if not re.fullmatch(r"[0-9]+", value):
        raise BaselineCsvError(f"line {line}: {name} {value!r} is not a whole number >= 0")
    return int(value)
