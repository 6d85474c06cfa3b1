"""Provider feedback: SendGrid's signed Event Webhook and Twilio's status callbacks and inbound
texts, signed exactly as the providers sign them, through the HTTP service into the ledger.

SendGrid's signature is checked against sendgrid-python's official test vector and against a
P-256 key pair generated here; Twilio's against twilio-python's official vector and the SDK's
own `RequestValidator`, which also signs the test requests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, Mail
from temporalio.testing import ActivityEnvironment
from twilio.request_validator import RequestValidator
from twilio.rest import Client as TwilioClient

from activities.notify import NotificationActivities
from starters.api import create_app
from starters.embedded import free_port
from starters.simulators.providers import ProviderDoubles, create_providers_app
from starters.simulators.providers.server import serving
from storage import Ledger, LedgerRecord, open_ledger
from tests.factories import ANY_TIME_POLICY, make_shipment
from tests.harness import drop_ledger_tables, eventually
from trackflow.consent import may_send
from trackflow.contracts import SendBatch, SendReport
from trackflow.effects import SendNotification
from trackflow.messages import Brand, MessageContext
from trackflow.models import Channel, Trigger
from trackflow.settings import Settings
from trackflow.sources.normalized import SourcePayloadError
from trackflow.sources.providers import (
    DeliveryStatus,
    parse_form,
    parse_sendgrid_events,
    parse_twilio_inbound,
    parse_twilio_status,
    sendgrid_message_id,
)
from trackflow.sources.signatures import (
    sendgrid_public_key,
    twilio_signature,
    verify_sendgrid,
    verify_twilio,
)

# --- SendGrid: the official vector (sendgrid-python test/unit/test_eventwebhook.py) ----------

SG_VECTOR_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62g"
    "w+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
SG_VECTOR_SIGNATURE = (
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15Tlu"
    "LtEZtM="
)
SG_VECTOR_TIMESTAMP = "1600112502"
SG_VECTOR_EVENT = {
    "email": "hello@world.com",
    "event": "dropped",
    "reason": "Bounced Address",
    "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
    "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
    "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
    "timestamp": 1600112492,
}
# "Be sure to include the trailing carriage return and newline!"
SG_VECTOR_BODY = (
    json.dumps([SG_VECTOR_EVENT], sort_keys=True, separators=(",", ":")) + "\r\n"
).encode()


SG_VECTOR_NOW = datetime.fromtimestamp(int(SG_VECTOR_TIMESTAMP), UTC)


def test_sendgrid_official_vector() -> None:
    assert verify_sendgrid(
        SG_VECTOR_BODY, SG_VECTOR_SIGNATURE, SG_VECTOR_TIMESTAMP, SG_VECTOR_KEY, now=SG_VECTOR_NOW
    )
    # the same signature once its timestamp is more than ten minutes away: a replay
    for off in (timedelta(minutes=10, seconds=1), -timedelta(minutes=10, seconds=1)):
        assert not verify_sendgrid(
            SG_VECTOR_BODY,
            SG_VECTOR_SIGNATURE,
            SG_VECTOR_TIMESTAMP,
            SG_VECTOR_KEY,
            now=SG_VECTOR_NOW + off,
        )
    late = SG_VECTOR_NOW + timedelta(minutes=10)
    assert verify_sendgrid(
        SG_VECTOR_BODY, SG_VECTOR_SIGNATURE, SG_VECTOR_TIMESTAMP, SG_VECTOR_KEY, now=late
    )


@pytest.mark.parametrize(
    ("body", "signature", "timestamp", "key"),
    [
        (SG_VECTOR_BODY.rstrip(), SG_VECTOR_SIGNATURE, SG_VECTOR_TIMESTAMP, SG_VECTOR_KEY),
        (SG_VECTOR_BODY, SG_VECTOR_SIGNATURE, "1600112503", SG_VECTOR_KEY),
        (SG_VECTOR_BODY, SG_VECTOR_SIGNATURE, None, SG_VECTOR_KEY),
        (SG_VECTOR_BODY, None, SG_VECTOR_TIMESTAMP, SG_VECTOR_KEY),
        (SG_VECTOR_BODY, "not base64!", SG_VECTOR_TIMESTAMP, SG_VECTOR_KEY),
        (SG_VECTOR_BODY, SG_VECTOR_SIGNATURE[:-8] + "AAAAAAA=", SG_VECTOR_TIMESTAMP, SG_VECTOR_KEY),
        (SG_VECTOR_BODY, SG_VECTOR_SIGNATURE, SG_VECTOR_TIMESTAMP, ""),
        (SG_VECTOR_BODY, SG_VECTOR_SIGNATURE, SG_VECTOR_TIMESTAMP, "garbage"),
        (SG_VECTOR_BODY, SG_VECTOR_SIGNATURE, SG_VECTOR_TIMESTAMP, SG_VECTOR_KEY[:-10]),
    ],
)
def test_sendgrid_rejects(
    body: bytes, signature: str | None, timestamp: str | None, key: str
) -> None:
    assert not verify_sendgrid(body, signature, timestamp, key, now=SG_VECTOR_NOW)


def _public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


SG_KEY = ec.generate_private_key(ec.SECP256R1())
SG_PUBLIC_KEY = _public_key_b64(SG_KEY)


def sendgrid_headers(
    body: bytes, key: ec.EllipticCurvePrivateKey = SG_KEY, *, at: datetime | None = None
) -> dict[str, str]:
    """As SendGrid signs an Event Webhook post: ECDSA P-256/SHA-256 over timestamp + body,
    the timestamp when it posts (or `at`)."""
    timestamp = str(int((at or datetime.now(UTC)).timestamp()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


def test_sendgrid_generated_key_pair_and_pem_form() -> None:
    body = b'[{"event":"delivered"}]'
    headers = sendgrid_headers(body)
    signature = headers["X-Twilio-Email-Event-Webhook-Signature"]
    timestamp = headers["X-Twilio-Email-Event-Webhook-Timestamp"]
    now = datetime.now(UTC)
    assert verify_sendgrid(body, signature, timestamp, SG_PUBLIC_KEY, now=now)
    pem = (
        SG_KEY.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert verify_sendgrid(body, signature, timestamp, pem, now=now)
    other = _public_key_b64(ec.generate_private_key(ec.SECP256R1()))
    assert not verify_sendgrid(body, signature, timestamp, other, now=now)
    assert not verify_sendgrid(body + b" ", signature, timestamp, SG_PUBLIC_KEY, now=now)


def test_sendgrid_key_must_be_p256() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    body = b"[]"
    signature = base64.b64encode(p384.sign(b"1" + body, ec.ECDSA(hashes.SHA256()))).decode()
    assert sendgrid_public_key(_public_key_b64(p384)) is None
    at_one = datetime.fromtimestamp(1, UTC)
    assert not verify_sendgrid(body, signature, "1", _public_key_b64(p384), now=at_one)
    assert sendgrid_public_key(SG_VECTOR_KEY) is not None


# --- Twilio: the official vector (twilio-python tests/unit/test_request_validator.py) -------

TW_VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TW_VECTOR_PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
    ("Caller", "+14158675309"),
]


def test_twilio_official_vector() -> None:
    assert twilio_signature(TW_VECTOR_URL, TW_VECTOR_PARAMS, "12345") == (
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    )
    assert verify_twilio(TW_VECTOR_URL, TW_VECTOR_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", "12345")


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("https://shop.example/webhooks/twilio/status?key=1Z%2F1001%3Alabel", [("A", "1")]),
        ("https://shop.example/x", [("B", "2"), ("A", "1"), ("B", "1"), ("B", "2")]),
        ("https://shop.example/x", [("Body", "café ✓ & = +"), ("Empty", "")]),
        ("https://shop.example/x", []),
    ],
)
def test_twilio_signature_is_the_sdks(url: str, params: list[tuple[str, str]]) -> None:
    multi: dict[str, list[str]] = {}
    for name, value in params:
        multi.setdefault(name, []).append(value)

    class MultiDict(dict[str, list[str]]):
        def getall(self, name: str) -> list[str]:
            return self[name]

    expected = RequestValidator("token").compute_signature(url, MultiDict(multi))
    assert twilio_signature(url, params, "token") == expected


def test_twilio_port_variants_and_rejections() -> None:
    url, params = "https://shop.example/hook?key=k", [("MessageSid", "SM1")]
    with_port = RequestValidator("tok").compute_signature(
        "https://shop.example:443/hook?key=k", {"MessageSid": "SM1"}
    )
    assert verify_twilio(url, params, with_port, "tok")  # Twilio may sign either form
    good = twilio_signature(url, params, "tok")
    assert verify_twilio("https://shop.example:443/hook?key=k", params, good, "tok")
    assert not verify_twilio(url, params, good, "other-token")
    assert not verify_twilio(url + "x", params, good, "tok")
    assert not verify_twilio(url, [("MessageSid", "SM2")], good, "tok")
    assert not verify_twilio(url, params, None, "tok")
    assert not verify_twilio(url, params, good, "")


# --- Parsing ---------------------------------------------------------------------------------

T0 = 1_764_000_000


def sg_event(event: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "email": "Ada@Example.com",
        "timestamp": T0,
        "event": event,
        "sg_event_id": f"ev-{event}-{fields.get('n', 0)}",
        "sg_message_id": "MSGID123.filterdrecv-1-2-3",
        "smtp-id": "<MSGID123@ismtpd.sendgrid.net>",
        "trackflow_key": "1Z999/1001:shipped:0:email",
    }
    fields.pop("n", None)
    return body | fields


@pytest.mark.parametrize(
    ("event", "fields", "status", "error_code"),
    [
        ("processed", {}, DeliveryStatus.QUEUED, None),
        ("deferred", {"response": "400 try again later", "attempt": "5"}, "deferred", None),
        ("delivered", {"response": "250 OK"}, DeliveryStatus.DELIVERED, None),
        (
            "bounce",
            {"reason": "550 5.1.1 unknown", "status": "5.1.1", "type": "bounce"},
            "bounced",
            "5.1.1",
        ),
        ("bounce", {"reason": "blocked", "type": "blocked"}, "bounced", "blocked"),
        ("dropped", {"reason": "Bounced Address"}, DeliveryStatus.DROPPED, "Bounced Address"),
        ("open", {"useragent": "Mozilla", "ip": "1.2.3.4"}, DeliveryStatus.OPENED, None),
        ("click", {"url": "https://acme.test/track"}, DeliveryStatus.CLICKED, None),
        ("spamreport", {}, DeliveryStatus.SPAM_REPORT, None),
        ("unsubscribe", {}, DeliveryStatus.UNSUBSCRIBED, None),
        ("group_unsubscribe", {"asm_group_id": 1}, DeliveryStatus.UNSUBSCRIBED, None),
        ("group_resubscribe", {"asm_group_id": 1}, DeliveryStatus.RESUBSCRIBED, None),
        ("machine_opened", {}, DeliveryStatus.UNKNOWN, None),
    ],
)
def test_sendgrid_events_normalized(
    event: str, fields: dict[str, Any], status: str, error_code: str | None
) -> None:
    batch = parse_sendgrid_events([sg_event(event, **fields)])
    assert batch.rejected == []
    (record,) = batch.records
    assert record.status == status
    assert record.error_code == error_code
    assert record.idempotency_key == "1Z999/1001:shipped:0:email"
    assert record.provider_message_id == "MSGID123"
    assert record.dedupe_id == f"sendgrid:ev-{event}-0"
    assert record.at == datetime.fromtimestamp(T0, UTC)
    assert record.address == "ada@example.com"


def test_sendgrid_batch_sets_aside_bad_events_not_the_batch() -> None:
    no_id = sg_event("open")
    del no_id["sg_event_id"], no_id["trackflow_key"]
    batch = parse_sendgrid_events(
        [sg_event("delivered"), "x", {"timestamp": T0}, sg_event("open", timestamp="soon"), no_id]
    )
    assert [r.event for r in batch.records] == ["delivered", "open"]
    assert [r["index"] for r in batch.rejected] == ["1", "2", "3"]
    # without sg_event_id: a digest of the content, the same on a retry
    assert batch.records[1].dedupe_id.startswith("sendgrid:sha256:")
    assert parse_sendgrid_events([no_id]).records[0].dedupe_id == batch.records[1].dedupe_id
    assert batch.records[1].idempotency_key is None
    with pytest.raises(SourcePayloadError):
        parse_sendgrid_events({"event": "delivered"})
    assert sendgrid_message_id("abc.def.ghi") == "abc"
    assert sendgrid_message_id(None) is None


def test_twilio_status_and_inbound_parsed() -> None:
    now = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    form = parse_form(
        b"MessageSid=SM1&MessageStatus=undelivered&ErrorCode=30007&To=%2B15025550123&From=%2B1800"
    )
    record = parse_twilio_status(form, [("key", "1Z9/1001:shipped:0:sms")], now)
    assert (record.status, record.error_code, record.address) == (
        "undelivered",
        "30007",
        "+15025550123",
    )
    assert (record.idempotency_key, record.dedupe_id, record.at) == (
        "1Z9/1001:shipped:0:sms",
        "twilio:SM1:undelivered",
        now,
    )
    with pytest.raises(SourcePayloadError):
        parse_twilio_status([("MessageStatus", "sent")], [], now)
    inbound = parse_twilio_inbound(parse_form(b"MessageSid=SM2&From=%2B1502&Body=+Stop+"), now)
    assert (inbound.keyword, inbound.dedupe_id) == ("stop", "twilio-inbound:SM2")
    # Advanced Opt-Out told us what Twilio did with a custom keyword
    custom = parse_form(b"MessageSid=SM3&From=%2B1502&Body=PARAR&OptOutType=STOP")
    assert parse_twilio_inbound(custom, now).keyword == "stop"
    assert (
        parse_twilio_inbound(parse_form(b"MessageSid=SM4&From=%2B1&Body=hi"), now).keyword is None
    )


# --- Through the HTTP service into the ledger (SQLite and PostgreSQL) ------------------------

PUBLIC_URL = "https://shop.example"
TWILIO_TOKEN = "twilio-auth-token"
EMAIL = "ada@example.com"
PHONE = "+15025550123"
POSTGRES_DSN = os.environ.get(
    "TRACKFLOW_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
KEY = "1Z999/1001:shipped:0:email"
SMS_KEY = "1Z999/1001:shipped:0:sms"
STATUS = "/webhooks/twilio/status"
INBOUND = "/webhooks/twilio/inbound"
E2E_ACCOUNT = "AC" + "1" * 32


@dataclass
class Service:
    http: httpx.AsyncClient
    ledger: Ledger


def provider_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "store_name": "Acme",
        "support_email": "help@acme.test",
        "sendgrid_webhook_public_key": SG_PUBLIC_KEY,
        "twilio_auth_token": TWILIO_TOKEN,
        "public_url": PUBLIC_URL,
    }
    return Settings(**(values | overrides))


@asynccontextmanager
async def running(settings: Settings, ledger: Ledger) -> AsyncIterator[Service]:
    async def no_temporal() -> Any:
        raise AssertionError("provider webhooks never need Temporal")

    app = create_app(settings, no_temporal, ANY_TIME_POLICY)
    app.state.ledger = ledger  # what the routes open from the settings, shared here
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://trackflow") as http:
        yield Service(http, ledger)


@pytest.fixture(params=["sqlite", "postgres"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    table = f"feedback_{uuid.uuid4().hex[:12]}"
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}" if request.param == "sqlite" else POSTGRES_DSN
    opened = open_ledger(url, table=table)
    try:
        yield opened
    finally:
        await opened.close()
        if request.param == "postgres":
            await drop_ledger_tables(POSTGRES_DSN, table)


@pytest.fixture
async def service(tmp_path: Path, ledger: Ledger) -> AsyncIterator[Service]:
    async with running(provider_settings(tmp_path), ledger) as started:
        yield started


async def sent(ledger: Ledger, key: str, channel: str, to: str, provider_id: str | None) -> None:
    """A message the send activity recorded as sent (with the provider's id, if any)."""
    await ledger.record_once(
        LedgerRecord(
            idempotency_key=key,
            tracking_number="1Z999",
            order_id="1001",
            trigger="shipped",
            channel=channel,
            to=to,
            subject="Your order shipped" if channel == "email" else None,
            body="Your order shipped",
            transport="sendgrid" if channel == "email" else "twilio",
            provider_message_id=provider_id,
            sent_at=datetime.now(UTC),
        )
    )


async def snapshot(ledger: Ledger, *dedupe_ids: str) -> Any:
    """Everything a webhook could change: every row, both suppressions, the dedupe ids."""
    return (
        await ledger.states(),
        await ledger.suppressed("Acme", "email", EMAIL),
        await ledger.suppressed("Acme", "sms", PHONE),
        [await ledger.feedback_seen(d) for d in dedupe_ids],
    )


async def post_sendgrid(
    service: Service, events: list[dict[str, Any]], **headers: str
) -> httpx.Response:
    body = json.dumps(events).encode()
    return await service.http.post(
        "/webhooks/sendgrid", content=body, headers=sendgrid_headers(body) | headers
    )


async def post_twilio(
    service: Service,
    path: str,
    params: dict[str, str],
    *,
    query: str = "",
    token: str = TWILIO_TOKEN,
) -> httpx.Response:
    """As Twilio posts: form-encoded, signed over the public URL it called."""
    url = f"{PUBLIC_URL}{path}" + (f"?{query}" if query else "")
    signature = RequestValidator(token).compute_signature(url, params)
    return await service.http.post(
        path + (f"?{query}" if query else ""),
        content=urllib.parse.urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )


def key_query(key: str) -> str:
    return "key=" + urllib.parse.quote(key, safe="")


def status_params(status: str, sid: str = "SM1", **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": "AC1",
        "From": "+18005550100",
        "To": PHONE,
        "ApiVersion": "2010-04-01",
    } | extra


def inbound_params(body: str, sid: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": "AC1",
        "From": PHONE,
        "To": "+18005550100",
        "Body": body,
        "NumMedia": "0",
    }


async def test_unset_secrets_answer_503_and_change_nothing(tmp_path: Path, ledger: Ledger) -> None:
    await sent(ledger, KEY, "email", EMAIL, "MSGID123")
    before = await snapshot(ledger, "sendgrid:ev-bounce-0", "twilio-inbound:SMi")
    settings = provider_settings(tmp_path, sendgrid_webhook_public_key=None, twilio_auth_token=None)
    async with running(settings, ledger) as service:
        answer = await post_sendgrid(service, [sg_event("bounce")])
        assert answer.status_code == 503
        assert "SENDGRID_WEBHOOK_PUBLIC_KEY" in answer.json()["detail"]
        for path, params in (
            (STATUS, status_params("failed", ErrorCode="21610")),
            (INBOUND, inbound_params("STOP", "SMi")),
        ):
            answer = await post_twilio(service, path, params, query=key_query(SMS_KEY))
            assert answer.status_code == 503
            assert "TWILIO_AUTH_TOKEN" in answer.json()["detail"]
    async with running(provider_settings(tmp_path, public_url=None), ledger) as service:
        answer = await post_twilio(service, INBOUND, inbound_params("STOP", "SMi"))
        assert (answer.status_code, answer.json()["detail"]) == (
            503,
            "TRACKFLOW_PUBLIC_URL is not configured",
        )
    assert await snapshot(ledger, "sendgrid:ev-bounce-0", "twilio-inbound:SMi") == before


async def test_bad_signatures_are_401_and_change_nothing(service: Service) -> None:
    await sent(service.ledger, KEY, "email", EMAIL, "MSGID123")
    await sent(service.ledger, SMS_KEY, "sms", PHONE, "SM1")
    ids = ("sendgrid:ev-bounce-0", "sendgrid:ev-spamreport-0", "twilio-inbound:SMbad")
    before = await snapshot(service.ledger, *ids)
    events = [sg_event("bounce", reason="550 unknown", type="bounce"), sg_event("spamreport")]
    body = json.dumps(events).encode()
    other_key = ec.generate_private_key(ec.SECP256R1())
    stale = sendgrid_headers(body)
    stale["X-Twilio-Email-Event-Webhook-Timestamp"] = "1"  # not the timestamp it signed
    attempts = [
        sendgrid_headers(body, other_key),  # someone else's key
        sendgrid_headers(body + b" "),  # signed another body
        {"Content-Type": "application/json"},  # unsigned
        stale,
    ]
    for headers in attempts:
        answer = await service.http.post("/webhooks/sendgrid", content=body, headers=headers)
        assert answer.status_code == 401, answer.text

    stop = inbound_params("STOP", "SMbad")
    assert (await post_twilio(service, INBOUND, stop, token="another-token")).status_code == 401
    # signed for the URL the service sees internally, not the public one Twilio calls
    internal = RequestValidator(TWILIO_TOKEN).compute_signature(f"http://trackflow{INBOUND}", stop)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = await service.http.post(
        INBOUND,
        content=urllib.parse.urlencode(stop),
        headers=form | {"X-Twilio-Signature": internal},
    )
    assert answer.status_code == 401
    # a status callback's signature covers its ?key=: moved to another message, it fails
    url = f"{PUBLIC_URL}{STATUS}?{key_query(SMS_KEY)}"
    params = status_params("failed", ErrorCode="21610")
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
    answer = await service.http.post(
        f"{STATUS}?{key_query(KEY)}",
        content=urllib.parse.urlencode(params),
        headers=form | {"X-Twilio-Signature": signature},
    )
    assert answer.status_code == 401
    assert await snapshot(service.ledger, *ids) == before


async def test_sendgrid_events_update_their_row_once(service: Service) -> None:
    ledger = service.ledger
    await sent(ledger, KEY, "email", EMAIL, "MSGID123")
    events = [
        sg_event("processed", timestamp=T0),
        sg_event("delivered", timestamp=T0 + 5, response="250 OK"),
        sg_event("open", n=1, timestamp=T0 + 60),
        sg_event("click", timestamp=T0 + 90, url="https://acme.test/track"),
    ]
    no_key = sg_event("open", n=2, timestamp=T0 + 120)
    del no_key["trackflow_key"]  # found by its sg_message_id's X-Message-Id
    unknown = sg_event("delivered", n=3, sg_message_id="OTHER.filter")
    del unknown["trackflow_key"]
    answer = await post_sendgrid(service, [*events, no_key, unknown, {"event": "open"}])
    assert answer.status_code == 200, answer.text
    view = answer.json()
    assert (view["events"], view["applied"], view["duplicates"], view["unmatched"]) == (6, 5, 0, 1)
    assert view["rejected"] == [{"index": "6", "reason": "timestamp is not a number"}]
    row = await ledger.state(KEY)
    assert row is not None
    assert (row.delivery_status, row.error_code) == ("delivered", None)
    assert row.delivered_at == datetime.fromtimestamp(T0 + 5, UTC)
    assert row.opened_at == datetime.fromtimestamp(T0 + 60, UTC)  # the first open
    assert row.clicked_at == datetime.fromtimestamp(T0 + 90, UTC)

    before = await snapshot(ledger)
    again = await post_sendgrid(service, [*events, no_key, unknown])  # SendGrid retries
    # every event is remembered, the unmatched one too: a retry changes nothing
    assert (again.json()["applied"], again.json()["duplicates"], again.json()["unmatched"]) == (
        0,
        6,
        0,
    )
    assert await snapshot(ledger) == before


async def test_a_key_finds_a_row_the_provider_id_never_reached(service: Service) -> None:
    """The send crashed after SendGrid accepted: the event's key still finds the row and
    brings the provider id to it."""
    await sent(service.ledger, KEY, "email", EMAIL, None)
    answer = await post_sendgrid(service, [sg_event("delivered")])
    assert answer.json()["applied"] == 1
    row = await service.ledger.state(KEY)
    assert row is not None
    assert (row.provider_message_id, row.delivery_status) == ("MSGID123", "delivered")


@pytest.mark.parametrize(
    ("event", "fields", "reason", "error_code"),
    [
        (
            "bounce",
            {"reason": "550 5.1.1 no user", "status": "5.1.1", "type": "bounce"},
            "bounced",
            "5.1.1",
        ),
        ("dropped", {"reason": "Bounced Address"}, "bounced", "Bounced Address"),
        ("dropped", {"reason": "Spam Reporting Address"}, "spam_report", "Spam Reporting Address"),
        ("dropped", {"reason": "Unsubscribed Address"}, "unsubscribed", "Unsubscribed Address"),
        ("spamreport", {}, "spam_report", None),
        ("unsubscribe", {}, "unsubscribed", None),
        ("group_unsubscribe", {"asm_group_id": 7}, "unsubscribed", None),
        ("bounce", {"reason": "421 blocked", "type": "blocked"}, None, "blocked"),
        ("deferred", {"response": "421 later"}, None, None),
        ("delivered", {}, None, None),
    ],
)
async def test_sendgrid_feedback_suppresses_the_address_for_the_merchant(
    service: Service,
    event: str,
    fields: dict[str, Any],
    reason: str | None,
    error_code: str | None,
) -> None:
    await sent(service.ledger, KEY, "email", EMAIL, "MSGID123")
    answer = await post_sendgrid(service, [sg_event(event, email="ADA@example.com", **fields)])
    assert answer.status_code == 200, answer.text
    stored = await service.ledger.suppressed("Acme", "email", EMAIL)
    assert stored == reason
    allowed, why = may_send("email", EMAIL, stored)
    assert allowed is (reason is None)
    assert why
    assert await service.ledger.suppressed("Another store", "email", EMAIL) is None
    row = await service.ledger.state(KEY)
    assert row is not None
    assert row.error_code == error_code


async def test_a_resubscribe_lifts_an_unsubscribe_not_a_bounce(service: Service) -> None:
    await post_sendgrid(service, [sg_event("group_unsubscribe")])
    assert await service.ledger.suppressed("Acme", "email", EMAIL) == "unsubscribed"
    answer = await post_sendgrid(service, [sg_event("group_resubscribe", timestamp=T0 + 60)])
    assert answer.json()["lifted"] == ["email:unsubscribed"]
    assert await service.ledger.suppressed("Acme", "email", EMAIL) is None
    await post_sendgrid(service, [sg_event("bounce", type="bounce", timestamp=T0 + 120)])
    answer = await post_sendgrid(service, [sg_event("group_resubscribe", n=2, timestamp=T0 + 180)])
    assert answer.json()["lifted"] == []
    assert await service.ledger.suppressed("Acme", "email", EMAIL) == "bounced"


async def test_consent_follows_the_events_time_not_their_arrival(service: Service) -> None:
    """A late, replayed or back-dated resubscribe lifts no newer unsubscribe; every event is
    remembered, matched or not (none of these names a message of ours)."""

    async def post(event: str, n: int, timestamp: int) -> dict[str, Any]:
        answer = await post_sendgrid(service, [sg_event(event, n=n, timestamp=timestamp)])
        assert answer.status_code == 200, answer.text
        view: dict[str, Any] = answer.json()
        return view

    async def suppressed() -> str | None:
        return await service.ledger.suppressed("Acme", "email", EMAIL)

    assert (await post("group_unsubscribe", 1, T0 + 100))["suppressed"] == ["email:unsubscribed"]
    for n, late in ((1, T0 + 50), (2, 978_307_200), (3, T0 + 100)):  # late, 2001, same second
        assert (await post("group_resubscribe", n, late))["lifted"] == []
        assert await suppressed() == "unsubscribed"
    assert (await post("unsubscribe", 4, T0 + 300))["suppressed"] == []  # already: a newer bar
    assert (await post("group_resubscribe", 5, T0 + 200))["lifted"] == []
    assert await suppressed() == "unsubscribed"
    assert (await post("group_resubscribe", 6, T0 + 400))["lifted"] == ["email:unsubscribed"]
    assert await suppressed() is None
    assert (await post("group_unsubscribe", 7, T0 + 500))["suppressed"] == ["email:unsubscribed"]
    replay = await post("group_resubscribe", 6, T0 + 400)
    assert (replay["duplicates"], replay["lifted"]) == (1, [])
    assert await suppressed() == "unsubscribed"
    assert await service.ledger.feedback_seen("sendgrid:ev-group_resubscribe-6")
    assert await service.ledger.states() == []


async def test_a_sendgrid_post_signed_more_than_ten_minutes_ago_is_refused(
    service: Service,
) -> None:
    body = json.dumps([sg_event("group_resubscribe", timestamp=T0 + 999)]).encode()
    await service.ledger.suppress("Acme", "email", EMAIL, "unsubscribed", datetime.now(UTC))
    now = datetime.now(UTC)
    for at in (now - timedelta(minutes=11), now + timedelta(minutes=11)):
        answer = await service.http.post(
            "/webhooks/sendgrid", content=body, headers=sendgrid_headers(body, at=at)
        )
        assert answer.status_code == 401, answer.text
    assert not await service.ledger.feedback_seen("sendgrid:ev-group_resubscribe-0")
    fresh = await service.http.post(
        "/webhooks/sendgrid",
        content=body,
        headers=sendgrid_headers(body, at=now - timedelta(minutes=9)),
    )
    assert fresh.status_code == 200, fresh.text
    assert await service.ledger.feedback_seen("sendgrid:ev-group_resubscribe-0")


async def test_twilio_status_callbacks_update_the_row_by_its_key(service: Service) -> None:
    ledger = service.ledger
    await sent(ledger, SMS_KEY, "sms", PHONE, "SM1")
    for status in ("sent", "delivered"):
        answer = await post_twilio(service, STATUS, status_params(status), query=key_query(SMS_KEY))
        assert answer.status_code == 200, answer.text
        assert answer.json()["applied"] == 1
    again = await post_twilio(service, STATUS, status_params("delivered"), query=key_query(SMS_KEY))
    assert (again.json()["applied"], again.json()["duplicates"]) == (0, 1)
    late = await post_twilio(service, STATUS, status_params("sent"), query=key_query(SMS_KEY))
    assert late.status_code == 200  # Twilio's callbacks may arrive out of order
    row = await ledger.state(SMS_KEY)
    assert row is not None
    assert row.delivery_status == "delivered"
    # no key (a message sent before callbacks carried one): found by its MessageSid
    other = "1Z999/1001:delivered:0:sms"
    await sent(ledger, other, "sms", PHONE, "SM2")
    answer = await post_twilio(
        service, STATUS, status_params("undelivered", "SM2", ErrorCode="30007")
    )
    assert answer.json()["applied"] == 1
    row = await ledger.state(other)
    assert row is not None
    assert (row.delivery_status, row.error_code) == ("undelivered", "30007")
    assert await ledger.suppressed("Acme", "sms", PHONE) is None  # 30007 is not an opt-out


async def test_twilio_error_21610_suppresses_the_number(service: Service) -> None:
    await sent(service.ledger, SMS_KEY, "sms", PHONE, "SM3")
    answer = await post_twilio(
        service, STATUS, status_params("failed", "SM3", ErrorCode="21610"), query=key_query(SMS_KEY)
    )
    assert answer.json()["suppressed"] == ["sms:sms_stop"]
    row = await service.ledger.state(SMS_KEY)
    assert row is not None
    assert (row.delivery_status, row.error_code) == ("failed", "21610")
    assert await service.ledger.suppressed("Acme", "sms", PHONE) == "sms_stop"


async def test_inbound_stop_start_help(service: Service) -> None:
    ledger = service.ledger
    answer = await post_twilio(service, INBOUND, inbound_params("Stop", "SMa"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/xml")
    assert answer.text == '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
    assert await ledger.suppressed("Acme", "sms", PHONE) == "sms_stop"
    assert await ledger.suppressed("Acme", "sms", "+1 502 555 0123") == "sms_stop"
    assert may_send("sms", PHONE, await ledger.suppressed("Acme", "sms", PHONE))[0] is False

    help_answer = await post_twilio(service, INBOUND, inbound_params("HELP", "SMb"))
    expected = (
        "<Message>Acme: order tracking updates. Help: help@acme.test. Reply STOP to opt out."
        "</Message>"
    )
    assert expected in help_answer.text
    retried = await post_twilio(service, INBOUND, inbound_params("HELP", "SMb"))
    assert retried.text == help_answer.text  # Twilio acts on the answer it receives
    assert await ledger.suppressed("Acme", "sms", PHONE) == "sms_stop"  # HELP changes nothing

    await post_twilio(service, INBOUND, inbound_params("start", "SMc"))
    assert await ledger.suppressed("Acme", "sms", PHONE) is None
    # a retried delivery of the STOP (already applied) does not undo the START
    await post_twilio(service, INBOUND, inbound_params("Stop", "SMa"))
    assert await ledger.suppressed("Acme", "sms", PHONE) is None
    await post_twilio(service, INBOUND, inbound_params("where is my parcel?", "SMd"))
    assert await ledger.suppressed("Acme", "sms", PHONE) is None
    assert await ledger.states() == []  # replies touch no message row


async def test_a_start_lifts_only_what_a_stop_did(service: Service) -> None:
    await service.ledger.suppress("Acme", "sms", PHONE, "carrier_block")
    await post_twilio(service, INBOUND, inbound_params("START", "SMe"))
    assert await service.ledger.suppressed("Acme", "sms", PHONE) == "carrier_block"


# --- End to end: the official SDKs send through the provider doubles, which call back -------


async def test_the_doubles_callbacks_reach_the_ledger_over_http(tmp_path: Path) -> None:
    """SendGrid's SDK sends an email and Twilio's SDK a text through the doubles (real HTTP);
    the doubles post their signed Event Webhook and status callbacks to the service, and a STOP
    reply; the ledger rows get delivered and the number is suppressed for the merchant."""
    api_port = free_port()
    public = f"http://127.0.0.1:{api_port}"
    doubles = ProviderDoubles(
        sendgrid_event_webhook_url=f"{public}/webhooks/sendgrid",
        twilio_inbound_url=f"{public}{INBOUND}",
        twilio_account_sid=E2E_ACCOUNT,
        twilio_auth_token=TWILIO_TOKEN,
    )
    settings = provider_settings(
        tmp_path,
        sendgrid_webhook_public_key=doubles.public_key,
        public_url=public,
    )

    async def no_temporal() -> Any:
        raise AssertionError("provider webhooks never need Temporal")

    app = create_app(settings, no_temporal, ANY_TIME_POLICY)
    ledger = open_ledger(settings.resolved_ledger_url)
    try:
        with serving(app, port=api_port), serving(create_providers_app(doubles)) as providers:
            mail = Mail(
                from_email="shop@acme.test",
                to_emails=EMAIL,
                subject="Your order shipped",
                plain_text_content="Your order shipped",
            )
            mail.custom_arg = CustomArg("trackflow_key", KEY)
            # the send activity's claim holds the key before the provider is called; the
            # provider ids come back with the feedback
            await sent(ledger, KEY, "email", EMAIL, None)
            await sent(ledger, SMS_KEY, "sms", PHONE, None)
            sendgrid = SendGridAPIClient(api_key="SG.test", host=providers)
            answer = await asyncio.to_thread(sendgrid.send, mail)
            message_id = answer.headers["X-Message-Id"]

            twilio = TwilioClient(E2E_ACCOUNT, TWILIO_TOKEN)
            twilio.api.base_url = providers
            callback = f"{public}{STATUS}?{key_query(SMS_KEY)}"
            sms = await asyncio.to_thread(
                twilio.messages.create,
                to=PHONE,
                from_="+15005550006",
                body="Acme: your order shipped",
                status_callback=callback,
            )

            async def rows() -> list[tuple[str | None, str | None]]:
                found = [await ledger.state(KEY), await ledger.state(SMS_KEY)]
                return [
                    (r.delivery_status, r.provider_message_id) if r else (None, None) for r in found
                ]

            await eventually(
                rows,
                lambda r: r == [("delivered", message_id), ("delivered", sms.sid)],
                what="both messages delivered, with their provider ids",
            )

            reply = {"from": PHONE, "to": "+15005550006", "body": "STOP"}
            async with httpx.AsyncClient(base_url=providers) as control:
                answer = await control.post("/_double/twilio/inbound", json=reply)
                assert answer.status_code == 200, answer.text
                await eventually(
                    lambda: ledger.suppressed("Acme", "sms", PHONE),
                    lambda reason: reason == "sms_stop",
                    what="the STOP suppressed the number",
                )
                callbacks = (await control.get("/_double/callbacks")).json()["callbacks"]
        assert {c["kind"] for c in callbacks} >= {"sendgrid_events", "twilio_inbound"}
        assert all(c["status_code"] == 200 for c in callbacks), callbacks
    finally:
        await ledger.close()


# --- Signed but hostile: never a 5xx -----------------------------------------------------------

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
hostile_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        ["\x00", "a\x00b", "x" * 5_000, "\u202e", "é" * 300, " ", "+1 502", "STOP", "start"]
    ),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), hostile_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=8,
)
event_names = st.sampled_from(["processed", "delivered", "bounce", "dropped", "open", "click", "x"])


@st.composite
def sendgrid_batches(draw: st.DrawFn) -> bytes:
    events = []
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        event = sg_event(draw(event_names), n=draw(st.integers(0, 3)))
        for _ in range(draw(st.integers(min_value=0, max_value=3))):
            field = draw(st.sampled_from([*event, "reason", "type", "status", "url"]))
            if draw(st.booleans()):
                event[field] = draw(json_values)
            else:
                event.pop(field, None)
        events.append(event)
    kind = draw(st.sampled_from(["batch", "batch", "batch", "any", "bytes"]))
    if kind == "any":
        return json.dumps(draw(json_values)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=100))
    return json.dumps(events).encode()


form_names = st.sampled_from(
    ["MessageSid", "SmsSid", "MessageStatus", "ErrorCode", "To", "From", "Body", "OptOutType"]
)
forms = st.lists(st.tuples(form_names | st.text(max_size=5), hostile_text), max_size=8)


@FUZZ
@given(body=sendgrid_batches())
async def test_signed_sendgrid_bodies_never_fail_the_service(service: Service, body: bytes) -> None:
    answer = await service.http.post(
        "/webhooks/sendgrid", content=body, headers=sendgrid_headers(body)
    )
    assert answer.status_code in (200, 400, 422), answer.text


@FUZZ
@given(params=forms, path=st.sampled_from([STATUS, INBOUND]), key=hostile_text)
async def test_signed_twilio_forms_never_fail_the_service(
    service: Service, params: list[tuple[str, str]], path: str, key: str
) -> None:
    query = key_query(key) if key else ""
    url = f"{PUBLIC_URL}{path}" + (f"?{query}" if query else "")
    answer = await service.http.post(
        path + (f"?{query}" if query else ""),
        content=urllib.parse.urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": twilio_signature(url, params, TWILIO_TOKEN),
        },
    )
    assert answer.status_code in (200, 422), answer.text


@pytest.mark.parametrize(
    ("what", "value"),
    [("a NUL", "+1502\x00555"), ("5,000 characters", "+1" + "5" * 5_000), ("a newline", "+1\n5")],
)
async def test_hostile_identifiers_are_422_and_change_nothing(
    service: Service, what: str, value: str
) -> None:
    """Addresses, keys and ids are stored and looked up whole: one PostgreSQL cannot hold (a
    NUL) or index (thousands of characters) is refused before anything is written."""
    ids = ("twilio-inbound:SMh", "twilio:SMh:failed")
    before = await snapshot(service.ledger, *ids)
    stop = inbound_params("STOP", "SMh") | {"From": value}
    assert (await post_twilio(service, INBOUND, stop)).status_code == 422, what
    failed = status_params("failed", "SMh", ErrorCode="21610") | {"To": value}
    answer = await post_twilio(service, STATUS, failed, query=key_query(SMS_KEY))
    assert answer.status_code == 422, what
    answer = await post_twilio(
        service, STATUS, status_params("failed", "SMh"), query=key_query("k" + value)
    )
    assert answer.status_code == 422, what
    email = value.replace("+", "ada@x.") if "\x00" in value or "\n" in value else value + "@x.io"
    batch = [sg_event("bounce", email=email), sg_event("open", sg_event_id=value)]
    answer = await post_sendgrid(service, batch)
    assert (answer.status_code, answer.json()["events"]) == (200, 0)
    assert [r["index"] for r in answer.json()["rejected"]] == ["0", "1"]
    assert await snapshot(service.ledger, *ids) == before


# --- The next send, for any shipment of the customer, honours what feedback recorded -----------


def _batch(number: str) -> SendBatch:
    shipment = make_shipment(tracking_number=number, email="Ada@Example.com", phone=PHONE)
    sends = [
        SendNotification(
            idempotency_key=f"{number}/1001:out_for_delivery:0:{channel.value}",
            trigger=Trigger.OUT_FOR_DELIVERY,
            channel=channel,
            to=to,
        )
        for channel, to in ((Channel.EMAIL, EMAIL), (Channel.SMS, PHONE))
    ]
    return SendBatch(about=MessageContext.of(shipment), sends=sends)


async def test_feedback_suppression_stops_the_next_send_of_another_shipment(
    service: Service,
) -> None:
    activities = NotificationActivities(service.ledger, brand=Brand(store_name="Acme"))

    async def send(number: str) -> list[str]:
        report: SendReport = await ActivityEnvironment().run(
            activities.send_notifications, _batch(number)
        )
        return [receipt.transport for receipt in report.receipts]

    assert await send("1Z0000000000000001") == ["outbox", "outbox"]
    await post_twilio(service, INBOUND, inbound_params("STOP", "SMx"))
    await post_sendgrid(service, [sg_event("spamreport")])
    assert await send("1Z0000000000000002") == ["suppressed:spam_report", "suppressed:sms_stop"]
    await post_twilio(service, INBOUND, inbound_params("START", "SMy"))
    assert await send("1Z0000000000000003") == ["suppressed:spam_report", "outbox"]
