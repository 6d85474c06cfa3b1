"""The headers of the pages a shopper opens from a message (`/t/<token>`, `/u/<token>`).

The token in their URL is the shopper's key: never cached, sent on as a referrer or indexed;
the pages load nothing but inline styles and https images, and no other site may frame them.
"""

from __future__ import annotations


def shopper_page_headers(*, posts_to_itself: bool = False) -> dict[str, str]:
    """`posts_to_itself`: the page has a form that posts back to its own URL (`/u/`)."""
    form_action = "'self'" if posts_to_itself else "'none'"
    return {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",  # the token stays off the carrier's and support's logs
        "X-Robots-Tag": "noindex",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'unsafe-inline'; img-src https:; "
            f"base-uri 'none'; form-action {form_action}; frame-ancestors 'none'"
        ),
    }
