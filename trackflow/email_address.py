"""The one spelling of a customer's email address that we validate, suppress, index and send to.

Mail libraries read an address header, not a bare address: Python's ``email.utils.parseaddr``
(which sendgrid-python's helper calls on every recipient) takes ``x<victim@example.com`` for
the display name ``x`` and the address ``victim@example.com``, ``a(c)@example.com`` for the
address ``a@example.com`` with a comment, and ``a,b@example.com`` for two addresses. So the
only form accepted is one RFC 5322 ``addr-spec`` in its plain ``dot-atom@dot-atom`` shape:
ASCII letters, digits and ``!#$%&'*+-/=?^_`{|}~`` in dot-separated atoms before the ``@``
(no quoted string, no comment, no ``<>,;:"()[]\\``, no blank), host-name labels after it.
Every such address reads back unchanged as the whole address, with no display name, so
what we checked is what the mail library sends to. The domain is lower-cased (DNS ignores
case); the local part is kept as given (the receiving server owns its meaning).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

MAX_EMAIL = 254  # RFC 5321: the longest path is 256 octets, "<" and ">" included
MAX_LOCAL_PART = 64

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")


def canonical_email(value: str) -> str:
    """``value`` (blanks around it ignored) as its canonical address; ValueError saying what
    is wrong when it is not exactly one plain address."""
    text = value.strip()
    if len(text) > MAX_EMAIL:
        raise ValueError(f"an email address has at most {MAX_EMAIL} characters")
    local, at, domain = text.rpartition("@")
    if not at or not local:
        raise ValueError("not an email address: expected name@domain")
    if not _LOCAL_PART.match(local) or "=?" in local:
        # "=?" would start an RFC 2047 encoded word, which a header parser decodes.
        raise ValueError(
            "not a plain email address: before the @ only letters, digits, dots and "
            "!#$%&'*+-/=?^_`{|}~ (no display name, no <>,;:\"()[]\\ or blanks)"
        )
    if len(local) > MAX_LOCAL_PART:
        raise ValueError(f"the part before the @ has at most {MAX_LOCAL_PART} characters")
    if not _DOMAIN.match(domain):
        raise ValueError(
            "not an email address: after the @ a domain such as example.com "
            "(letters, digits and hyphens, dot-separated)"
        )
    return f"{local}@{domain.lower()}"


def _optional(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return canonical_email(value)


EmailAddress = Annotated[
    str, StringConstraints(max_length=MAX_EMAIL), AfterValidator(canonical_email)
]
"""An email address, canonical once validated."""

OptionalEmailAddress = Annotated[
    str | None, StringConstraints(max_length=MAX_EMAIL), AfterValidator(_optional)
]
"""An email address, or None when absent or blank."""
