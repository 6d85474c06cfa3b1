"""The merchant's figures (trackflow.insight) for a period, read from the ledger database (no
Temporal call): `GET /v1/metrics/summary` as JSON, `GET /v1/metrics/report` as the same
self-contained HTML page `trackflow report` writes, `GET /v1/metrics/report.csv` as its CSV.
Bearer token as every /v1 route."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from starters.api.dependencies import AppLedger, Authorized, Context
from starters.api.json_body import StrictJsonRoute
from starters.report import load_summary, render_csv, render_html
from trackflow.insight import Period, PeriodError, Summary, period

router = APIRouter(route_class=StrictJsonRoute, dependencies=[Authorized])

BAD_PERIOD: dict[int | str, dict[str, Any]] = {
    422: {"description": "`from` or `to` is not an ISO date, or the period is bad"}
}
# The report is one file: inline style and SVG, nothing fetched, no script.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"


def _window(
    start: Annotated[
        str | None,
        Query(
            alias="from",
            max_length=40,
            description="first day, ISO date (UTC); default: 8 weeks before `to`",
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(
            alias="to",
            max_length=40,
            description="last day, included, ISO date (UTC); default: today",
        ),
    ] = None,
) -> Period:
    try:
        return period(start, end, datetime.now(UTC).date())
    except PeriodError as error:
        raise HTTPException(422, str(error)) from None


Window = Annotated[Period, Depends(_window)]


async def _summary(context: Context, ledger: AppLedger, window: Window) -> Summary:
    return await load_summary(ledger, context.settings.store_name, window, datetime.now(UTC))


Figures = Annotated[Summary, Depends(_summary)]


@router.get("/v1/metrics/summary", response_model=Summary, responses=BAD_PERIOD)
async def metrics_summary(summary: Figures) -> Summary:
    """Messages per trigger x channel, event-to-send latency, WISMO tickets per 100 shipments
    by week against the baseline (and the headline), carriers' transit, exception, lost and
    on-time figures. Each figure's rule: the `trackflow.insight` docstring. A period spans at
    most 731 days (`MAX_PERIOD_DAYS`)."""
    return summary


@router.get(
    "/v1/metrics/report",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}}, **BAD_PERIOD},
)
async def metrics_report(context: Context, summary: Figures) -> HTMLResponse:
    """The figures of `/v1/metrics/summary` as the page `trackflow report` writes: one
    self-contained HTML file (charts as inline SVG, no script, nothing fetched)."""
    return HTMLResponse(
        render_html(summary, context.settings.store_name),
        headers={"Content-Security-Policy": REPORT_CSP, "Cache-Control": "no-store"},
    )


@router.get(
    "/v1/metrics/report.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, **BAD_PERIOD},
)
async def metrics_report_csv(summary: Figures) -> Response:
    """The report's CSV (as `trackflow report` writes next to the page): one figure a line,
    columns `section,group,metric,value` (described in `starters.report`)."""
    p = summary.period
    return Response(
        render_csv(summary),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="trackflow-report-{p.start}-{p.end}.csv"',
            "Cache-Control": "no-store",
        },
    )
