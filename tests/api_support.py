"""The HTTP service in-process (ASGI) against the real dev server, and request builders."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from starters.api import create_app
from tests.factories import ANY_TIME_POLICY
from trackflow.carriers.samples import random_tracking_number
from trackflow.models import workflow_id_for
from trackflow.settings import Settings
from trackflow.tracking_policy import TrackingPolicy
from workers.runtime import connect

TOKEN = "test-token"
SHOPIFY_SECRET = "shopify-secret"
EASYPOST_SECRET = "easypost-secret"
AFTERSHIP_SECRET = "aftership-secret"
SHOPIFY_FIXTURES = Path(__file__).parent / "fixtures" / "shopify"
SHIPENGINE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SHIPENGINE_KID = "test-key-1"


def shipengine_jwks() -> str:
    numbers = SHIPENGINE_KEY.public_key().public_numbers()

    def b64(number: int) -> str:
        raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    jwk = {
        "kty": "RSA",
        "kid": SHIPENGINE_KID,
        "alg": "RS256",
        "n": b64(numbers.n),
        "e": b64(numbers.e),
    }
    return json.dumps({"keys": [jwk]})


def shipengine_headers(body: bytes, *, key: rsa.RSAPrivateKey = SHIPENGINE_KEY) -> dict[str, str]:
    timestamp = datetime.now(UTC).isoformat()
    signature = key.sign(timestamp.encode() + b"." + body, padding.PKCS1v15(), hashes.SHA256())
    return {
        "x-shipengine-rsa-sha256-signature": base64.b64encode(signature).decode(),
        "x-shipengine-rsa-sha256-key-id": SHIPENGINE_KID,
        "x-shipengine-timestamp": timestamp,
    }


def api_settings(address: str, task_queue: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "temporal_address": address,
        "task_queue": task_queue,
        "data_dir": data_dir,
        "api_token": TOKEN,
        "shopify_webhook_secret": SHOPIFY_SECRET,
        "easypost_webhook_secret": EASYPOST_SECRET,
        "aftership_webhook_secret": AFTERSHIP_SECRET,
        "shipengine_webhook_keys": shipengine_jwks(),
    }
    return Settings(**(values | overrides))


@asynccontextmanager
async def api_client(
    settings: Settings, policy: TrackingPolicy | None = ANY_TIME_POLICY
) -> AsyncIterator[httpx.AsyncClient]:
    """`policy=None`: what the service itself would load from `settings`."""
    app = create_app(settings, lambda: connect(settings), policy)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://trackflow", headers=headers
    ) as http:
        yield http


def tracking_number() -> str:
    """A new valid UPS number (one of a wrong check digit is registered with warnings)."""
    return random_tracking_number("ups")


def shipment_body(number: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_id": "1001",
        "tracking_number": number,
        "carrier": "ups",
        "customer": {
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "phone": "+15025550123",
            "sms_consent": True,
            "timezone": "America/New_York",
        },
        "order_value": 212.50,
        "currency": "USD",
        "shipping_speed": "standard",
        "customer_order_count": 1,
        "tracking_url": "https://example.com/track",
    }
    return body | overrides


def event_body(number: str, status: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "tracking_number": number,
        "status": status,
        "occurred_at": "2026-11-20T14:03:00Z",
        "event_id": f"evt-{status}",
    }
    return body | overrides


def fulfillment(*numbers: str, **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(
        (SHOPIFY_FIXTURES / "shopify_fulfillments_create.json").read_text()
    )
    payload["tracking_numbers"] = list(numbers)
    payload["tracking_number"] = numbers[0]
    payload["tracking_urls"] = [f"https://www.ups.com/track?n={n}" for n in numbers]
    return payload | overrides


def shopify_signature(body: bytes, secret: str = SHOPIFY_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def easypost_signature(body: bytes, secret: str = EASYPOST_SECRET) -> str:
    return "hmac-sha256-hex=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def aftership_signature(body: bytes, secret: str = AFTERSHIP_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def shopify_headers(
    body: bytes, topic: str = "fulfillments/create", **extra: str
) -> dict[str, str]:
    return {
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": shopify_signature(body),
        "X-Shopify-Webhook-Id": extra.pop("webhook_id", uuid.uuid4().hex),
        "X-Shopify-Shop-Domain": "example.myshopify.com",
        "Content-Type": "application/json",
        **extra,
    }


def shipengine_track_event(number: str) -> dict[str, Any]:
    """A ShipEngine `API_TRACK` webhook body: one in-transit scan."""
    data: dict[str, Any] = {
        "tracking_number": number,
        "status_code": "IT",
        "status_description": "In Transit",
        "carrier_status_code": "OR",
        "events": [
            {
                "occurred_at": "2026-11-20T14:03:00Z",
                "description": "Arrived at facility",
                "city_locality": "Memphis",
                "state_province": "TN",
                "country_code": "US",
                "status_code": "IT",
                "event_code": "AR",
            }
        ],
    }
    return {"resource_type": "API_TRACK", "data": data}


async def workflow_started(client: Client, number: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id_for(number)).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True
