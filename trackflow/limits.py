"""Size limits on everything that comes in, so no input can outgrow Temporal's limits
(2 KB per search attribute, 2 MB per payload) or a shipment's state. docs/getting-started.md
lists them (Limits and error answers)."""

from __future__ import annotations

MAX_BODY_BYTES = 1_048_576
"""Any HTTP request body (413 above it, checked against Content-Length before reading)."""
MAX_JSON_DEPTH = 64
"""Nesting of objects and arrays in a JSON body (400 deeper)."""

SHORT_TEXT = 64
"""Codes and identifiers: carrier, order id, time zone, event source, fulfillment id."""
NAME_TEXT = 255
"""What people type: names, address lines, city, item titles, order name (Shopify's limits)."""
URL_TEXT = 2_048
MAX_LINE_ITEMS = 200
MAX_QUANTITY = 1_000_000
MAX_ORDER_VALUE_DIGITS = 14
"""Order values up to 999,999,999,999.99 in the order's currency."""
MAX_VISITS_PER_PAGE = 200
"""Visit rows kept per tracking-page token (one per message link and hour at most): a shopper
checking hourly for eight days. Past it only a message's first click is still recorded."""
