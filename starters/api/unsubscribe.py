"""`/u/<token>`: the unsubscribe link of every customer email (and its List-Unsubscribe header).

GET shows a page with one button (mail scanners follow links; a GET never unsubscribes);
POST unsubscribes, as the button does and as RFC 8058's one-click `List-Unsubscribe-Post`
does. The token (`trackflow.unsubscribe_token`) names a shipment, encrypted under
TRACKFLOW_UNSUBSCRIBE_SECRET; the addresses its emails went to go on the merchant's
suppression list for email, checked before every send of every shipment. A wrong token is a
plain 404 (it says nothing about why). Old-format links (which showed the tracking number and
order) still work for emails sent within TRACKFLOW_RETENTION_DAYS: the shopper who kept one
can still unsubscribe, and after that the link is as dead as any other wrong token.

The pages carry the tracking page's headers (never cached, no referrer, not indexed).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse

from starters.api.dependencies import AppLedger, Context, merchant_of
from starters.api.page_headers import shopper_page_headers
from trackflow.models import Channel
from trackflow.unsubscribe_token import read_legacy_unsubscribe_token, read_unsubscribe_token

router = APIRouter(include_in_schema=False)
HEADERS = shopper_page_headers(posts_to_itself=True)


async def _recipients(token: str, context: Context, ledger: AppLedger) -> list[str]:
    """The email addresses the token's shipment wrote to; 404 for a token we did not sign."""
    secret = context.settings.unsubscribe_secret
    subject = read_unsubscribe_token(secret, token) if secret else None
    sent_since = None
    if secret and subject is None:
        subject = read_legacy_unsubscribe_token(secret, token)
        sent_since = datetime.now(UTC) - timedelta(days=context.settings.retention_days)
    if subject is None:
        raise HTTPException(404, "Not Found", headers=HEADERS)
    tracking_number = subject.split("/", 1)[0]
    addresses = {
        row.to
        for row in await ledger.states(tracking_number)
        if row.idempotency_key.startswith(f"{subject}:")
        and row.channel == Channel.EMAIL.value
        and row.to
        and (sent_since is None or (row.sent_at is not None and row.sent_at >= sent_since))
    }
    if not addresses:
        raise HTTPException(404, "Not Found", headers=HEADERS)
    return sorted(addresses)


def _masked(address: str) -> str:
    name, _, domain = address.partition("@")
    return f"{name[:1]}{'•' * max(len(name) - 1, 1)}@{domain}"


def _page(store: str, heading: str, text: str, form: bool) -> HTMLResponse:
    button = '<form method="post"><button type="submit">Unsubscribe</button></form>' if form else ""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(store)}: {html.escape(heading)}</title></head>"
        '<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto;'
        ' padding: 0 1rem">'
        f"<h1>{html.escape(heading)}</h1><p>{html.escape(text)}</p>{button}</body></html>"
    )
    return HTMLResponse(body, headers=HEADERS)


@router.get("/u/{token}")
async def unsubscribe_page(token: str, context: Context, ledger: AppLedger) -> HTMLResponse:
    addresses = await _recipients(token, context, ledger)
    store = context.settings.store_name
    who = ", ".join(_masked(a) for a in addresses)
    text = f"Stop {store}'s order emails to {who}? Shipping updates by text are not affected."
    return _page(store, "Unsubscribe", text, form=True)


@router.post("/u/{token}")
async def unsubscribe(token: str, context: Context, ledger: AppLedger) -> HTMLResponse:
    """The button, or a mail client's one-click POST (`List-Unsubscribe=One-Click`)."""
    addresses = await _recipients(token, context, ledger)
    merchant = merchant_of(context.settings)
    now = datetime.now(UTC)
    for address in addresses:
        await ledger.suppress(merchant, Channel.EMAIL.value, address, "unsubscribed", now)
    store = context.settings.store_name
    text = f"{store} will not email {', '.join(_masked(a) for a in addresses)} again."
    return _page(store, "You are unsubscribed", text, form=False)
