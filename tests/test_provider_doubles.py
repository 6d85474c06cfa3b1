"""The provider doubles answer the official SDKs as SendGrid and Twilio do, over real HTTP, and
call back signed as the real ones sign (checked with the SDKs' own verifiers)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.mail import CustomArg, Mail
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from activities.channels.base import OutgoingMessage
from activities.channels.sendgrid import SendGridTransport
from activities.channels.twilio import TwilioTransport
from activities.exactly_once import send_once
from starters.api import create_app
from starters.embedded import free_port
from starters.simulators.providers import ProviderDoubles, create_providers_app
from starters.simulators.providers.local import providers_command, simulated_provider_env
from starters.simulators.providers.server import serving
from storage import LedgerRecord, open_ledger
from tests.harness import clean_env, eventually
from trackflow.models import Channel
from trackflow.settings import Settings

ACCOUNT = "AC" + "1" * 32
TOKEN = "double-auth-token"
SENDER = "+15005550006"
CUSTOMER = "+14155550123"


@dataclass
class Received:
    url: str
    headers: dict[str, str]
    body: bytes
    form: dict[str, str]


@dataclass
class Collector:
    """A stand-in for trackflow's webhook endpoints: records every POST it gets."""

    base_url: str = ""
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self, count: int, path: str, deadline_s: float = 10.0) -> list[Received]:
        end = time.monotonic() + deadline_s
        while True:
            with self.lock:
                found = [r for r in self.received if path in r.url]
            if len(found) >= count or time.monotonic() > end:
                return found
            time.sleep(0.05)


@pytest.fixture
def collector() -> Iterator[Collector]:
    collected = Collector()

    async def record(request: Request) -> Response:
        body = await request.body()
        form: dict[str, str] = {}
        if request.headers.get("content-type", "").startswith("application/x-www-form"):
            form = {k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        with collected.lock:
            collected.received.append(Received(str(request.url), dict(request.headers), body, form))
        return Response(status_code=200)

    app = Starlette(routes=[Route("/{path:path}", record, methods=["POST"])])
    with serving(app) as base_url:
        collected.base_url = base_url
        yield collected


@pytest.fixture
def doubles(collector: Collector) -> Iterator[tuple[str, ProviderDoubles]]:
    state = ProviderDoubles(
        sendgrid_event_webhook_url=f"{collector.base_url}/webhooks/sendgrid",
        twilio_inbound_url=f"{collector.base_url}/webhooks/twilio/inbound",
    )
    with serving(create_providers_app(state)) as base_url:
        yield base_url, state


def twilio_client(base_url: str, token: str = TOKEN) -> Client:
    client = Client(ACCOUNT, token)
    client.api.base_url = base_url
    return client


def mail(to: str = "ada@example.com", key: str = "K1/o1:shipped:0:email") -> Mail:
    message = Mail(
        from_email="shop@example.com",
        to_emails=to,
        subject="Your order shipped",
        plain_text_content="text part",
        html_content="<p>html part</p>",
    )
    message.custom_arg = CustomArg("trackflow_key", key)
    return message


def script(base_url: str, **rule: Any) -> None:
    httpx.post(f"{base_url}/_double/script", json=rule).raise_for_status()


def test_sendgrid_mail_send_answers_202_with_a_message_id_and_signs_its_events(
    doubles: tuple[str, ProviderDoubles], collector: Collector
) -> None:
    base_url, state = doubles
    response = SendGridAPIClient(api_key="SG.test", host=base_url).send(mail())
    assert response.status_code == 202
    assert response.body in (b"", "")
    message_id = response.headers["X-Message-Id"]
    listed = httpx.get(f"{base_url}/_double/sendgrid/messages").json()["messages"]
    assert [(m["message_id"], m["to"], m["custom_args"]) for m in listed] == [
        (message_id, ["ada@example.com"], {"trackflow_key": "K1/o1:shipped:0:email"})
    ]
    assert [c["type"] for c in listed[0]["request"]["content"]] == ["text/plain", "text/html"]

    events = collector.wait(2, "/webhooks/sendgrid")
    assert len(events) == 2
    verifier = EventWebhook()
    key = verifier.convert_public_key_to_ecdsa(state.public_key)
    for delivery in events:
        assert verifier.verify_signature(
            delivery.body.decode(),
            delivery.headers["x-twilio-email-event-webhook-signature"],
            delivery.headers["x-twilio-email-event-webhook-timestamp"],
            key,
        )
    kinds = [json.loads(d.body)[0] for d in events]
    assert [k["event"] for k in kinds] == ["processed", "delivered"]
    assert {k["trackflow_key"] for k in kinds} == {"K1/o1:shipped:0:email"}
    assert all(k["sg_message_id"].startswith(message_id + ".") for k in kinds)
    # A tampered body fails the official verifier.
    assert not verifier.verify_signature(
        events[0].body.decode().replace("processed", "delivered"),
        events[0].headers["x-twilio-email-event-webhook-signature"],
        events[0].headers["x-twilio-email-event-webhook-timestamp"],
        key,
    )


def test_sendgrid_errors_have_sendgrids_bodies_and_headers(
    doubles: tuple[str, ProviderDoubles],
) -> None:
    base_url, state = doubles
    state.sendgrid_api_key = "SG.right"
    with pytest.raises(HTTPError) as unauthorized:
        SendGridAPIClient(api_key="SG.wrong", host=base_url).send(mail())
    assert unauthorized.value.status_code == 401
    assert unauthorized.value.to_dict["errors"][0]["message"].startswith("The provided auth")

    client = SendGridAPIClient(api_key="SG.right", host=base_url)
    with pytest.raises(HTTPError) as invalid:
        client.send(mail(to="ada@localhost"))
    assert invalid.value.status_code == 400
    assert invalid.value.to_dict["errors"][0]["field"] == "personalizations.0.to.0.email"

    script(base_url, provider="sendgrid", action="429", retry_after=3)
    with pytest.raises(HTTPError) as limited:
        client.send(mail())
    assert limited.value.status_code == 429
    assert limited.value.headers["Retry-After"] == "3"
    assert limited.value.headers["X-RateLimit-Remaining"] == "0"

    for status in (403, 413):
        script(base_url, provider="sendgrid", action="error", code=status)
        with pytest.raises(HTTPError) as refused:
            client.send(mail())
        assert refused.value.status_code == status
        assert set(refused.value.to_dict["errors"][0]) == {"message", "field", "help"}

    script(base_url, provider="sendgrid", action="500")
    with pytest.raises(HTTPError) as failed:
        client.send(mail())
    assert failed.value.status_code == 500
    assert client.send(mail()).status_code == 202  # the script is used up
    assert len(state.mail) == 1  # refused calls were never accepted


def test_accept_then_drop_keeps_the_message_and_closes_without_an_answer(
    doubles: tuple[str, ProviderDoubles],
) -> None:
    base_url, state = doubles
    script(base_url, provider="sendgrid", action="drop")
    with pytest.raises(OSError):  # urllib: the connection ended without a response
        SendGridAPIClient(api_key="SG.test", host=base_url).send(mail())
    assert [m.outcome for m in state.mail] == ["dropped"]

    script(base_url, provider="twilio", action="drop")
    with pytest.raises(Exception) as dropped:  # requests' ConnectionError
        twilio_client(base_url).messages.create(to=CUSTOMER, from_=SENDER, body="hi")
    assert "Connection" in type(dropped.value).__name__
    assert [m.outcome for m in state.sms] == ["dropped"]


def test_a_stall_can_end_in_a_dropped_connection(doubles: tuple[str, ProviderDoubles]) -> None:
    base_url, state = doubles
    script(base_url, provider="sendgrid", action="stall", seconds=0.2, then="drop")
    with pytest.raises(OSError):
        SendGridAPIClient(api_key="SG.test", host=base_url).send(mail())
    assert [m.outcome for m in state.mail] == ["stalled"]
    rules = httpx.get(f"{base_url}/_double/script").json()["rules"]
    assert rules == []  # used up
    bad = httpx.post(f"{base_url}/_double/script", json={"provider": "x", "action": "429"})
    assert bad.status_code == 422


def test_a_stalled_call_is_received_before_it_is_answered(
    doubles: tuple[str, ProviderDoubles],
) -> None:
    base_url, state = doubles
    script(base_url, provider="twilio", action="stall", seconds=30)
    with pytest.raises(Exception) as timed_out:
        client = Client(ACCOUNT, TOKEN)
        client.api.base_url = base_url
        client.http_client.timeout = 1.0
        client.messages.create(to=CUSTOMER, from_=SENDER, body="slow")
    assert "Timeout" in type(timed_out.value).__name__
    assert [(m.body, m.outcome) for m in state.sms] == [("slow", "stalled")]


def test_twilio_create_list_and_signed_status_callbacks(
    doubles: tuple[str, ProviderDoubles], collector: Collector
) -> None:
    base_url, state = doubles
    client = twilio_client(base_url)
    callback = f"{collector.base_url}/webhooks/twilio/status?key=K1%2Fo1%3Ashipped%3A0%3Asms"
    created = client.messages.create(
        to=CUSTOMER, from_=SENDER, body="Your order shipped", status_callback=callback
    )
    assert created.sid.startswith("SM") and len(created.sid) == 34
    assert created.status == "queued"
    assert created.direction == "outbound-api"

    callbacks = collector.wait(2, "/webhooks/twilio/status")
    validator = RequestValidator(TOKEN)
    assert [c.form["MessageStatus"] for c in callbacks] == ["sent", "delivered"]
    for delivery in callbacks:
        assert delivery.url == callback
        assert validator.validate(
            delivery.url, delivery.form, delivery.headers["x-twilio-signature"]
        )
        assert delivery.form["MessageSid"] == created.sid
    assert not RequestValidator("another-token").validate(
        callbacks[0].url, callbacks[0].form, callbacks[0].headers["x-twilio-signature"]
    )

    listed = client.messages.list(to=CUSTOMER, limit=20)
    assert [(m.sid, m.body, m.status) for m in listed] == [
        (created.sid, "Your order shipped", "delivered")
    ]
    assert client.messages.list(to="+14155550199") == []
    # The double's own log shows the key the callback URL carried; the API never shows it.
    own = httpx.get(f"{base_url}/_double/twilio/messages").json()["messages"]
    assert [m["key"] for m in own] == ["K1/o1:shipped:0:sms"]
    assert all("status_callback" not in m.__dict__.get("_properties", {}) for m in listed)
    assert client.messages(created.sid).fetch().status == "delivered"
    assert state.find_sms(key="K1/o1:shipped:0:sms").sid == created.sid


def test_twilio_errors_and_a_stop_reply(
    doubles: tuple[str, ProviderDoubles], collector: Collector
) -> None:
    base_url, _ = doubles
    client = twilio_client(base_url)
    with pytest.raises(TwilioRestException) as invalid:
        client.messages.create(to="+1555", from_=SENDER, body="hi")
    assert (invalid.value.status, invalid.value.code) == (400, 21211)
    assert "not a valid phone number" in invalid.value.msg

    for code in (21614, 21610):
        script(base_url, provider="twilio", action="error", code=code)
        with pytest.raises(TwilioRestException) as refused:
            client.messages.create(to=CUSTOMER, from_=SENDER, body="hi")
        assert refused.value.code == code

    script(base_url, provider="twilio", action="429", retry_after=2)
    with pytest.raises(TwilioRestException) as limited:
        client.messages.create(to=CUSTOMER, from_=SENDER, body="hi")
    assert (limited.value.status, limited.value.code) == (429, 20429)

    with pytest.raises(TwilioRestException) as unauthorized:
        twilio_client(base_url, token="wrong").messages.create(to=CUSTOMER, from_=SENDER, body="hi")
    assert (unauthorized.value.status, unauthorized.value.code) == (401, 20003)

    # 30007 is accepted, then reported undelivered in the status callback.
    script(base_url, provider="twilio", action="error", code=30007)
    callback = f"{collector.base_url}/webhooks/twilio/status?key=filtered"
    filtered = client.messages.create(
        to=CUSTOMER, from_=SENDER, body="filtered", status_callback=callback
    )
    reports = collector.wait(2, "key=filtered")
    assert [(r.form["MessageStatus"], r.form.get("ErrorCode")) for r in reports] == [
        ("sent", None),
        ("undelivered", "30007"),
    ]
    assert client.messages(filtered.sid).fetch().error_code == 30007

    stop = httpx.post(
        f"{base_url}/_double/twilio/inbound",
        json={"from": CUSTOMER, "to": SENDER, "body": "STOP", "account_sid": ACCOUNT},
    )
    assert stop.status_code == 200
    (inbound,) = collector.wait(1, "/webhooks/twilio/inbound")
    assert inbound.form["Body"] == "STOP"
    assert RequestValidator(TOKEN).validate(
        inbound.url, inbound.form, inbound.headers["x-twilio-signature"]
    )
    with pytest.raises(TwilioRestException) as opted_out:
        client.messages.create(to=CUSTOMER, from_=SENDER, body="after STOP")
    assert opted_out.value.code == 21610
    httpx.post(
        f"{base_url}/_double/twilio/inbound",
        json={"from": CUSTOMER, "to": SENDER, "body": "START", "account_sid": ACCOUNT},
    )
    assert client.messages.create(to=CUSTOMER, from_=SENDER, body="again").status == "queued"


def test_scripted_engagement_events_reach_the_webhook(
    doubles: tuple[str, ProviderDoubles], collector: Collector
) -> None:
    base_url, _ = doubles
    SendGridAPIClient(api_key="SG.test", host=base_url).send(mail(key="K2"))
    collector.wait(2, "/webhooks/sendgrid")
    for event in ("open", "click"):
        answer = httpx.post(
            f"{base_url}/_double/sendgrid/events", json={"event": event, "key": "K2"}
        )
        assert answer.status_code == 200
    events = [json.loads(d.body)[0] for d in collector.wait(4, "/webhooks/sendgrid")]
    assert [e["event"] for e in events] == ["processed", "delivered", "open", "click"]
    assert events[3]["url"] == "https://example.com/"


def test_trackflow_simulate_providers_serves_both_doubles(tmp_path: Path) -> None:
    """As a local stack runs it: the environment from `simulated_provider_env` (which the
    worker and API get too) and the command from `providers_command`; the doubles sign with
    the key whose public half that environment names, and take only its credentials."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    stack = simulated_provider_env(tmp_path, base_url, "http://127.0.0.1:9")
    assert stack == simulated_provider_env(tmp_path, base_url, "http://127.0.0.1:9")  # kept
    process = subprocess.Popen(
        providers_command(tmp_path, port),
        env={**clean_env(), **stack},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        end = time.monotonic() + 30
        while True:
            try:
                config = httpx.get(f"{base_url}/_double/config", timeout=1).json()
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < end, "did not start"
                time.sleep(0.1)
        assert config["sendgrid_event_webhook_url"] == "http://127.0.0.1:9/webhooks/sendgrid"
        assert config["twilio_inbound_url"] == "http://127.0.0.1:9/webhooks/twilio/inbound"
        assert config["public_key"] == stack["TRACKFLOW_SENDGRID_WEBHOOK_PUBLIC_KEY"]
        with pytest.raises(HTTPError) as wrong_key:
            SendGridAPIClient(api_key="SG.other", host=base_url).send(mail())
        assert wrong_key.value.status_code == 401
        api_key = stack["TRACKFLOW_SENDGRID_API_KEY"]
        assert SendGridAPIClient(api_key=api_key, host=base_url).send(mail()).status_code == 202
        twilio = Client(stack["TRACKFLOW_TWILIO_ACCOUNT_SID"], "wrong")
        twilio.api.base_url = base_url
        with pytest.raises(TwilioRestException) as wrong_token:
            twilio.messages.create(to=CUSTOMER, from_=SENDER, body="hi")
        assert wrong_token.value.code == 20003
        twilio = Client(stack["TRACKFLOW_TWILIO_ACCOUNT_SID"], stack["TRACKFLOW_TWILIO_AUTH_TOKEN"])
        twilio.api.base_url = base_url
        created = twilio.messages.create(to=CUSTOMER, from_=SENDER, body="hi")
        listed = httpx.get(f"{base_url}/_double/twilio/messages").json()["messages"]
        assert [m["sid"] for m in listed] == [created.sid]
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    assert f"TRACKFLOW_SENDGRID_BASE_URL={base_url}" in output
    assert api_key not in output and stack["TRACKFLOW_TWILIO_AUTH_TOKEN"] not in output


async def test_the_doubles_callbacks_pass_trackflows_webhooks_into_the_ledger(
    tmp_path: Path,
) -> None:
    """End to end over HTTP: the transports send through the doubles, whose signed Event
    Webhook posts, status callbacks and STOP reply reach trackflow's own webhook routes,
    verify, and land on the ledger rows and the suppression list."""
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    state = ProviderDoubles(
        sendgrid_event_webhook_url=f"{api_url}/webhooks/sendgrid",
        twilio_inbound_url=f"{api_url}/webhooks/twilio/inbound",
        twilio_account_sid=ACCOUNT,
        twilio_auth_token=TOKEN,
    )
    settings = Settings(
        data_dir=tmp_path,
        public_url=api_url,
        twilio_auth_token=TOKEN,
        sendgrid_webhook_public_key=state.public_key,
        store_name="Acme",
    )

    async def no_temporal() -> Any:
        raise AssertionError("feedback needs no Temporal client")

    ledger = open_ledger(settings.resolved_ledger_url)
    email_key, sms_key = "1Z9/o-1:shipped:0:email", "1Z9/o-1:shipped:0:sms"
    try:
        with (
            serving(create_providers_app(state)) as doubles_url,
            serving(create_app(settings, no_temporal), port=api_port),
        ):
            email = SendGridTransport(
                api_key="SG.e2e", sender="shop@example.com", base_url=doubles_url
            )
            sms = TwilioTransport(
                account_sid=ACCOUNT,
                auth_token=TOKEN,
                from_=SENDER,
                base_url=doubles_url,
                public_url=api_url,
            )
            for transport, channel, to, key in (
                (email, Channel.EMAIL, "ada@example.com", email_key),
                (sms, Channel.SMS, CUSTOMER, sms_key),
            ):
                outgoing = OutgoingMessage(
                    idempotency_key=key,
                    channel=channel,
                    to=to,
                    subject="Shipped",
                    body="Acme: 1Z9 shipped",
                    tracking_number="1Z9",
                    order_id="o-1",
                )
                template = LedgerRecord(
                    idempotency_key=key,
                    tracking_number="1Z9",
                    order_id="o-1",
                    trigger="shipped",
                    channel=channel.value,
                    to=to,
                    body="Acme: 1Z9 shipped",
                    transport=transport.name,
                    sent_at=datetime.now(UTC),
                )
                await send_once(
                    ledger, transport, outgoing, template, owner="e2e", lease=timedelta(seconds=30)
                )

            async def row(key: str) -> Any:
                return await ledger.state(key)

            delivered = await eventually(
                lambda: row(email_key), lambda r: r.delivery_status == "delivered", what="email"
            )
            assert delivered.provider_message_id == state.mail[0].message_id
            texted = await eventually(
                lambda: row(sms_key), lambda r: r.delivery_status == "delivered", what="sms"
            )
            assert texted.provider_message_id == state.sms[0].sid

            async with httpx.AsyncClient(base_url=doubles_url) as admin:
                for event in ("open", "click"):
                    answer = await admin.post(
                        "/_double/sendgrid/events", json={"event": event, "key": email_key}
                    )
                    assert answer.json()["callback"]["status_code"] == 200
                await eventually(
                    lambda: row(email_key),
                    lambda r: r.opened_at is not None and r.clicked_at is not None,
                    what="opened and clicked",
                )
                stop = await admin.post(
                    "/_double/twilio/inbound", json={"from": CUSTOMER, "to": SENDER, "body": "STOP"}
                )
                assert stop.status_code == 200
                assert await ledger.suppressed("Acme", "sms", CUSTOMER) is not None
            assert {c.status_code for c in state.callbacks} == {200}
            assert {c.kind for c in state.callbacks} == {
                "sendgrid_events",
                "twilio_status",
                "twilio_inbound",
            }
    finally:
        await ledger.close()
