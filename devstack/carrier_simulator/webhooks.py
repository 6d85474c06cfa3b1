"""EasyPost Event envelopes and their ``X-Hmac-Signature``. Pure, no I/O.

The signature is what :func:`trackflow.sources.signatures.verify_easypost` checks (and what
EasyPost's python client computes): ``"hmac-sha256-hex=" + hex(HMAC-SHA256(NFKD(secret), body))``
over the exact bytes sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import unicodedata
import uuid
from collections.abc import Mapping
from typing import Any

SIGNATURE_HEADER = "X-Hmac-Signature"
SIGNATURE_PREFIX = "hmac-sha256-hex="
# The agent string EasyPost's webhook deliveries are commonly seen with (not from its docs).
USER_AGENT = "EasyPost WebHook Agent 1.0"


def sign(body: bytes, secret: str) -> str:
    key = unicodedata.normalize("NFKD", secret).encode("utf-8")
    return SIGNATURE_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def tracker_event(
    tracker: Mapping[str, Any],
    *,
    event_id: str,
    description: str,
    previous_status: str | None,
    created_at: str,
    webhook_url: str,
) -> dict[str, Any]:
    """An Event wrapping a Tracker, shaped like EasyPost's (see the reference fixture)."""
    return {
        "description": description,
        "mode": tracker.get("mode", "test"),
        "previous_attributes": {"status": previous_status} if previous_status else {},
        "created_at": created_at,
        "pending_urls": [webhook_url],
        "completed_urls": [],
        "updated_at": created_at,
        "id": event_id,
        "user_id": "user_simulator",
        "status": "pending",
        "object": "Event",
        "result": dict(tracker),
    }


def encode(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode("utf-8")
