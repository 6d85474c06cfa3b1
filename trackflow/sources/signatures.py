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
* SendGrid Signed Event Webhook: ECDSA P-256 / SHA-256 over ``timestamp + raw body``, the DER
  signature base64 in ``X-Twilio-Email-Event-Webhook-Signature``, the timestamp in
  ``X-Twilio-Email-Event-Webhook-Timestamp``, the public key the base64 DER "verification key"
  shown under Mail Settings (sendgrid-python ``helpers/eventwebhook``; its official test
  vector is in the tests). SendGrid states no freshness window; ours is
  ``SIGNATURE_TOLERANCE`` either way, as for Zendesk's signatures (a captured post replayed
  later is refused; within the window every event is deduplicated by its ``sg_event_id``).
* Twilio ``X-Twilio-Signature``: base64 HMAC-SHA1, keyed by the auth token, of the full URL
  Twilio called followed by every form parameter sorted by name (each name's distinct values
  sorted) as ``name + value``; the URL is tried with and without its default port, as
  twilio-python's ``RequestValidator`` does (official test vector in the tests).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

EASYPOST_HEADER = "X-Hmac-Signature"
EASYPOST_PREFIX = "hmac-sha256-hex="
AFTERSHIP_HEADER = "aftership-hmac-sha256"
SHIPENGINE_KEY_ID_HEADER = "x-shipengine-rsa-sha256-key-id"
SHIPENGINE_SIGNATURE_HEADER = "x-shipengine-rsa-sha256-signature"
SHIPENGINE_TIMESTAMP_HEADER = "x-shipengine-timestamp"
SHIPENGINE_JWKS_URL = "https://api.shipengine.com/jwks"
SHIPENGINE_TOLERANCE = timedelta(minutes=5)
SENDGRID_SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
SIGNATURE_TOLERANCE = timedelta(minutes=10)
"""How far a signed timestamp (SendGrid, Zendesk) may be from our clock, either way."""
TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"


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


def fresh(timestamp: str, now: datetime, tolerance: timedelta = SIGNATURE_TOLERANCE) -> bool:
    """Whether a signature's timestamp (Unix seconds or ISO 8601) is within ``tolerance`` of
    ``now``: a signed request replayed later is refused."""
    moment = _timestamp(timestamp)
    return moment is not None and abs(now - moment) <= tolerance


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


# --- SendGrid --------------------------------------------------------------------------------


def sendgrid_public_key(key: str) -> ec.EllipticCurvePublicKey | None:
    """SendGrid's verification key: base64 DER (as SendGrid shows it) or a PEM; None unless it
    is a P-256 public key."""
    text = key.strip()
    if not text:
        return None
    try:
        if text.startswith("-----BEGIN"):
            loaded = serialization.load_pem_public_key(text.encode("ascii", "ignore"))
        else:
            loaded = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, TypeError, binascii.Error):
        return None
    if not isinstance(loaded, ec.EllipticCurvePublicKey):
        return None
    return loaded if isinstance(loaded.curve, ec.SECP256R1) else None


def verify_sendgrid(
    raw_body: bytes,
    signature: str | None,
    timestamp: str | None,
    public_key: str,
    *,
    now: datetime,
    tolerance: timedelta = SIGNATURE_TOLERANCE,
) -> bool:
    """Check SendGrid's Signed Event Webhook headers against the raw body, the timestamp
    within ``tolerance`` of ``now``."""
    if not signature or not timestamp or not fresh(timestamp, now, tolerance):
        return False
    key = sendgrid_public_key(public_key)
    if key is None:
        return False
    try:
        claimed = base64.b64decode(signature.strip(), validate=True)
    except ValueError:
        return False
    try:
        key.verify(claimed, timestamp.encode("utf-8") + raw_body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


# --- Twilio ----------------------------------------------------------------------------------


def twilio_signature(url: str, params: Sequence[tuple[str, str]], auth_token: str) -> str:
    """What Twilio puts in ``X-Twilio-Signature`` for a form post of ``params`` to ``url``."""
    signed = url
    for name in sorted({name for name, _ in params}):
        for value in sorted({v for n, v in params if n == name}):
            signed += name + value
    digest = hmac.new(auth_token.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _port_variants(url: str) -> list[str]:
    """The URL without and with its scheme's default port (Twilio signs either)."""
    parsed = urlsplit(url)
    try:
        port = parsed.port
    except ValueError:
        return [url]
    host = parsed.netloc.rsplit("@", 1)[-1]
    userinfo = parsed.netloc[: len(parsed.netloc) - len(host)]
    if port is not None:
        bare = host.rsplit(":", 1)[0]
        return [url, urlunsplit(parsed._replace(netloc=userinfo + bare))]
    default = 443 if parsed.scheme == "https" else 80
    return [url, urlunsplit(parsed._replace(netloc=f"{userinfo}{host}:{default}"))]


def verify_twilio(
    url: str, params: Sequence[tuple[str, str]], signature: str | None, auth_token: str
) -> bool:
    """Check Twilio's ``X-Twilio-Signature`` for a form post of ``params`` to ``url`` (the
    full public URL Twilio called, query string included)."""
    if not signature or not auth_token:
        return False
    claimed = signature.strip().encode("utf-8")
    return any(
        hmac.compare_digest(claimed, twilio_signature(variant, params, auth_token).encode())
        for variant in _port_variants(url)
    )
