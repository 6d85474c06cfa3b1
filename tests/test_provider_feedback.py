"""Provider feedback: SendGrid's signed Event Webhook and Twilio's status callbacks and inbound
texts, signed exactly as the providers sign them, through the HTTP service into the ledger.

SendGrid's signature is checked against sendgrid-python's official test vector and against a
P-256 key pair generated here; Twilio's against twilio-python's official vector and the SDK's
own `RequestValidator`, which also signs the test requests.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.request_validator import RequestValidator

from activities.ledger import LedgerRecord
from starters.api import create_app
from starters.api.webhooks_providers import FeedbackLedger
from tests.factories import ANY_TIME_POLICY
from trackflow.consent import may_send
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


def test_sendgrid_official_vector() -> None:
    assert verify_sendgrid(SG_VECTOR_BODY, SG_VECTOR_SIGNATURE, SG_VECTOR_TIMESTAMP, SG_VECTOR_KEY)


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
    assert not verify_sendgrid(body, signature, timestamp, key)


def _public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


SG_KEY = ec.generate_private_key(ec.SECP256R1())
SG_PUBLIC_KEY = _public_key_b64(SG_KEY)


def sendgrid_headers(body: bytes, key: ec.EllipticCurvePrivateKey = SG_KEY) -> dict[str, str]:
    """As SendGrid signs an Event Webhook post: ECDSA P-256/SHA-256 over timestamp + body."""
    timestamp = str(int(datetime.now(UTC).timestamp()))
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
    assert verify_sendgrid(body, signature, timestamp, SG_PUBLIC_KEY)
    pem = (
        SG_KEY.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert verify_sendgrid(body, signature, timestamp, pem)
    other = _public_key_b64(ec.generate_private_key(ec.SECP256R1()))
    assert not verify_sendgrid(body, signature, timestamp, other)
    assert not verify_sendgrid(body + b" ", signature, timestamp, SG_PUBLIC_KEY)


def test_sendgrid_key_must_be_p256() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    body = b"[]"
    signature = base64.b64encode(p384.sign(b"1" + body, ec.ECDSA(hashes.SHA256()))).decode()
    assert sendgrid_public_key(_public_key_b64(p384)) is None
    assert not verify_sendgrid(body, signature, "1", _public_key_b64(p384))
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


# --- Through the HTTP service into the ledger ------------------------------------------------

PUBLIC_URL = "https://shop.example"
TWILIO_TOKEN = "twilio-auth-token"
EMAIL = "ada@example.com"
PHONE = "+15025550123"


@dataclass
class Service:
    http: httpx.AsyncClient
    ledger: Any  # a FeedbackLedger; the memory one also answers state()
    settings: Settings


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
async def running(settings: Settings, ledger: FeedbackLedger) -> AsyncIterator[Service]:
    async def no_temporal() -> Any:
        raise AssertionError("provider webhooks never need Temporal")

    app = create_app(settings, no_temporal, ANY_TIME_POLICY)
    app.state.feedback_ledger = ledger
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://trackflow") as http:
        yield Service(http, ledger, settings)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    async with running(provider_settings(tmp_path), MemoryFeedback()) as started:
        yield started


async def sent(ledger: Any, key: str, channel: str, to: str, provider_id: str | None) -> None:
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


class MemoryFeedback:
    """The ledger's feedback side in memory, for the router's own rules (the real ledger runs
    the same tests below once it offers these methods)."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[str, datetime, str | None]]] = {}
        self.provider_ids: dict[str, str] = {}
        self.seen: set[str] = set()
        self.suppressions: dict[tuple[str, str, str], str] = {}

    async def record_feedback(
        self, key: str, status: str, at: datetime, error_code: str | None
    ) -> None:
        self.rows.setdefault(key, []).append((status, at, error_code))

    async def key_for_provider_id(self, provider_message_id: str) -> str | None:
        return self.provider_ids.get(provider_message_id)

    async def feedback_seen(self, dedupe_id: str) -> bool:
        return dedupe_id in self.seen

    async def remember_feedback(self, dedupe_id: str) -> None:
        self.seen.add(dedupe_id)

    async def suppress(self, merchant: str, channel: str, address: str, reason: str) -> None:
        self.suppressions[(merchant, channel, address)] = reason

    async def unsuppress(self, merchant: str, channel: str, address: str) -> None:
        self.suppressions.pop((merchant, channel, address), None)

    async def suppressed(self, merchant: str, channel: str, address: str) -> str | None:
        return self.suppressions.get((merchant, channel, address))

    def state(self) -> Any:
        return (
            {k: list(v) for k, v in self.rows.items()},
            set(self.seen),
            dict(self.suppressions),
        )


KEY = "1Z999/1001:shipped:0:email"
SMS_KEY = "1Z999/1001:shipped:0:sms"
STATUS = "/webhooks/twilio/status"
INBOUND = "/webhooks/twilio/inbound"


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


async def test_unset_secrets_answer_503_and_change_nothing(tmp_path: Path) -> None:
    ledger = MemoryFeedback()
    settings = provider_settings(tmp_path, sendgrid_webhook_public_key=None, twilio_auth_token=None)
    async with running(settings, ledger) as service:
        answer = await post_sendgrid(service, [sg_event("bounce")])
        assert answer.status_code == 503
        assert "SENDGRID_WEBHOOK_PUBLIC_KEY" in answer.json()["detail"]
        for path, params in (
            (STATUS, status_params("failed")),
            (INBOUND, inbound_params("STOP", "SMi")),
        ):
            answer = await post_twilio(service, path, params, query=f"key={SMS_KEY}")
            assert answer.status_code == 503
            assert "TWILIO_AUTH_TOKEN" in answer.json()["detail"]
    async with running(provider_settings(tmp_path, public_url=None), ledger) as service:
        answer = await post_twilio(service, INBOUND, inbound_params("STOP", "SMi"))
        assert (answer.status_code, answer.json()["detail"]) == (
            503,
            "TRACKFLOW_PUBLIC_URL is not configured",
        )
    assert ledger.state() == ({}, set(), {})


async def test_bad_signatures_are_401_and_change_nothing(service: Service) -> None:
    events = [sg_event("bounce", reason="550 unknown", type="bounce"), sg_event("spamreport")]
    body = json.dumps(events).encode()
    other_key = ec.generate_private_key(ec.SECP256R1())
    attempts = [
        sendgrid_headers(body, other_key),  # someone else's key
        sendgrid_headers(body + b" "),  # signed another body
        {"Content-Type": "application/json"},  # unsigned
    ]
    for headers in attempts:
        answer = await service.http.post("/webhooks/sendgrid", content=body, headers=headers)
        assert answer.status_code == 401, answer.text
    stale = sendgrid_headers(body)
    stale["X-Twilio-Email-Event-Webhook-Timestamp"] = "1"  # the signed timestamp changed
    answer = await service.http.post("/webhooks/sendgrid", content=body, headers=stale)
    assert answer.status_code == 401

    stop = inbound_params("STOP", "SMbad")
    assert (await post_twilio(service, INBOUND, stop, token="another-token")).status_code == 401
    # signed for the URL this service sees internally, not the public one Twilio called
    internal = RequestValidator(TWILIO_TOKEN).compute_signature(f"http://trackflow{INBOUND}", stop)
    answer = await service.http.post(
        INBOUND,
        content=urllib.parse.urlencode(stop),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": internal,
        },
    )
    assert answer.status_code == 401
    # a status callback's signature covers its ?key=: moving it to another message fails
    url = f"{PUBLIC_URL}{STATUS}?key=" + urllib.parse.quote(SMS_KEY, safe="")
    params = status_params("failed", ErrorCode="21610")
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
    answer = await service.http.post(
        f"{STATUS}?key=other",
        content=urllib.parse.urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    assert answer.status_code == 401
    assert service.ledger.state() == ({}, set(), {})


def statuses(ledger: MemoryFeedback, key: str) -> list[tuple[str, str | None]]:
    return [(status, error) for status, _at, error in ledger.rows.get(key, [])]


async def test_sendgrid_events_update_their_rows_once(service: Service) -> None:
    ledger: MemoryFeedback = service.ledger
    ledger.provider_ids["MSGID123"] = KEY
    events = [
        sg_event("processed"),
        sg_event("delivered", response="250 OK"),
        sg_event("open", n=1),
        sg_event("click", url="https://acme.test/track"),
    ]
    no_key = sg_event("open", n=2)
    del no_key["trackflow_key"]  # found by its sg_message_id's X-Message-Id
    unknown = sg_event("delivered", n=3, sg_message_id="OTHER.filter")
    del unknown["trackflow_key"]
    answer = await post_sendgrid(service, [*events, no_key, unknown, {"event": "open"}])
    assert answer.status_code == 200, answer.text
    view = answer.json()
    assert (view["events"], view["applied"], view["duplicates"], view["unmatched"]) == (6, 5, 0, 1)
    assert view["rejected"] == [{"index": "6", "reason": "timestamp is not a number"}]
    assert statuses(ledger, KEY) == [
        ("queued", None),
        ("delivered", None),
        ("opened", None),
        ("clicked", None),
        ("opened", None),
    ]
    assert ledger.rows[KEY][0][1] == datetime.fromtimestamp(T0, UTC)
    before = ledger.state()
    again = await post_sendgrid(service, [*events, no_key, unknown])  # SendGrid retries
    assert (again.json()["applied"], again.json()["duplicates"]) == (0, 6)
    assert ledger.state() == before


@pytest.mark.parametrize(
    ("event", "fields", "reason"),
    [
        (
            "bounce",
            {"reason": "550 5.1.1 no such user", "status": "5.1.1", "type": "bounce"},
            "bounced",
        ),
        ("dropped", {"reason": "Bounced Address"}, "bounced"),
        ("dropped", {"reason": "Spam Reporting Address"}, "spam_report"),
        ("dropped", {"reason": "Unsubscribed Address"}, "unsubscribed"),
        ("spamreport", {}, "spam_report"),
        ("unsubscribe", {}, "unsubscribed"),
        ("group_unsubscribe", {"asm_group_id": 7}, "unsubscribed"),
        ("bounce", {"reason": "421 blocked", "type": "blocked"}, None),
        ("deferred", {"response": "421 later"}, None),
        ("delivered", {}, None),
    ],
)
async def test_sendgrid_feedback_suppresses_the_address_for_the_merchant(
    service: Service, event: str, fields: dict[str, Any], reason: str | None
) -> None:
    answer = await post_sendgrid(service, [sg_event(event, **fields)])
    assert answer.status_code == 200, answer.text
    stored = await service.ledger.suppressed("Acme", "email", EMAIL)
    assert stored == reason
    allowed, why = may_send("email", EMAIL, stored)
    assert allowed is (reason is None)
    assert why
    assert await service.ledger.suppressed("Acme", "sms", EMAIL) is None


async def test_a_resubscribe_lifts_an_unsubscribe_not_a_bounce(service: Service) -> None:
    await post_sendgrid(service, [sg_event("group_unsubscribe")])
    assert await service.ledger.suppressed("Acme", "email", EMAIL) == "unsubscribed"
    answer = await post_sendgrid(service, [sg_event("group_resubscribe")])
    assert answer.json()["lifted"] == ["email:unsubscribed"]
    assert await service.ledger.suppressed("Acme", "email", EMAIL) is None
    await post_sendgrid(service, [sg_event("bounce", type="bounce")])
    answer = await post_sendgrid(service, [sg_event("group_resubscribe", n=2)])
    assert answer.json()["lifted"] == []
    assert await service.ledger.suppressed("Acme", "email", EMAIL) == "bounced"


async def test_twilio_status_callbacks_update_the_row_by_its_key(service: Service) -> None:
    ledger: MemoryFeedback = service.ledger
    query = "key=" + urllib.parse.quote(SMS_KEY, safe="")
    for status in ("sent", "delivered"):
        answer = await post_twilio(service, STATUS, status_params(status), query=query)
        assert answer.status_code == 200, answer.text
        assert answer.json()["applied"] == 1
    again = await post_twilio(service, STATUS, status_params("delivered"), query=query)
    assert (again.json()["applied"], again.json()["duplicates"]) == (0, 1)
    assert statuses(ledger, SMS_KEY) == [("sent", None), ("delivered", None)]
    # no key (sent before callbacks carried one): found by MessageSid
    ledger.provider_ids["SM2"] = "1Z999/1001:delivered:0:sms"
    answer = await post_twilio(
        service, STATUS, status_params("undelivered", "SM2", ErrorCode="30007")
    )
    assert answer.json()["applied"] == 1
    assert statuses(ledger, "1Z999/1001:delivered:0:sms") == [("undelivered", "30007")]
    assert await ledger.suppressed("Acme", "sms", PHONE) is None


async def test_twilio_error_21610_suppresses_the_number(service: Service) -> None:
    query = "key=" + urllib.parse.quote(SMS_KEY, safe="")
    answer = await post_twilio(
        service, STATUS, status_params("failed", "SM3", ErrorCode="21610"), query=query
    )
    assert answer.json()["suppressed"] == ["sms:sms_stop"]
    assert statuses(service.ledger, SMS_KEY) == [("failed", "21610")]
    assert await service.ledger.suppressed("Acme", "sms", PHONE) == "sms_stop"


async def test_inbound_stop_start_help(service: Service) -> None:
    ledger: MemoryFeedback = service.ledger
    answer = await post_twilio(service, INBOUND, inbound_params("Stop", "SMa"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/xml")
    assert answer.text == '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
    assert await ledger.suppressed("Acme", "sms", PHONE) == "sms_stop"
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
    # a retried STOP delivery (already applied) does not undo the START
    await post_twilio(service, INBOUND, inbound_params("Stop", "SMa"))
    assert await ledger.suppressed("Acme", "sms", PHONE) is None
    await post_twilio(service, INBOUND, inbound_params("where is my parcel?", "SMd"))
    assert await ledger.suppressed("Acme", "sms", PHONE) is None
    assert ledger.rows == {}


async def test_a_start_does_not_lift_what_a_stop_did_not_cause(service: Service) -> None:
    await service.ledger.suppress("Acme", "sms", PHONE, "carrier_block")
    await post_twilio(service, INBOUND, inbound_params("START", "SMe"))
    assert await service.ledger.suppressed("Acme", "sms", PHONE) == "carrier_block"
