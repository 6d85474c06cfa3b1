"""`/t/<token>`: the shopper's tracking page (trackflow.page), read from the read model.

No authentication (the token is the shopper's link, an HMAC nobody can make up from a
tracking number: trackflow.page_token) and no Temporal call: the row the workflow wrote is
looked up by its token. An unknown token, or a shipment whose tracking ended more than
`TRACKFLOW_TRACKING_PAGE_DAYS` ago, is a plain 404 page that says nothing about which.

Each view is recorded (`page_visits`); a view from a message's link (`?m=<ref>`) names that
message, which is its click. The ledger keeps one per (token, message) per hour and caps the
rows per token (`Ledger.record_page_visit`), so reloads and scanners cannot grow the table.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from starters.api.dependencies import AppLedger, Context
from starters.api.page_headers import shopper_page_headers
from storage import Ledger
from trackflow.messages import DEFAULT_BRAND_COLOR
from trackflow.page import PageBrand, message_ref, not_found_page, render_page, tracking_page
from trackflow.page import expired as page_expired
from trackflow.projection import as_of
from trackflow.settings import Settings
from trackflow.shipment_state import ShipmentProjection

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_REF = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
HEADERS = shopper_page_headers()


def page_brand(settings: Settings) -> PageBrand:
    return PageBrand(
        store_name=settings.store_name,
        color=settings.brand_color or DEFAULT_BRAND_COLOR,
        logo_url=settings.brand_logo_url,
        support_email=settings.contact_email,
        support_phone=settings.support_phone,
        support_url=settings.support_url,
        return_url=settings.return_url,
        resolution_url=settings.resolution_url,
    )


@router.get("/t/{token}", response_class=HTMLResponse)
async def tracking_page_view(
    token: str, context: Context, ledger: AppLedger, m: str | None = None
) -> HTMLResponse:
    settings = context.settings
    now = context.clock()
    row = await ledger.projection_by_page(token) if _TOKEN.match(token) else None
    row = as_of(row, now) if row is not None else None
    if row is None or page_expired(row, settings.tracking_page_days, now):
        return HTMLResponse(not_found_page(), status_code=404, headers=HEADERS)
    await _record_visit(ledger, token, row, m, now)
    brand = page_brand(settings)
    return HTMLResponse(render_page(tracking_page(row, brand, now), brand), headers=HEADERS)


async def _record_visit(
    ledger: Ledger, token: str, row: ShipmentProjection, ref: str | None, now: datetime
) -> None:
    """The view, and the message whose link it came from when `ref` names one of the
    shipment's messages. A failure to record never costs the shopper the page."""
    try:
        key = await _message_key(ledger, row, ref) if ref and _REF.match(ref) else None
        await ledger.record_page_visit(token, key, now)
    except Exception:
        log.warning("tracking page view not recorded", exc_info=True)


async def _message_key(ledger: Ledger, row: ShipmentProjection, ref: str) -> str | None:
    prefix = f"{row.shipment_key}:"
    for state in await ledger.states(row.tracking_number):
        key = state.idempotency_key
        if state.kind == "message" and key.startswith(prefix) and message_ref(key) == ref:
            return key
    return None
