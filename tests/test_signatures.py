"""Webhook signatures: EasyPost and AfterShip HMAC, ShipEngine RSA-SHA256."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from trackflow.sources.signatures import verify_aftership, verify_easypost, verify_shipengine

FIXTURES = Path(__file__).parent / "fixtures"

# --- EasyPost: official test vector --------------------------------------------------------

VECTORS = json.loads((FIXTURES / "easypost" / "webhook_signature_test_vectors.json").read_text())
EP = VECTORS["easypost"]
EP_SECRET: str = EP["secret"]  # "sécret": NFKD normalisation matters
EP_SIGNATURE: str = EP["expected"]


def _easypost_body() -> bytes:
    """The vector signs the compact re-serialisation (== the file without its newline)."""
    raw = (FIXTURES / "easypost" / "easypost_tracker_updated_event.json").read_bytes()
    body = json.dumps(json.loads(raw), separators=(",", ":")).encode()
    assert body == raw.rstrip(b"\n")
    return body


def test_easypost_vector_accepted() -> None:
    assert EP_SECRET == "s\u00e9cret"
    assert EP_SIGNATURE.startswith("hmac-sha256-hex=38f3f53c")
    assert verify_easypost(_easypost_body(), EP_SIGNATURE, EP_SECRET)


def test_easypost_nfkd_secret_forms_are_equivalent() -> None:
    decomposed = "se\u0301cret"  # already NFKD
    assert verify_easypost(_easypost_body(), EP_SIGNATURE, decomposed)


def test_easypost_hex_case_and_whitespace_tolerated() -> None:
    prefix, digest = EP_SIGNATURE.split("=", 1)
    assert verify_easypost(_easypost_body(), f" {prefix}={digest.upper()} ", EP_SECRET)


@pytest.mark.parametrize(
    ("body", "header", "secret"),
    [
        (b"tampered" + b"x", EP_SIGNATURE, EP_SECRET),
        (None, EP_SIGNATURE, "secret"),  # wrong secret
        (None, EP_SIGNATURE, "s\u00e9cret "),
        (None, EP_SIGNATURE, ""),
        (None, None, EP_SECRET),
        (None, "", EP_SECRET),
        (None, EP_SIGNATURE.split("=", 1)[1], EP_SECRET),  # prefix missing
        (None, "hmac-sha1-hex=" + EP_SIGNATURE.split("=", 1)[1], EP_SECRET),
        (None, "hmac-sha256-hex=zz" + EP_SIGNATURE[18:], EP_SECRET),  # not hex
        (None, "hmac-sha256-hex=" + "\u00e9" * 64, EP_SECRET),  # non-ASCII
        (None, EP_SIGNATURE[:-2], EP_SECRET),  # truncated
    ],
)
def test_easypost_rejects(body: bytes | None, header: str | None, secret: str) -> None:
    assert not verify_easypost(body if body is not None else _easypost_body(), header, secret)


def test_easypost_rejects_one_changed_byte() -> None:
    body = _easypost_body().replace(b'"in_transit"', b'"delivered"', 1)
    assert not verify_easypost(body, EP_SIGNATURE, EP_SECRET)


# --- AfterShip -----------------------------------------------------------------------------

AS_SECRET = "as-secret"
# Computed independently: openssl dgst -sha256 -hmac as-secret -binary body | base64
AS_SIGNATURE = "jcVMwXWzFbrPHrxHozghIoL9u7gS3smEzM9nfOHP470="


def _aftership_body() -> bytes:
    sample = json.loads((FIXTURES / "aftership" / "aftership_tracking_update.json").read_text())
    return json.dumps(sample["body"], separators=(",", ":")).encode()


def test_aftership_accepts() -> None:
    assert verify_aftership(_aftership_body(), AS_SIGNATURE, AS_SECRET)
    assert verify_aftership(_aftership_body(), f" {AS_SIGNATURE}\n", AS_SECRET)


@pytest.mark.parametrize(
    ("body", "header", "secret"),
    [
        (_aftership_body() + b" ", AS_SIGNATURE, AS_SECRET),
        (_aftership_body(), AS_SIGNATURE, "other"),
        (_aftership_body(), AS_SIGNATURE, ""),
        (_aftership_body(), None, AS_SECRET),
        (_aftership_body(), "", AS_SECRET),
        (_aftership_body(), "not base64!", AS_SECRET),
        (_aftership_body(), "\u00e9\u00e9\u00e9\u00e9", AS_SECRET),
        (_aftership_body(), base64.b64encode(b"short").decode(), AS_SECRET),
        (_aftership_body(), "hmac-sha256=" + AS_SIGNATURE, AS_SECRET),
    ],
)
def test_aftership_rejects(body: bytes, header: str | None, secret: str) -> None:
    assert not verify_aftership(body, header, secret)


# --- ShipEngine (no official vector: a locally generated key) ------------------------------

NOW = datetime(2026, 4, 28, 12, 0, tzinfo=UTC)
TIMESTAMP = "2026-04-28T12:00:00Z"
KID = "key-2026"
BODY = json.dumps({"resource_type": "API_TRACK", "data": {"tracking_number": "1Z999"}}).encode()
PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64url(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    return {
        "kty": "RSA",
        "kid": kid,
        "alg": "RS256",
        "n": _b64url(numbers.n),
        "e": _b64url(numbers.e),
    }


JWKS = {"keys": [_jwk(OTHER, "old-key"), _jwk(PRIVATE, KID)]}


def _sign(body: bytes = BODY, timestamp: str = TIMESTAMP, key: rsa.RSAPrivateKey = PRIVATE) -> str:
    signed = timestamp.encode() + b"." + body
    return base64.b64encode(key.sign(signed, padding.PKCS1v15(), hashes.SHA256())).decode()


def _verify(**overrides: Any) -> bool:
    arguments: dict[str, Any] = {
        "signature": _sign(),
        "key_id": KID,
        "timestamp": TIMESTAMP,
        "keys": JWKS,
        "now": NOW,
    }
    arguments.update(overrides)
    body = arguments.pop("body", BODY)
    return verify_shipengine(body, **arguments)


def test_shipengine_accepts_jwks_jwk_and_pem() -> None:
    assert _verify()
    assert _verify(keys=_jwk(PRIVATE, KID))
    pem = PRIVATE.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert _verify(keys=pem)
    assert _verify(keys=pem.decode())


def test_shipengine_timestamp_window() -> None:
    assert _verify(now=NOW + timedelta(minutes=4, seconds=59))
    assert _verify(now=NOW - timedelta(minutes=4))  # timestamps may be in the future
    assert not _verify(now=NOW + timedelta(minutes=5, seconds=1))
    assert not _verify(now=NOW - timedelta(minutes=6))


def test_shipengine_unix_timestamp() -> None:
    stamp = str(int(NOW.timestamp()))
    assert _verify(timestamp=stamp, signature=_sign(timestamp=stamp))


@pytest.mark.parametrize(
    "overrides",
    [
        {"body": BODY + b" "},
        {"signature": _sign(key=OTHER)},
        {"signature": _sign(timestamp="2026-04-28T12:00:01Z")},  # timestamp not as signed
        {"key_id": "old-key"},
        {"key_id": "missing"},
        {"keys": {"keys": []}},
        {"keys": {"keys": [dict(_jwk(PRIVATE, KID), kty="EC")]}},
        {"keys": {"keys": [dict(_jwk(PRIVATE, KID), n="!!")]}},
        {"keys": "not a pem"},
        {"signature": None},
        {"signature": ""},
        {"signature": "%%%"},
        {"key_id": None},
        {"timestamp": None},
        {"timestamp": "yesterday"},
    ],
)
def test_shipengine_rejects(overrides: dict[str, Any]) -> None:
    assert not _verify(**overrides)
