"""Webhook signature checks for EasyPost, AfterShip and ShipEngine. Pure, no I/O.

Every check takes the *raw* request body exactly as received (never a re-serialisation) and
returns False -- never raises -- for a missing or garbled header or an empty secret/key.
Comparisons are constant time.

* EasyPost ``X-Hmac-Signature``: ``"hmac-sha256-hex=" + hex(HMAC-SHA256(NFKD(secret), body))``
  (EasyPost's python client, ``validate_webhook``; official test vector in the tests).
* AfterShip ``aftership-hmac-sha256``: base64 HMAC-SHA256 of the body keyed by the secret.
* ShipEngine / ShipStation API: RSA-SHA256 (RSASSA-PKCS1-v1_5) over ``f"{timestamp}.{body}"``,
  signature base64 in ``x-shipengine-rsa-sha256-signature``, key chosen by
  ``x-shipengine-rsa-sha256-key-id`` from the JWKS (``https://api.shipengine.com/jwks``),
  ``x-shipengine-timestamp`` within 5 minutes either way. The header names, RSA-SHA256, the
  raw-body rule and the 5-minute window are from ShipStation's docs; the signed-string format
  and the JWKS address come from independent public implementations (the official page was
  truncated in our reference), and no official test vector exists -- treat as unverified
  against live traffic. Fetching the JWKS is the caller's job (this module does no I/O).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

EASYPOST_HEADER = "X-Hmac-Signature"
EASYPOST_PREFIX = "hmac-sha256-hex="
AFTERSHIP_HEADER = "aftership-hmac-sha256"
SHIPENGINE_KEY_ID_HEADER = "x-shipengine-rsa-sha256-key-id"
SHIPENGINE_SIGNATURE_HEADER = "x-shipengine-rsa-sha256-signature"
SHIPENGINE_TIMESTAMP_HEADER = "x-shipengine-timestamp"
SHIPENGINE_JWKS_URL = "https://api.shipengine.com/jwks"
SHIPENGINE_TOLERANCE = timedelta(minutes=5)


def verify_easypost(raw_body: bytes, header: str | None, secret: str) -> bool:
    """Check EasyPost's ``X-Hmac-Signature`` header against the raw body."""
    if not header or not secret:
        return False
    claimed = header.strip()
    if not claimed.lower().startswith(EASYPOST_PREFIX):
        return False
    try:
        claimed_digest = bytes.fromhex(claimed[len(EASYPOST_PREFIX) :])
    except ValueError:
        return False
    key = unicodedata.normalize("NFKD", secret).encode("utf-8")
    expected = hmac.new(key, raw_body, hashlib.sha256).digest()
    return hmac.compare_digest(claimed_digest, expected)


def verify_aftership(raw_body: bytes, header: str | None, secret: str) -> bool:
    """Check AfterShip's ``aftership-hmac-sha256`` header (base64 HMAC-SHA256 of the body)."""
    if not header or not secret:
        return False
    try:
        claimed = base64.b64decode(header.strip(), validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        return False
    expected = hmac.new(secret.encode("utf-8"), raw_body, hashlib.sha256).digest()
    return hmac.compare_digest(claimed, expected)


# --- ShipEngine ------------------------------------------------------------------------------


def _b64url_int(value: object) -> int | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, binascii.Error):
        return None
    return int.from_bytes(raw, "big") if raw else None


def _jwk_key(jwk: Mapping[str, Any]) -> rsa.RSAPublicKey | None:
    if jwk.get("kty") != "RSA":
        return None
    n, e = _b64url_int(jwk.get("n")), _b64url_int(jwk.get("e"))
    if n is None or e is None:
        return None
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError:
        return None


def _pem_key(pem: str | bytes) -> rsa.RSAPublicKey | None:
    data = pem.encode("ascii", "ignore") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, rsa.RSAPublicKey) else None


def _select_key(keys: Mapping[str, Any] | str | bytes, key_id: str) -> rsa.RSAPublicKey | None:
    """A JWKS (``{"keys": [...]}``) or one JWK, matched by ``kid``; or a PEM (no kid check)."""
    if isinstance(keys, str | bytes):
        return _pem_key(keys)
    listed = keys.get("keys")
    candidates = listed if isinstance(listed, list) else [keys]
    for jwk in candidates:
        if isinstance(jwk, Mapping) and jwk.get("kid") == key_id:
            return _jwk_key(jwk)
    return None


def _timestamp(value: str) -> datetime | None:
    text = value.strip()
    try:
        if text.isdigit():
            return datetime.fromtimestamp(int(text), tz=UTC)
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def verify_shipengine(
    raw_body: bytes,
    *,
    signature: str | None,
    key_id: str | None,
    timestamp: str | None,
    keys: Mapping[str, Any] | str | bytes,
    now: datetime | None = None,
    tolerance: timedelta = SHIPENGINE_TOLERANCE,
) -> bool:
    """Check ShipEngine's RSA-SHA256 webhook signature (see the module notes).

    ``signature``, ``key_id`` and ``timestamp`` are the three ``x-shipengine-*`` header values;
    ``keys`` is the JWKS document (or one JWK, or a PEM public key). ``timestamp`` may be ISO
    8601 or Unix seconds and must be within ``tolerance`` of ``now`` (default: the clock).
    ShipStation's docs say to answer 404 when the headers are absent and 400 for a stale
    timestamp; this function only answers valid or not.
    """
    if not signature or not key_id or not timestamp:
        return False
    moment = _timestamp(timestamp)
    if moment is None:
        return False
    current = now if now is not None else datetime.now(UTC)
    if abs(current - moment) > tolerance:
        return False
    try:
        claimed = base64.b64decode(signature.strip(), validate=True)
    except ValueError:
        return False
    key = _select_key(keys, key_id.strip())
    if key is None:
        return False
    signed = timestamp.strip().encode("utf-8") + b"." + raw_body
    try:
        key.verify(claimed, signed, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True
