"""The merchant's report: the figures of `trackflow.insight` read from the ledger database,
as a self-contained HTML page (charts drawn as inline SVG, no script, no external asset) and
a CSV alongside (`trackflow report --from --to --out report.html`), and as JSON
(`GET /v1/metrics/summary`).

The CSV is long-form, one figure a line, columns `section,group,metric,value`:

* `messages`, group `<trigger>/<channel>`: decided, sent, shadow, delivered, opened, clicked,
  bounced, failed, uncertain, suppressed, opted_out; `opt_outs`, group `unattributed`;
* `latency`, group `sent`: messages, p50_seconds, p95_seconds, held, held_share;
* `wismo_week`, group `<Monday>`: shadow (0/1), shipments, tickets, notified, not_notified,
  unknown, per_100, notified_per_100, not_notified_per_100, unknown_per_100;
* `wismo_baseline`, group `imported`, `shadow` or `none`: weeks, shipments, tickets,
  per_100; `wismo_now`, group `period`: shipments, tickets, per_100, change_percent;
* `carrier`, group `<carrier>/<service>`: shipments, delivered, transit_p50_days,
  transit_p90_days, exceptions, exception_rate, lost, lost_rate, on_time, late, no_estimate,
  on_time_rate; `carrier_transit`, same group, one metric per histogram bin (`<1 d`, ...).

An empty value is a figure that does not exist (a rate over nothing). Rates are percentages
(0-100) except `held_share` (0-1).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from activities.ledger import Ledger
from trackflow import csv_cells
from trackflow.brand import Brand
from trackflow.insight import MessageRow, OptOut, Period, Summary, summarise
from trackflow.projection import as_of

PALETTE = {
    "ink": "#1f2933",
    "muted": "#7b8794",
    "grid": "#e4e7eb",
    "notified": "#3e7bfa",
    "not_notified": "#f0883e",
    "unknown": "#9aa5b1",
    "shadow": "#cbd2d9",
    "baseline": "#c62828",
    "bar": "#2f855a",
}


# --- reading the ledger ----------------------------------------------------------------------


async def load_summary(ledger: Ledger, merchant: str, window: Period, now: datetime) -> Summary:
    """Every figure for the period, from the rows the ledger database holds."""
    return summarise(
        window,
        now,
        messages=await message_rows(ledger),
        shipments=[as_of(row, now) for row in await ledger.projections()],
        tickets=await ledger.tickets(),
        baseline=await ledger.baseline(),
        visits=await ledger.page_visits(window.since),
        opt_outs=await opt_outs(ledger, merchant),
    )


async def message_rows(ledger: Ledger) -> Sequence[MessageRow]:
    """The customer-message rows (a read-only ledger of an earlier version reads too)."""
    return [row for row in await ledger.states() if row.kind == "message"]


async def opt_outs(ledger: Ledger, merchant: str) -> list[OptOut]:
    """The merchant's suppression list."""
    return [
        OptOut(channel=s.channel, address=s.address, reason=s.reason, at=s.at)
        for s in await ledger.suppressions(merchant)
    ]


# --- CSV -------------------------------------------------------------------------------------

CSV_COLUMNS = ("section", "group", "metric", "value")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def csv_rows(summary: Summary) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []

    def add(section: str, group: str, **figures: object) -> None:
        rows.extend((section, group, name, _cell(value)) for name, value in figures.items())

    for m in summary.messages:
        add("messages", f"{m.trigger}/{m.channel}", **m.model_dump(exclude={"trigger", "channel"}))
    add("opt_outs", "unattributed", count=summary.opt_outs_unattributed)
    add("latency", "sent", **summary.latency.model_dump())
    wismo = summary.wismo
    for week in wismo.weeks:
        add("wismo_week", week.week_start.isoformat(), **week.model_dump(exclude={"week_start"}))
    base = wismo.baseline
    add(
        "wismo_baseline",
        base.source,
        weeks=len(base.weeks),
        shipments=base.shipments,
        tickets=base.tickets,
        per_100=base.per_100,
    )
    add(
        "wismo_now",
        "period",
        shipments=wismo.now_shipments,
        tickets=wismo.now_tickets,
        per_100=wismo.now_per_100,
        change_percent=wismo.change_percent,
    )
    for c in summary.carriers:
        group = f"{c.carrier}/{c.service}"
        add(
            "carrier",
            group,
            **c.model_dump(exclude={"carrier", "service", "transit_days", "histogram"}),
        )
        add("carrier_transit", group, **{b.label: b.count for b in c.histogram})
    return rows


def render_csv(summary: Summary) -> str:
    out = io.StringIO()
    writer = csv_cells.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_rows(summary))
    return out.getvalue()


# --- HTML (starters/templates/report/) -----------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """One SVG element of a chart: `rect`, `line` or `text`, with its attributes, its text
    and its tooltip (`<title>`); the template writes it, escaped."""

    tag: str
    attrs: dict[str, object]
    text: str = ""
    title: str = ""


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    label: str
    shapes: list[Shape]


def _num(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least `raw`."""
    power: float = 10.0 ** math.floor(math.log10(raw))
    return next(float(m * power) for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def _text(x: float, y: float, text: object, size: int, fill: str, anchor: str = "") -> Shape:
    attrs: dict[str, object] = {"x": f"{x:.1f}", "y": f"{y:.1f}", "font-size": size}
    if anchor:
        attrs["text-anchor"] = anchor
    return Shape("text", attrs | {"fill": fill}, text=str(text))


def _rect(x: float, y: float, w: float, h: float, fill: str, title: str) -> Shape:
    attrs: dict[str, object] = {"x": f"{x:.1f}", "y": f"{y:.1f}", "width": f"{w:.1f}"}
    return Shape("rect", attrs | {"height": f"{h:.1f}", "fill": fill}, title=title)


def wismo_chart(summary: Summary) -> Chart:
    """Stacked bars per week (notified / not notified / unknown, per 100 shipments), the
    baseline as a dashed line; shadow-mode weeks drawn grey."""
    weeks = summary.wismo.weeks
    base = summary.wismo.baseline.per_100
    width, height, left, bottom, top = 720, 260, 44, 40, 16
    plot_h = height - bottom - top
    step = _nice_step(max([w.per_100 or 0 for w in weeks] + [base or 0, 1.0]) * 1.1 / 4)
    peak = step * 4
    slot = (width - left - 10) / max(len(weeks), 1)
    body: list[Shape] = []
    for i in range(5):
        value = peak * i / 4
        y = top + plot_h - plot_h * i / 4
        line = {"x1": left, "x2": width - 10, "y1": f"{y:.1f}", "y2": f"{y:.1f}"}
        body.append(Shape("line", line | {"stroke": PALETTE["grid"]}))
        body.append(_text(left - 6, y + 4, f"{value:g}", 11, PALETTE["muted"], "end"))
    for i, week in enumerate(weeks):
        x = left + slot * i + slot * 0.15
        bar_w = slot * 0.7
        y = top + plot_h
        parts = [
            ("notified", week.notified_per_100),
            ("not_notified", week.not_notified_per_100),
            ("unknown", week.unknown_per_100),
        ]
        for name, share in parts:
            h = plot_h * (share or 0) / peak
            colour = PALETTE["shadow"] if week.shadow else PALETTE[name]
            y -= h
            title = f"{week.week_start} {name.replace('_', ' ')}: {_num(share)} per 100"
            body.append(_rect(x, y, bar_w, h, colour, title))
        label = week.week_start.strftime("%d %b")
        body.append(_text(x + bar_w / 2, height - bottom + 16, label, 11, PALETTE["ink"], "middle"))
        if week.per_100 is not None:
            body.append(
                _text(x + bar_w / 2, y - 4, f"{week.per_100:.1f}", 10, PALETTE["ink"], "middle")
            )
    if base is not None:
        y = top + plot_h - plot_h * base / peak
        line = {"x1": left, "x2": width - 10, "y1": f"{y:.1f}", "y2": f"{y:.1f}"}
        dashed = {"stroke": PALETTE["baseline"], "stroke-width": 2, "stroke-dasharray": "6 4"}
        body.append(Shape("line", line | dashed))
        body.append(
            _text(width - 12, y - 5, f"baseline {base:.1f}", 11, PALETTE["baseline"], "end")
        )
    return Chart(width, height, "WISMO tickets per 100 shipments by week", body)


def histogram_chart(labels: Sequence[str], counts: Sequence[int], title: str) -> Chart:
    width, height, bottom, top = 340, 150, 28, 14
    plot_h = height - bottom - top
    peak = max([*counts, 1])
    slot = (width - 10) / max(len(counts), 1)
    body: list[Shape] = []
    for i, (label, count) in enumerate(zip(labels, counts, strict=True)):
        h = plot_h * count / peak
        x = 5 + slot * i + slot * 0.1
        y = top + plot_h - h
        body.append(_rect(x, y, slot * 0.8, h, PALETTE["bar"], f"{label}: {count}"))
        body.append(
            _text(x + slot * 0.4, height - bottom + 14, label, 10, PALETTE["ink"], "middle")
        )
        if count:
            body.append(_text(x + slot * 0.4, y - 3, count, 10, PALETTE["ink"], "middle"))
    return Chart(width, height, title, body)


def funnel_chart(summary: Summary) -> Chart:
    """Horizontal bars per trigger x channel: sent, delivered, opened, clicked."""
    rows = [m for m in summary.messages if m.sent]
    stages = [("sent", "#52606d"), ("delivered", "#2f855a"), ("opened", "#3e7bfa")]
    stages.append(("clicked", "#9f3ec7"))
    bar_h, gap, left, width = 9, 14, 170, 720
    height = max(len(rows), 1) * (len(stages) * bar_h + gap) + 10
    peak = max([m.sent for m in rows] + [1])
    body: list[Shape] = []
    y = 6.0
    for m in rows:
        label = f"{m.trigger.replace('_', ' ')} · {m.channel}"
        body.append(_text(left - 8, y + bar_h * 2 + 4, label, 11, PALETTE["ink"], "end"))
        for stage, colour in stages:
            value = int(getattr(m, stage))
            w = (width - left - 60) * value / peak
            body.append(_rect(left, y, w, bar_h - 1, colour, f"{stage}: {value}"))
            body.append(_text(left + w + 4, y + bar_h - 1, f"{stage} {value}", 9, PALETTE["muted"]))
            y += bar_h
        y += gap
    return Chart(width, int(height), "messages sent, delivered, opened and clicked", body)


def _share(count: int, of: int) -> str:
    return "-" if of == 0 else f"{100 * count / of:.0f}%"


LEGEND = (
    ("notified", "already notified"),
    ("not_notified", "not notified"),
    ("unknown", "no shipment found"),
    ("shadow", "shadow-mode week"),
)
WEEK_COLUMNS = (
    "week", "shipments", "WISMO tickets", "per 100", "already notified", "not notified",
    "unknown",
)  # fmt: skip
MESSAGE_COLUMNS = (
    "trigger", "channel", "decided", "sent", "delivered", "opened", "clicked", "click rate",
    "bounced", "failed", "suppressed", "STOP / unsubscribe", "shadow",
)  # fmt: skip
CARRIER_COLUMNS = (
    "carrier", "service", "shipments", "delivered", "transit p50", "transit p90", "exceptions",
    "lost", "on time", "late", "on time rate",
)  # fmt: skip


def render_html(summary: Summary, brand: Brand) -> str:
    wismo = summary.wismo
    base = wismo.baseline
    base_words = {
        "imported": f"imported by the merchant ({len(base.weeks)} weeks)",
        "shadow": f"the first {len(base.weeks)} week(s) run in shadow mode",
        "none": "none yet",
    }[base.source]
    message_rows = [
        (
            m.trigger.replace("_", " "),
            m.channel,
            m.decided,
            m.sent,
            m.delivered,
            m.opened,
            m.clicked,
            _share(m.clicked, m.sent),
            m.bounced,
            m.failed,
            m.suppressed,
            m.opted_out,
            m.shadow,
        )
        for m in summary.messages
    ]
    week_rows = [
        (
            f"{w.week_start:%G-W%V} ({w.week_start:%d %b})" + (" shadow" if w.shadow else ""),
            w.shipments,
            w.tickets,
            _num(w.per_100),
            _num(w.notified_per_100),
            _num(w.not_notified_per_100),
            _num(w.unknown_per_100),
        )
        for w in wismo.weeks
    ]
    carrier_rows = [
        (
            c.carrier,
            c.service,
            c.shipments,
            c.delivered,
            _num(c.transit_p50_days, 1, " d"),
            _num(c.transit_p90_days, 1, " d"),
            _num(c.exception_rate, 1, "%"),
            _num(c.lost_rate, 1, "%"),
            c.on_time,
            c.late,
            _num(c.on_time_rate, 0, "%"),
        )
        for c in summary.carriers
    ]
    histograms = [
        (
            c,
            histogram_chart(
                [b.label for b in c.histogram],
                [b.count for b in c.histogram],
                f"transit time, {c.carrier} {c.service}",
            ),
        )
        for c in summary.carriers
    ]
    lat = summary.latency
    return _env.get_template("report.html").render(
        summary=summary,
        store_name=brand.store_name,
        period=summary.period,
        wismo=wismo,
        base=base,
        base_words=base_words,
        legend=[(PALETTE[key], text) for key, text in LEGEND],
        wismo_chart=wismo_chart(summary),
        week_columns=WEEK_COLUMNS,
        week_rows=week_rows,
        funnel_chart=funnel_chart(summary),
        message_columns=MESSAGE_COLUMNS,
        message_rows=message_rows,
        latency=lat,
        p50=_duration(lat.p50_seconds),
        p95=_duration(lat.p95_seconds),
        held_share=_num(None if lat.held_share is None else 100 * lat.held_share, 0, "%"),
        carrier_columns=CARRIER_COLUMNS,
        carrier_rows=carrier_rows,
        histograms=histograms,
    )


_env = Environment(
    loader=PackageLoader("starters", "templates/report"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def write_report(summary: Summary, out: Path, brand: Brand) -> tuple[Path, Path]:
    """`out` (HTML) and the CSV next to it (same name, `.csv`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path = out.with_suffix(".csv")
    if csv_path == out:
        csv_path = out.with_suffix(".figures.csv")
    out.write_text(render_html(summary, brand), encoding="utf-8")
    csv_path.write_text(render_csv(summary), encoding="utf-8")
    return out, csv_path
