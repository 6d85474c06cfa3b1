"""The Twilio transport through the official SDK (async client) against the Twilio double,
over HTTP: the MessageSid is kept, the key rides in the status callback URL, each error class
maps to the seam's exceptions, Retry-After is reported, and reconciliation finds what the
double got by listing messages to the number."""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.channels.base import OutgoingMessage, PermanentFailure, ProviderUnavailable
from activities.channels.twilio import LocalPacing, PostgresPacing, TwilioTransport
from activities.exactly_once import Delivery, send_once
from starters.embedded import free_port
from starters.simulators.providers import ProviderDoubles, Rule, create_providers_app
from starters.simulators.providers.server import serving
from storage import LedgerRecord, open_ledger
from trackflow.models import Channel

ACCOUNT = "AC" + "2" * 32
TOKEN = "twilio-token"
SENDER = "+15005550006"
SERVICE = "MG" + "3" * 32
CUSTOMER = "+14155550123"
KEY = "1Z999/o-1:shipped:0:sms"


@pytest.fixture
def double() -> Iterator[tuple[str, ProviderDoubles]]:
    state = ProviderDoubles(twilio_account_sid=ACCOUNT, twilio_auth_token=TOKEN)
    with serving(create_providers_app(state)) as base_url:
        yield base_url, state


def message(
    key: str = KEY, to: str = CUSTOMER, body: str = "Acme: 1Z999 shipped"
) -> OutgoingMessage:
    return OutgoingMessage(
        idempotency_key=key,
        channel=Channel.SMS,
        to=to,
        body=body,
        tracking_number="1Z999",
        order_id="o-1",
    )


def transport(base_url: str, **kwargs: object) -> TwilioTransport:
    options: dict[str, object] = {
        "account_sid": ACCOUNT,
        "auth_token": TOKEN,
        "from_": SENDER,
        "base_url": base_url,
        "public_url": "https://trackflow.example.com",
    }
    options.update(kwargs)
    return TwilioTransport(**options)  # type: ignore[arg-type]


async def test_a_sent_sms_keeps_the_message_sid_and_carries_the_key(
    double: tuple[str, ProviderDoubles],
) -> None:
    base_url, state = double
    receipt = await transport(base_url).send(message())
    (sms,) = state.sms
    assert (receipt.transport, receipt.provider_message_id) == ("twilio", sms.sid)
    assert sms.sid.startswith("SM")
    assert (sms.to, sms.from_, sms.body) == (CUSTOMER, SENDER, "Acme: 1Z999 shipped")
    assert sms.status_callback == (
        "https://trackflow.example.com/webhooks/twilio/status?key=1Z999%2Fo-1%3Ashipped%3A0%3Asms"
    )
    assert sms.key == KEY


async def test_a_messaging_service_sends_instead_of_a_number(
    double: tuple[str, ProviderDoubles],
) -> None:
    base_url, state = double
    await transport(base_url, from_=None, messaging_service_sid=SERVICE).send(message())
    (sms,) = state.sms
    assert (sms.from_, sms.messaging_service_sid, sms.status) == (None, SERVICE, "accepted")


@pytest.mark.parametrize("code", [21211, 21614, 21610])
async def test_refused_numbers_are_permanent_with_twilios_code(
    double: tuple[str, ProviderDoubles], code: int
) -> None:
    base_url, state = double
    state.script(Rule("twilio", "error", code=code))
    with pytest.raises(PermanentFailure) as refused:
        await transport(base_url).send(message())
    assert refused.value.code == str(code)
    assert state.sms == []


async def test_invalid_number_a_stop_reply_and_a_wrong_token_are_permanent(
    double: tuple[str, ProviderDoubles],
) -> None:
    base_url, _ = double
    with pytest.raises(PermanentFailure) as invalid:
        await transport(base_url).send(message(to="+1555"))
    assert invalid.value.code == "21211"
    httpx.post(
        f"{base_url}/_double/twilio/inbound",
        json={"from": CUSTOMER, "to": SENDER, "body": "STOP", "account_sid": ACCOUNT},
    ).raise_for_status()
    with pytest.raises(PermanentFailure) as opted_out:
        await transport(base_url).send(message())
    assert opted_out.value.code == "21610"
    with pytest.raises(PermanentFailure) as unauthorized:
        await transport(base_url, auth_token="wrong").send(message(to="+14155550999"))
    assert unauthorized.value.code == "20003"


async def test_30007_is_accepted_now_and_reported_undelivered_later(
    double: tuple[str, ProviderDoubles],
) -> None:
    """Twilio answers 201 and reports carrier filtering (30007) in the status callback: the
    transport keeps the sid; the feedback webhook records the code."""
    base_url, state = double
    state.script(Rule("twilio", "error", code=30007))
    receipt = await transport(base_url, public_url=None).send(message())
    assert receipt.provider_message_id == state.sms[0].sid


async def test_429_reports_retry_after_and_5xx_is_unavailable(
    double: tuple[str, ProviderDoubles],
) -> None:
    base_url, state = double
    state.script(Rule("twilio", "429", retry_after=4))
    with pytest.raises(ProviderUnavailable) as limited:
        await transport(base_url).send(message())
    assert (limited.value.retry_after, limited.value.may_have_sent) == (4, False)
    for status in ("500", "503"):
        state.script(Rule("twilio", status))
        with pytest.raises(ProviderUnavailable) as failed:
            await transport(base_url).send(message())
        assert (failed.value.retry_after, failed.value.may_have_sent) == (None, False)
    assert state.sms == []


async def test_drop_stall_and_a_closed_port_are_unavailable(
    double: tuple[str, ProviderDoubles],
) -> None:
    base_url, state = double
    state.script(Rule("twilio", "drop"))
    with pytest.raises(ProviderUnavailable) as dropped:
        await transport(base_url).send(message())
    state.script(Rule("twilio", "stall", seconds=5))
    with pytest.raises(ProviderUnavailable) as stalled:
        await transport(base_url, timeout_s=0.5).send(message(key="k2", body="second"))
    assert [s.outcome for s in state.sms] == ["dropped", "stalled"]
    assert (dropped.value.may_have_sent, stalled.value.may_have_sent) == (True, True)
    with pytest.raises(ProviderUnavailable) as refused:
        await transport(f"http://127.0.0.1:{free_port()}").send(message())
    assert refused.value.may_have_sent is False


async def test_find_returns_the_message_the_double_got_and_none_otherwise(
    double: tuple[str, ProviderDoubles],
) -> None:
    base_url, state = double
    since = datetime.now(UTC)
    sms = transport(base_url)
    assert await sms.find(message(), since) is None
    state.script(Rule("twilio", "drop"))
    with pytest.raises(ProviderUnavailable):
        await sms.send(message())
    found = await sms.find(message(), since)
    assert found is not None and found.provider_message_id == state.sms[0].sid
    # Another text to the same number, another number, or before the claim: not this one.
    assert await sms.find(message(body="Acme: 1Z999 delivered"), since) is None
    assert await sms.find(message(to="+14155550100"), since) is None
    assert await sms.find(message(), since + timedelta(minutes=10)) is None
    # The key a status callback already reported wins over the listing.

    async def feedback(key: str) -> str | None:
        return "SM" + "f" * 32 if key == KEY else None

    known = await transport(base_url, feedback=feedback).find(message(), since)
    assert known is not None and known.provider_message_id == "SM" + "f" * 32


async def test_find_pages_through_a_busy_number(double: tuple[str, ProviderDoubles]) -> None:
    base_url, state = double
    since = datetime.now(UTC)
    sms = transport(base_url, public_url=None)
    await sms.send(message(body="the one"))
    for n in range(60):  # newer messages push it to the second page of 50
        await sms.send(message(key=f"k{n}", body=f"other {n}"))
    found = await sms.find(message(body="the one"), since)
    assert found is not None and found.provider_message_id == state.sms[0].sid


def template(key: str = KEY, body: str = "Acme: 1Z999 shipped") -> LedgerRecord:
    return LedgerRecord(
        idempotency_key=key,
        tracking_number="1Z999",
        order_id="o-1",
        trigger="in_transit",
        channel="sms",
        to=CUSTOMER,
        body=body,
        transport="twilio",
        sent_at=datetime.now(UTC),
    )


async def test_send_once_stores_the_sid_honours_retry_after_and_finds_a_dropped_text(
    double: tuple[str, ProviderDoubles], tmp_path: Path
) -> None:
    """Through the send activity's exactly-once step on a real ledger: Retry-After is the next
    retry's delay, the MessageSid lands on the ledger row, 21610 is recorded as a failure
    with its code, and after accept-then-drop the next attempt finds the text in Twilio's
    message list and records it instead of sending it again."""
    base_url, state = double
    ledger = open_ledger(str(tmp_path / "ledger.sqlite3"))

    async def send(key: str, body: str, owner: str = "worker-1") -> Delivery:
        return await send_once(
            ledger,
            transport(base_url),
            message(key, body=body),
            template(key, body),
            owner=owner,
            lease=timedelta(seconds=30),
        )

    try:
        state.script(Rule("twilio", "429", retry_after=3))
        with pytest.raises(ApplicationError) as limited:
            await send(KEY, "first")
        assert limited.value.next_retry_delay == timedelta(seconds=3)
        sent = await send(KEY, "first")
        row = await ledger.state(KEY)
        assert row is not None
        assert (row.status, row.transport, row.provider_message_id) == (
            "sent",
            "twilio",
            state.sms[0].sid,
        )
        assert sent.provider_message_id == state.sms[0].sid

        state.script(Rule("twilio", "error", code=21610))
        refused = await send("k-stopped", "second")
        assert (refused.outcome, refused.error_code) == ("failed", "21610")

        state.script(Rule("twilio", "drop"))
        with pytest.raises(ApplicationError):
            await send("k-dropped", "third")
        found = await send("k-dropped", "third", owner="worker-2")
        assert (found.outcome, found.already) == ("sent", True)
        assert found.provider_message_id == state.find_sms(key="k-dropped").sid
        assert [s.key for s in state.sms] == [KEY, "k-dropped"]  # none sent twice
    finally:
        await ledger.close()


async def test_find_skips_the_same_text_the_ledger_holds_under_another_key(
    double: tuple[str, ProviderDoubles],
) -> None:
    """Two messages of one shipment can read the same (another episode of one trigger): a
    crashed one must not be taken as sent because its twin went out."""
    base_url, state = double
    since = datetime.now(UTC)
    twin = await transport(base_url).send(message(key="episode-1"))
    owners = {twin.provider_message_id: "episode-1"}

    async def owner_of(sid: str) -> str | None:
        return owners.get(sid)

    sms = transport(base_url, owner_of=owner_of)
    assert await sms.find(message(key="episode-2"), since) is None  # never sent: send it
    found = await sms.find(message(key="episode-1"), since)
    assert found is not None and found.provider_message_id == twin.provider_message_id
    assert len(state.sms) == 1


POSTGRES = os.environ.get(
    "TRACKFLOW_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


def gaps(state: ProviderDoubles) -> list[float]:
    times = sorted(s.date_created for s in state.sms)
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]


async def test_a_senders_rate_holds_across_two_workers_on_postgresql(
    double: tuple[str, ProviderDoubles],
) -> None:
    """Two workers' transports (each its own connection) sending at once through one sender
    at 5 per second: Twilio is asked no faster than one message per 0.2 s (half of that is
    allowed for the loopback's jitter between the turn and the double's clock)."""
    base_url, state = double
    name = f"trackflow:twilio:test-{uuid.uuid4().hex}"
    workers = [
        transport(base_url, pacing=PostgresPacing(POSTGRES, name, per_second=5)) for _ in range(2)
    ]
    await asyncio.gather(
        *(workers[n % 2].send(message(key=f"k{n}", body=f"text {n}")) for n in range(6))
    )
    assert len(state.sms) == 6
    assert min(gaps(state)) >= 0.1, gaps(state)
    # Without pacing the same burst arrives together.
    state.sms.clear()
    await asyncio.gather(*(transport(base_url).send(message(key=f"f{n}")) for n in range(6)))
    assert min(gaps(state)) < 0.1


async def test_a_senders_rate_holds_in_one_process(double: tuple[str, ProviderDoubles]) -> None:
    base_url, state = double
    paced = transport(base_url, pacing=LocalPacing(per_second=5))
    await asyncio.gather(*(paced.send(message(key=f"k{n}")) for n in range(4)))
    assert len(state.sms) == 4
    assert min(gaps(state)) >= 0.1, gaps(state)


async def test_a_lost_database_means_no_turn_and_nothing_sent(
    double: tuple[str, ProviderDoubles],
) -> None:
    base_url, state = double
    dead = PostgresPacing(f"postgresql://postgres@127.0.0.1:{free_port()}/none", "x", 5)
    with pytest.raises(ProviderUnavailable) as unavailable:
        await transport(base_url, pacing=dead).send(message())
    assert unavailable.value.may_have_sent is False
    assert state.sms == []
