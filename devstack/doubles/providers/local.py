"""Wiring a local stack to the doubles: the environment a worker and an API need to send
through them and to accept their callbacks, and the command that serves them.

The doubles sign SendGrid's Event Webhook with a P-256 key kept in a PEM file, so the API
(started separately) can be given its public half before the doubles run; Twilio callbacks
are signed with the auth token the environment names.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNING_KEY_FILE = "provider_doubles_signing_key.pem"
TOKEN_FILE = "provider_doubles_twilio_token"
SIMULATED_ACCOUNT_SID = "AC" + "0" * 32
SIMULATED_FROM = "+15005550006"  # Twilio's magic "valid" test sender
SIMULATED_SENDGRID_KEY = "SG.simulated"


def signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The doubles' Event Webhook signing key from `path` (PEM), created (0600) if missing."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} does not hold an EC private key")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)
    return key


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """The verification key as SendGrid shows it (base64 DER)."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def _token(data_dir: Path) -> str:
    path = data_dir / TOKEN_FILE
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_hex(16)
    data_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(token)
    return token


def simulated_provider_env(
    data_dir: Path, doubles_url: str, public_url: str, store_name: str = "Acme"
) -> dict[str, str]:
    """TRACKFLOW_* settings that send email and SMS through the doubles at `doubles_url` and
    accept their callbacks at `public_url` (the API)."""
    key = signing_key(data_dir / SIGNING_KEY_FILE)
    return {
        "TRACKFLOW_SENDGRID_API_KEY": SIMULATED_SENDGRID_KEY,
        "TRACKFLOW_EMAIL_FROM": f"{store_name} <shop@example.com>",
        "TRACKFLOW_SENDGRID_BASE_URL": doubles_url,
        "TRACKFLOW_SENDGRID_WEBHOOK_PUBLIC_KEY": public_key_b64(key),
        "TRACKFLOW_TWILIO_ACCOUNT_SID": SIMULATED_ACCOUNT_SID,
        "TRACKFLOW_TWILIO_AUTH_TOKEN": _token(data_dir),
        "TRACKFLOW_TWILIO_FROM": SIMULATED_FROM,
        "TRACKFLOW_TWILIO_BASE_URL": doubles_url,
        "TRACKFLOW_PUBLIC_URL": public_url,
    }


def providers_command(data_dir: Path, port: int) -> list[str]:
    """`trackflow simulate providers` for that stack (credentials come from the env above)."""
    return [
        sys.executable, "-m", "starters.cli", "simulate", "providers",
        "--port", str(port),
        "--signing-key-file", str(data_dir / SIGNING_KEY_FILE),
    ]  # fmt: skip
