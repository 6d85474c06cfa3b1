"""`GET /v1/metrics/summary`: the merchant's figures (trackflow.insight) for a period, read
from the ledger database (no Temporal call). Bearer token as every /v1 route."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from starters.api.dependencies import AppLedger, Authorized, Context
from starters.api.json_body import StrictJsonRoute
from starters.report import load_summary
from trackflow.insight import PeriodError, Summary, period

router = APIRouter(route_class=StrictJsonRoute, dependencies=[Authorized])


@router.get(
    "/v1/metrics/summary",
    response_model=Summary,
    responses={422: {"description": "`from` or `to` is not an ISO date, or the period is bad"}},
)
async def metrics_summary(
    context: Context,
    ledger: AppLedger,
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
) -> Summary:
    """Messages per trigger x channel, event-to-send latency, WISMO tickets per 100 shipments
    by week against the baseline (and the headline), carriers' transit, exception, lost and
    on-time figures. Each figure's rule: the `trackflow.insight` docstring. A period spans at
    most 731 days (`MAX_PERIOD_DAYS`)."""
    now = datetime.now(UTC)
    try:
        window = period(start, end, now.date())
    except PeriodError as error:
        raise HTTPException(422, str(error)) from None
    return await load_summary(ledger, context.settings.store_name, window, now)
