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

import html
import io
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from storage import Ledger
from trackflow import csv_cells
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


# --- HTML ------------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


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


def _svg(width: int, height: int, label: str, body: Sequence[str]) -> str:
    return (
        f'<svg viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{_e(label)}">' + "".join(body) + "</svg>"
    )


def _nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least `raw`."""
    power: float = 10.0 ** math.floor(math.log10(raw))
    return next(float(m * power) for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def wismo_chart(summary: Summary) -> str:
    """Stacked bars per week (notified / not notified / unknown, per 100 shipments), the
    baseline as a dashed line; shadow-mode weeks drawn grey."""
    weeks = summary.wismo.weeks
    base = summary.wismo.baseline.per_100
    width, height, left, bottom, top = 720, 260, 44, 40, 16
    plot_h = height - bottom - top
    step = _nice_step(max([w.per_100 or 0 for w in weeks] + [base or 0, 1.0]) * 1.1 / 4)
    peak = step * 4
    slot = (width - left - 10) / max(len(weeks), 1)
    body: list[str] = []
    for i in range(5):
        value = peak * i / 4
        y = top + plot_h - plot_h * i / 4
        body.append(
            f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{PALETTE["grid"]}"/><text x="{left - 6}" y="{y + 4:.1f}" font-size="11" '
            f'text-anchor="end" fill="{PALETTE["muted"]}">{value:g}</text>'
        )
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
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{_e(week.week_start)} {name.replace("_", " ")}: '
                f"{_num(share)} per 100</title></rect>"
            )
        label = week.week_start.strftime("%d %b")
        body.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 16}" font-size="11" '
            f'text-anchor="middle" fill="{PALETTE["ink"]}">{_e(label)}</text>'
        )
        if week.per_100 is not None:
            body.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{y - 4:.1f}" font-size="10" '
                f'text-anchor="middle" fill="{PALETTE["ink"]}">{week.per_100:.1f}</text>'
            )
    if base is not None:
        y = top + plot_h - plot_h * base / peak
        body.append(
            f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{PALETTE["baseline"]}" stroke-width="2" stroke-dasharray="6 4"/>'
            f'<text x="{width - 12}" y="{y - 5:.1f}" font-size="11" text-anchor="end" '
            f'fill="{PALETTE["baseline"]}">baseline {base:.1f}</text>'
        )
    return _svg(width, height, "WISMO tickets per 100 shipments by week", body)


def histogram_chart(labels: Sequence[str], counts: Sequence[int], title: str) -> str:
    width, height, bottom, top = 340, 150, 28, 14
    plot_h = height - bottom - top
    peak = max([*counts, 1])
    slot = (width - 10) / max(len(counts), 1)
    body: list[str] = []
    for i, (label, count) in enumerate(zip(labels, counts, strict=True)):
        h = plot_h * count / peak
        x = 5 + slot * i + slot * 0.1
        y = top + plot_h - h
        body.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.8:.1f}" height="{h:.1f}" '
            f'fill="{PALETTE["bar"]}"><title>{_e(label)}: {count}</title></rect>'
            f'<text x="{x + slot * 0.4:.1f}" y="{height - bottom + 14}" font-size="10" '
            f'text-anchor="middle" fill="{PALETTE["ink"]}">{_e(label)}</text>'
        )
        if count:
            body.append(
                f'<text x="{x + slot * 0.4:.1f}" y="{y - 3:.1f}" font-size="10" '
                f'text-anchor="middle" fill="{PALETTE["ink"]}">{count}</text>'
            )
    return _svg(width, height, title, body)


def funnel_chart(summary: Summary) -> str:
    """Horizontal bars per trigger x channel: sent, delivered, opened, clicked."""
    rows = [m for m in summary.messages if m.sent]
    stages = [("sent", "#52606d"), ("delivered", "#2f855a"), ("opened", "#3e7bfa")]
    stages.append(("clicked", "#9f3ec7"))
    bar_h, gap, left, width = 9, 14, 170, 720
    height = max(len(rows), 1) * (len(stages) * bar_h + gap) + 10
    peak = max([m.sent for m in rows] + [1])
    body: list[str] = []
    y = 6.0
    for m in rows:
        body.append(
            f'<text x="{left - 8}" y="{y + bar_h * 2 + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="{PALETTE["ink"]}">{_e(m.trigger.replace("_", " "))} · {_e(m.channel)}</text>'
        )
        for stage, colour in stages:
            value = int(getattr(m, stage))
            w = (width - left - 60) * value / peak
            body.append(
                f'<rect x="{left}" y="{y:.1f}" width="{w:.1f}" height="{bar_h - 1}" '
                f'fill="{colour}"><title>{stage}: {value}</title></rect>'
                f'<text x="{left + w + 4:.1f}" y="{y + bar_h - 1:.1f}" font-size="9" '
                f'fill="{PALETTE["muted"]}">{stage} {value}</text>'
            )
            y += bar_h
        y += gap
    return _svg(width, int(height), "messages sent, delivered, opened and clicked", body)


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    # Scrolls sideways on its own on a narrow screen (the page itself never does).
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _share(count: int, of: int) -> str:
    return "-" if of == 0 else f"{100 * count / of:.0f}%"


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2933;
margin:0 auto;max-width:960px;padding:24px;line-height:1.45}
h1{font-size:1.5rem;margin:0 0 4px}h2{font-size:1.15rem;margin:32px 0 8px}
.muted{color:#7b8794}.headline{font-size:1.35rem;font-weight:600;padding:16px;
border-radius:8px;background:#f0f4f8;margin:16px 0}
.scroll{overflow-x:auto;margin:8px 0}
table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{border-bottom:1px solid #e4e7eb;padding:4px 6px;text-align:right}
th:first-child,td:first-child{text-align:left;white-space:nowrap}th{background:#f5f7fa}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:16px}
.legend span{display:inline-block;margin-right:14px;font-size:.8rem}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
"""


def render_html(summary: Summary, store_name: str) -> str:
    wismo = summary.wismo
    base = wismo.baseline
    p = summary.period
    base_words = {
        "imported": f"imported by the merchant ({len(base.weeks)} weeks)",
        "shadow": f"the first {len(base.weeks)} week(s) run in shadow mode",
        "none": "none yet",
    }[base.source]
    legend = "".join(
        f'<span><i style="background:{PALETTE[k]}"></i>{_e(text)}</span>'
        for k, text in (
            ("notified", "already notified"),
            ("not_notified", "not notified"),
            ("unknown", "no shipment found"),
            ("shadow", "shadow-mode week"),
        )
    )
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
    histograms = "".join(
        f"<div><strong>{_e(c.carrier)} · {_e(c.service)}</strong> "
        f'<span class="muted">({len(c.transit_days)} delivered with a transit time)</span>'
        + histogram_chart(
            [b.label for b in c.histogram],
            [b.count for b in c.histogram],
            f"transit time, {c.carrier} {c.service}",
        )
        + "</div>"
        for c in summary.carriers
    )
    lat = summary.latency
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(store_name)} — trackflow report {p.start} to {p.end}</title>
<style>{STYLE}</style></head><body>
<h1>{_e(store_name)}: what proactive tracking did</h1>
<div class="muted">{p.start} to {p.end} (UTC days) · generated
{summary.generated_at:%Y-%m-%d %H:%M} UTC by trackflow</div>
<div class="headline" id="headline">{_e(wismo.headline)}</div>
<p>Baseline: {_e(base_words)}{
        f", {base.tickets} WISMO tickets for {base.shipments} shipments" if base.shipments else ""
    }. Now: {wismo.now_tickets} WISMO tickets for {wismo.now_shipments} shipments
(shadow-mode weeks left out).</p>

<h2>WISMO tickets per 100 shipments, by week</h2>
<div class="legend">{legend}</div>
{wismo_chart(summary)}
{
        _table(
            [
                "week",
                "shipments",
                "WISMO tickets",
                "per 100",
                "already notified",
                "not notified",
                "unknown",
            ],
            week_rows,
        )
    }

<h2>Messages, by trigger and channel</h2>
{funnel_chart(summary)}
{
        _table(
            [
                "trigger",
                "channel",
                "decided",
                "sent",
                "delivered",
                "opened",
                "clicked",
                "click rate",
                "bounced",
                "failed",
                "suppressed",
                "STOP / unsubscribe",
                "shadow",
            ],
            message_rows,
        )
    }
<p class="muted">Opt-outs no message explains: {summary.opt_outs_unattributed}.</p>

<h2>Carrier event → message sent</h2>
<p>{lat.messages} messages: median {_duration(lat.p50_seconds)}, 95th percentile
{_duration(lat.p95_seconds)}; {lat.held} held by quiet hours
({_num(None if lat.held_share is None else 100 * lat.held_share, 0, "%")}).</p>

<h2>Carriers</h2>
{
        _table(
            [
                "carrier",
                "service",
                "shipments",
                "delivered",
                "transit p50",
                "transit p90",
                "exceptions",
                "lost",
                "on time",
                "late",
                "on time rate",
            ],
            carrier_rows,
        )
    }
<div class="grid">{histograms}</div>
<p class="muted">Figures and their exact rules: trackflow.insight. CSV alongside this file.</p>
</body></html>
"""


def write_report(summary: Summary, out: Path, store_name: str) -> tuple[Path, Path]:
    """`out` (HTML) and the CSV next to it (same name, `.csv`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path = out.with_suffix(".csv")
    if csv_path == out:
        csv_path = out.with_suffix(".figures.csv")
    out.write_text(render_html(summary, store_name), encoding="utf-8")
    csv_path.write_text(render_csv(summary), encoding="utf-8")
    return out, csv_path
