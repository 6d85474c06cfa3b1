"""The unsubscribe link's token: names a shipment to the `/u/<token>` route and to nobody else.

`unsubscribe_token` encrypts the customer part of a message's key (`unsubscribe_subject`) with
AES-SIV under a key derived from `TRACKFLOW_UNSUBSCRIBE_SECRET`. SIV is deterministic, so every
email of a shipment carries the same link and rendering stays pure; it is authenticated, so an
altered or made-up token reads as None; and, the plaintext padded to 16 bytes, the token says
nothing about the parcel. Unlike the page token (trackflow.page_token) it needs no lookup: the
route decrypts it.

Tokens issued before (`<base64url subject>.<mac>`) showed the tracking number and order to
whoever saw the link. They are never issued again, but `read_legacy_unsubscribe_token` still
reads them: emails already delivered carry them, and their unsubscribe must keep working
(RFC 8058, CAN-SPAM). The route bounds how long (starters.api.unsubscribe).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_LABEL = b"trackflow unsubscribe token v2"
_BLOCK = 16
_PAD_MARK = b"\x80"  # ISO/IEC 7816-4 padding: the mark, then zeros
_LEGACY_CONTEXT = b"trackflow-unsubscribe\x00"
_LEGACY_MAC_BYTES = 16
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")


def unsubscribe_subject(key: str) -> str:
    """The customer part of a message's idempotency key: what an unsubscribe link names.

    A key is `<tracking number>/<order>[/<fulfillment>]:<trigger>:<episode>:<channel>`; its
    part before the first `:` names the shipment, and so the customer it was sent to (the
    ledger's rows under that prefix hold the recipient). The same link therefore works from
    every email of that shipment, and names nothing about which message carried it."""
    return key.split(":", 1)[0]


def unsubscribe_token(secret: str, key: str) -> str:
    """The opaque token of the shipment that message key `key` belongs to (base64url)."""
    subject = unsubscribe_subject(key).encode()
    padded = subject + _PAD_MARK + b"\x00" * (-(len(subject) + 1) % _BLOCK)
    return _b64(_cipher(secret).encrypt(padded, None))


def read_unsubscribe_token(secret: str, token: str) -> str | None:
    """The customer part a token names, or None when `unsubscribe_token` did not make it
    with `secret` (forged, truncated, altered, or of the old format)."""
    try:
        padded = _cipher(secret).decrypt(_unb64(token), None)
        subject, mark, zeros = padded.rpartition(_PAD_MARK)
        text = subject.decode()
    except (ValueError, InvalidTag, UnicodeDecodeError):
        return None
    return text if mark and text and not zeros.strip(b"\x00") else None


def read_legacy_unsubscribe_token(secret: str, token: str) -> str | None:
    """The customer part an old-format token (`<base64url subject>.<mac>`, no longer issued)
    names, or None when it is not one made with `secret`."""
    encoded, _, mac = token.partition(".")
    try:
        subject = _unb64(encoded)
        given = _unb64(mac)
        text = subject.decode()
    except (ValueError, UnicodeDecodeError):
        return None
    if not subject or not hmac.compare_digest(given, _legacy_mac(secret, subject)):
        return None
    return text


@lru_cache(maxsize=8)
def _cipher(secret: str) -> AESSIV:
    key = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=_LABEL).derive(secret.encode())
    return AESSIV(key)


def _legacy_mac(secret: str, subject: bytes) -> bytes:
    digest = hmac.new(secret.encode(), _LEGACY_CONTEXT + subject, hashlib.sha256).digest()
    return digest[:_LEGACY_MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or not _B64URL.match(text):
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:  # one spelling per token: no unused bits set
        raise ValueError("not canonical base64url")
    return data
