"""How the store presents itself to its customers: in the messages, on the tracking page and
in the merchant's report (one `Brand`, built from the settings by `Settings.brand()`)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from trackflow.models import Model

DEFAULT_BRAND_COLOR = "#18181b"
_HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_DARK_TEXT = "#18181b"
_LIGHT_TEXT = "#ffffff"


class Brand(Model):
    """The store's name, look and contacts (configured by `TRACKFLOW_*` settings)."""

    store_name: str = "Our store"
    support_email: str | None = None
    support_url: str | None = None
    support_phone: str | None = None
    resolution_url: str | None = None
    """Where a customer picks a replacement or a refund for a lost or damaged package."""
    review_url: str | None = None
    """Where a customer leaves a review after delivery."""
    return_url: str | None = None
    """The tracking page's "start a return" link."""
    logo_url: str | None = None
    """The email's and the page's header logo (https only; else the store name is the header)."""
    primary_color: str = DEFAULT_BRAND_COLOR
    """`#rrggbb`: the buttons and the header rule. The button text is white or near-black,
    whichever reads better on it."""
    postal_address: str | None = None
    """The store's postal address for the email footer (lines separated by newlines)."""
    public_url: str | None = None
    """Where trackflow's API is reachable from the internet (unsubscribe links)."""
    unsubscribe_secret: str | None = Field(default=None, repr=False)
    """Signs unsubscribe links; without it (or without `public_url`) emails offer only the
    mailto unsubscribe."""
    unsubscribe_email: str | None = None
    """The mailbox of the `mailto:` unsubscribe (default: `support_email`)."""

    @field_validator("primary_color")
    @classmethod
    def _hex_color(cls, value: str) -> str:
        if not _HEX_COLOR.match(value):
            raise ValueError(f"a brand colour is #rrggbb, not {value!r}")
        return value.lower()

    @property
    def unsubscribe_mailbox(self) -> str | None:
        return self.unsubscribe_email or self.support_email

    @property
    def https_logo_url(self) -> str | None:
        """The logo, if it is served over https (nothing else is ever fetched)."""
        return self.logo_url if self.logo_url and self.logo_url.startswith("https://") else None


def button_text_color(background: str) -> str:
    """White or near-black, whichever contrasts more with `background` (WCAG luminance)."""
    background_l = _luminance(background)
    on_dark = (_luminance(_LIGHT_TEXT) + 0.05) / (background_l + 0.05)
    on_light = (background_l + 0.05) / (_luminance(_DARK_TEXT) + 0.05)
    return _LIGHT_TEXT if on_dark >= on_light else _DARK_TEXT


def _luminance(color: str) -> float:
    def channel(hex_pair: str) -> float:
        c = int(hex_pair, 16) / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(color[i : i + 2]) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b
