"""One spelling per contact address, for comparing: an email (`comparable_email`) or a
phone number without blanks, dashes, dots or parentheses."""

from __future__ import annotations

import re

from trackflow.email_address import comparable_email

_PHONE_PUNCTUATION = re.compile(r"[\s\-().]")


def comparable_address(channel: str, address: str) -> str:
    """Emails compare case-insensitively, numbers without blanks."""
    address = address.strip()
    return comparable_email(address) if channel == "email" else _PHONE_PUNCTUATION.sub("", address)
