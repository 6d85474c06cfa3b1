"""Whether a platform's `tracking_url` is a link a customer can follow, or a placeholder left
in a template (`https://...`, `https://track.example.com/{number}`, `https://tracking`).

The JSON API refuses a placeholder (422 naming `tracking_url`: the integration is wrong and
its author should hear it at once); from every other source (a Shopify fulfillment, a
shipment registered before this check) it is ignored where links are made, and the carrier's
page is offered instead. Either way a customer never sees one.
"""

from __future__ import annotations

from urllib.parse import urlsplit

_TEMPLATE_MARKS = ("...", "\u2026", "{", "}", "<", ">", "[", "]", " ")


def placeholder_because(url: str) -> str | None:
    """Why `url` is not a followable web link (None: it is one)."""
    if not url.lower().startswith(("https://", "http://")):
        return "not a web link: it must start with https:// or http://"
    if any(mark in url for mark in _TEMPLATE_MARKS):
        return "a placeholder, not a link (it contains '...', a space or a template mark)"
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return "not a valid URL"
    labels = host.split(".")
    if len(labels) < 2 or not all(_is_label(label) for label in labels):
        return f"a placeholder, not a link: {host or 'no host'} is not a domain name"
    if labels[-1].isdigit() and not (len(labels) == 4 and all(lb.isdigit() for lb in labels)):
        return f"a placeholder, not a link: {host} is not a domain name"
    return None


def _is_label(label: str) -> bool:
    """A DNS label: letters (any script), digits and inner hyphens."""
    return label.replace("-", "").isalnum() and not label.startswith("-") and label[-1] != "-"


def web_link(url: str | None) -> str | None:
    """`url` when a customer can follow it, else None."""
    return url if url and placeholder_because(url) is None else None
