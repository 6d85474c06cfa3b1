"""Klaviyo over HTTP, through the official SDK, against the Klaviyo double (mounted under a
path prefix, as `trackflow simulate providers` does): an event per customer message in the
``klaviyo`` delivery mode (the send activity and a whole shipment on the dev server), Klaviyo's
unique_id deduplication after a lost attempt, 429 Retry-After honoured, refusals permanent, and
the delayed list kept once per key."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.channels import transports_for
from activities.channels.klaviyo import KlaviyoTransport, metric_name
from activities.exactly_once import PROVIDER_UNAVAILABLE
from activities.klaviyo import (
    KLAVIYO_KIND,
    KLAVIYO_REVISION,
    KLAVIYO_UNAVAILABLE,
    NOT_CONFIGURED,
    KlaviyoActivities,
    KlaviyoClient,
)
from activities.notify import NotificationActivities, message_facts, outgoing
from starters.shipments import register_shipment, signal_event
from starters.simulators.klaviyo import DELAYED_LIST_ID, KlaviyoDouble, create_klaviyo_app
from starters.simulators.providers.server import serving
from storage import Ledger, MessageState, open_ledger
from tests.factories import ANY_TIME_POLICY, at, make_event, make_shipment
from tests.harness import eventually, outbox, running_worker
from tests.test_worker_crash import worker_process
from trackflow.carriers.samples import random_tracking_number
from trackflow.contracts import SendBatch
from trackflow.effects import SendNotification, SyncDelayedList
from trackflow.messages import Brand, MessageContext, render
from trackflow.models import CarrierStatus, Channel, ExceptionKind, Trigger
from trackflow.settings import Settings

KEY = "pk_test_trackflow"
ETA = date(2026, 11, 24)
STALL_S = 120.0  # longer than the test: the stalled call never answers the killed worker


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    opened = open_ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def klaviyo() -> Iterator[tuple[KlaviyoDouble, str]]:
    """The double under /klaviyo; the URL given is the base URL, prefix included."""
    double = KlaviyoDouble(api_key=KEY)
    root = FastAPI()
    root.mount("/klaviyo", create_klaviyo_app(double))
    with serving(root) as url:
        yield double, f"{url}/klaviyo"


def settings(url: str, **overrides: object) -> Settings:
    return Settings(
        delivery_mode="klaviyo",
        klaviyo_api_key=KEY,
        klaviyo_base_url=url,
        **overrides,
    )


def about(tracking_number: str = "1Z999") -> MessageContext:
    return MessageContext.of(
        make_shipment(tracking_number=tracking_number, tracking_url="https://t.example/1Z999")
    )


def delayed(channel: Channel, to: str, tracking_number: str = "1Z999") -> SendNotification:
    return SendNotification(
        idempotency_key=f"{tracking_number}/1001:exception:1:{channel.value}",
        trigger=Trigger.EXCEPTION,
        channel=channel,
        to=to,
        exception=ExceptionKind.WEATHER_DELAY,
        episode=1,
        estimated_delivery=ETA,
    )


def batch(*sends: SendNotification) -> SendBatch:
    return SendBatch(about=about(), sends=list(sends))


def sender(ledger: Ledger, url: str, **overrides: object) -> NotificationActivities:
    return NotificationActivities(ledger, transports_for(settings(url, **overrides), ledger))


# --- events, one per customer message ------------------------------------------------------


def test_metric_names_follow_the_trigger() -> None:
    assert metric_name("out_for_delivery") == "Trackflow Out For Delivery"
    assert metric_name("in_transit") == "Trackflow In Transit"
    assert metric_name("lost") == "Trackflow Lost"
    assert metric_name("delivered") == "Trackflow Delivered"
    assert metric_name("exception", "weather_delay") == "Trackflow Delayed"
    assert metric_name("exception", "carrier_delay") == "Trackflow Delayed"
    assert metric_name("exception", "address_issue") == "Trackflow Exception"
    assert metric_name("stale") == "Trackflow No Recent Scan"


async def test_klaviyo_mode_picks_the_klaviyo_transport_per_channel(ledger: Ledger) -> None:
    both = transports_for(settings("http://127.0.0.1:9"), ledger)
    email_only = transports_for(
        Settings(email_delivery_mode="klaviyo", klaviyo_api_key=KEY), ledger
    )
    assert {c: t.name for c, t in both.items()} == {
        Channel.EMAIL: "klaviyo",
        Channel.SMS: "klaviyo",
    }
    assert {c: t.name for c, t in email_only.items()} == {
        Channel.EMAIL: "klaviyo",
        Channel.SMS: "outbox",
    }
    assert isinstance(both[Channel.EMAIL], KlaviyoTransport)


async def test_each_message_becomes_one_event_with_the_orders_facts(
    ledger: Ledger, klaviyo: tuple[KlaviyoDouble, str]
) -> None:
    double, url = klaviyo
    email = delayed(Channel.EMAIL, "ada@example.com")
    sms = delayed(Channel.SMS, "+15025550123")
    report = await ActivityEnvironment().run(
        sender(ledger, url).send_notifications, batch(email, sms)
    )

    assert [r.transport for r in report.receipts] == ["klaviyo", "klaviyo"]
    assert double.revisions == {KLAVIYO_REVISION}
    by_channel = {e["properties"]["channel"]: e for e in double.events}
    assert set(by_channel) == {"email", "sms"}
    for event in double.events:
        assert event["metric"] == "Trackflow Delayed"
        assert event["properties"] == event["properties"] | {
            "order_id": "1001",
            "order_name": "#1001",
            "tracking_number": "1Z999",
            "tracking_url": "https://t.example/1Z999",
            "carrier": "ups",
            "estimated_delivery": "2026-11-24",
            "exception": "weather_delay",
            "trigger": "exception",
        }
        assert event["time"]
    assert by_channel["email"]["profile"] == {"email": "ada@example.com", "first_name": "Ada"}
    assert by_channel["sms"]["profile"] == {"phone_number": "+15025550123", "first_name": "Ada"}
    assert by_channel["email"]["unique_id"] == email.idempotency_key
    assert by_channel["sms"]["unique_id"] == sms.idempotency_key
    rows = {r.channel: r for r in await ledger.list(tracking_number="1Z999")}
    assert {(c, r.transport, r.kind) for c, r in rows.items()} == {
        ("email", "klaviyo", "message"),
        ("sms", "klaviyo", "message"),
    }


async def test_a_settled_message_is_not_sent_again(
    ledger: Ledger, klaviyo: tuple[KlaviyoDouble, str]
) -> None:
    double, url = klaviyo
    activities = sender(ledger, url)
    env = ActivityEnvironment()
    first = await env.run(activities.send_notifications, batch(delayed(Channel.EMAIL, "a@b.co")))
    again = await env.run(activities.send_notifications, batch(delayed(Channel.EMAIL, "a@b.co")))
    assert (first.receipts[0].already_sent, again.receipts[0].already_sent) == (False, True)
    assert (double.received, len(double.events)) == (1, 1)


async def test_after_a_lost_attempt_klaviyo_deduplicates_the_resent_event(
    ledger: Ledger, klaviyo: tuple[KlaviyoDouble, str]
) -> None:
    """An attempt reached Klaviyo and died before writing the ledger: its claim expires, the
    next attempt cannot ask Klaviyo, so it sends again under the same unique_id, and Klaviyo
    keeps one event."""
    double, url = klaviyo
    send = delayed(Channel.EMAIL, "ada@example.com")
    context = about()
    message = outgoing(context, send, render(context, send, Brand()))
    client = KlaviyoClient(KEY, base_url=url)
    await KlaviyoTransport(client).send(message)  # what the lost attempt got through
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    claim = await ledger.claim(
        send.idempotency_key, "lost-attempt", timedelta(seconds=30), now=long_ago
    )
    assert claim.ours

    report = await ActivityEnvironment().run(sender(ledger, url).send_notifications, batch(send))

    assert report.receipts[0].transport == "klaviyo"
    assert double.received == 2
    assert [e["unique_id"] for e in double.events] == [send.idempotency_key]
    (row,) = await ledger.list(tracking_number="1Z999")
    assert (row.transport, row.idempotency_key) == ("klaviyo", send.idempotency_key)


async def test_429_waits_for_retry_after_then_sends_once(
    ledger: Ledger, klaviyo: tuple[KlaviyoDouble, str]
) -> None:
    double, url = klaviyo
    double.script.append({"status": 429, "retry_after": 7, "path": "/api/events"})
    activities = sender(ledger, url)
    env = ActivityEnvironment()
    with pytest.raises(ApplicationError) as throttled:
        await env.run(activities.send_notifications, batch(delayed(Channel.EMAIL, "a@b.co")))
    assert throttled.value.type == PROVIDER_UNAVAILABLE
    assert throttled.value.next_retry_delay == timedelta(seconds=7)
    assert not throttled.value.non_retryable
    assert double.events == []

    report = await env.run(activities.send_notifications, batch(delayed(Channel.EMAIL, "a@b.co")))
    assert report.receipts[0].transport == "klaviyo"
    assert len(double.events) == 1


async def test_a_5xx_is_retried_without_a_delay_of_its_own(
    ledger: Ledger, klaviyo: tuple[KlaviyoDouble, str]
) -> None:
    double, url = klaviyo
    double.script.append({"status": 503})
    with pytest.raises(ApplicationError) as unavailable:
        await ActivityEnvironment().run(
            sender(ledger, url).send_notifications, batch(delayed(Channel.SMS, "+15025550123"))
        )
    assert (unavailable.value.type, unavailable.value.next_retry_delay) == (
        PROVIDER_UNAVAILABLE,
        None,
    )
    assert double.events == []


async def test_refusals_are_permanent_with_klaviyos_error_code(
    ledger: Ledger, klaviyo: tuple[KlaviyoDouble, str]
) -> None:
    double, url = klaviyo
    wrong_key = NotificationActivities(
        ledger,
        transports_for(
            Settings(delivery_mode="klaviyo", klaviyo_api_key="pk_wrong", klaviyo_base_url=url),
            ledger,
        ),
    )
    env = ActivityEnvironment()
    refused = await env.run(wrong_key.send_notifications, batch(delayed(Channel.EMAIL, "a@b.co")))
    invalid = await env.run(
        sender(ledger, url).send_notifications, batch(delayed(Channel.SMS, "+1 502 555"))
    )
    assert refused.receipts[0].transport == "klaviyo:failed:not_authenticated"
    assert invalid.receipts[0].transport == "klaviyo:failed:invalid"
    assert double.events == []
    failed = await ledger.state(delayed(Channel.SMS, "").idempotency_key)
    assert failed is not None and failed.error_detail is not None
    assert "phone number" in failed.error_detail


async def test_the_double_requires_the_revision_header_as_klaviyo_does(
    klaviyo: tuple[KlaviyoDouble, str],
) -> None:
    double, url = klaviyo
    event = {"data": {"type": "event", "attributes": {}}}
    async with httpx.AsyncClient() as http:
        missing = await http.post(
            f"{url}/api/events", json=event, headers={"Authorization": f"Klaviyo-API-Key {KEY}"}
        )
        unauthenticated = await http.post(
            f"{url}/api/events", json=event, headers={"revision": KLAVIYO_REVISION}
        )
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["code"] == "invalid"
    assert "revision" in missing.json()["errors"][0]["detail"]
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["errors"][0]["code"] == "not_authenticated"
    assert double.received == 0


def test_message_facts_carry_what_a_flow_needs() -> None:
    facts = message_facts(about(), delayed(Channel.EMAIL, "ada@example.com"))
    assert facts == {
        "trigger": "exception",
        "exception": "weather_delay",
        "carrier": "ups",
        "tracking_url": "https://t.example/1Z999",
        "estimated_delivery": "2026-11-24",
        "order_name": "#1001",
        "first_name": "Ada",
    }


async def test_a_shipment_in_klaviyo_mode_sends_its_messages_as_events(
    temporal_env: WorkflowEnvironment,
    client: Client,
    task_queue: str,
    tmp_path: Path,
    klaviyo: tuple[KlaviyoDouble, str],
) -> None:
    """The whole path on the dev server: the workflow decides, the send activity hands each
    message to Klaviyo as an event, the ledger records transport klaviyo."""
    double, url = klaviyo
    number = random_tracking_number("ups")
    shipment = make_shipment(tracking_number=number, order_value="300.00")
    config = {"delivery_mode": "klaviyo", "klaviyo_api_key": KEY, "klaviyo_base_url": url}
    async with running_worker(client, task_queue, tmp_path, **config):
        with temporal_env.with_time_skipping_disabled():
            label = make_event(CarrierStatus.LABEL_CREATED, at(0), tracking_number=number)
            await register_shipment(
                client, shipment, ANY_TIME_POLICY, task_queue=task_queue, events=[label]
            )
            records = await eventually(
                lambda: outbox(tmp_path, number),
                lambda r: len([x for x in r if x.kind == "message"]) >= 2,
                what="both channels recorded",
            )
    messages = [r for r in records if r.kind == "message"]
    assert {(r.channel, r.transport) for r in messages} == {
        ("email", "klaviyo"),
        ("sms", "klaviyo"),
    }
    ours = [e for e in double.events if e["properties"]["tracking_number"] == number]
    assert sorted((e["metric"], e["properties"]["channel"]) for e in ours) == [
        ("Trackflow Label Created", "email"),
        ("Trackflow Label Created", "sms"),
    ]
    assert {e["unique_id"] for e in ours} == {r.idempotency_key for r in messages}


async def test_a_worker_killed_mid_event_leaves_one_event_per_message(
    temporal_env: WorkflowEnvironment,
    client: Client,
    temporal_address: str,
    task_queue: str,
    tmp_path: Path,
    klaviyo: tuple[KlaviyoDouble, str],
) -> None:
    """A worker process is SIGKILLed while Klaviyo holds its first event unanswered; the next
    worker takes the expired claim over, sends again (Klaviyo cannot be asked), and Klaviyo's
    unique_id keeps one event per message: nothing lost, nothing twice, nothing uncertain."""
    double, url = klaviyo
    double.script.append({"action": "stall", "seconds": STALL_S, "path": "/api/events"})
    number = random_tracking_number("ups")
    shipment = make_shipment(tracking_number=number, order_value="300.00")
    data_dir = tmp_path / "worker"  # both workers share its SQLite ledger
    env = {
        "TRACKFLOW_DELIVERY_MODE": "klaviyo",
        "TRACKFLOW_KLAVIYO_API_KEY": KEY,
        "TRACKFLOW_KLAVIYO_BASE_URL": url,
        "TRACKFLOW_PROVIDER_TIMEOUT_S": "15",
    }

    async def received() -> int:
        return double.received

    async def rows() -> list[MessageState]:
        ledger = open_ledger(str(data_dir / "ledger.sqlite3"))
        try:
            return [r for r in await ledger.states(number) if r.kind == "message"]
        finally:
            await ledger.close()

    with worker_process(temporal_address, task_queue, data_dir, **env) as first:
        with temporal_env.with_time_skipping_disabled():
            label = make_event(CarrierStatus.LABEL_CREATED, at(0), tracking_number=number)
            await register_shipment(
                client, shipment, ANY_TIME_POLICY, task_queue=task_queue, events=[label]
            )
        await eventually(received, lambda n: n == 1, what="Klaviyo holding the first event")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    with worker_process(temporal_address, task_queue, data_dir, **env):
        settled = await eventually(
            rows,
            lambda found: len(found) == 2 and all(r.status == "sent" for r in found),
            deadline_s=120,
            what="both messages sent",
        )

    assert {(r.channel, r.transport) for r in settled} == {("email", "klaviyo"), ("sms", "klaviyo")}
    assert double.received == 3  # the stalled event, sent again, and the text
    ours = [e for e in double.events if e["properties"]["tracking_number"] == number]
    assert sorted(e["unique_id"] for e in ours) == sorted(r.idempotency_key for r in settled)


# --- the delayed list ------------------------------------------------------------------------


def sync(member: bool, key: str | None = None, **overrides: object) -> SyncDelayedList:
    fields: dict[str, object] = {
        "idempotency_key": key or f"1Z999/1001:klaviyo:delayed:{'add' if member else 'remove'}:1",
        "member": member,
        "customer_email": "ada@example.com",
        "customer_phone": "+15025550123",
        "first_name": "Ada",
        "tracking_number": "1Z999",
        "order_id": "1001",
    }
    fields.update(overrides)
    return SyncDelayedList(**fields)


def list_activities(ledger: Ledger, url: str) -> KlaviyoActivities:
    return KlaviyoActivities.from_settings(
        Settings(
            klaviyo_api_key=KEY, klaviyo_base_url=url, klaviyo_delayed_list_id=DELAYED_LIST_ID
        ),
        ledger,
    )


async def test_a_delayed_customer_is_added_once_and_removed_once(
    ledger: Ledger, klaviyo: tuple[KlaviyoDouble, str]
) -> None:
    double, url = klaviyo
    activities = list_activities(ledger, url)
    env = ActivityEnvironment()

    added = await env.run(activities.sync_delayed_list, sync(True))
    added_again = await env.run(activities.sync_delayed_list, sync(True))
    members = double.members(DELAYED_LIST_ID)
    assert (added.transport, added.already_recorded, added_again.already_recorded) == (
        "klaviyo",
        False,
        True,
    )
    assert members["emails"] == ["ada@example.com"]
    assert members["profiles"][0]["first_name"] == "Ada"
    assert len(double.profiles) == 1

    removed = await env.run(activities.sync_delayed_list, sync(False))
    removed_again = await env.run(activities.sync_delayed_list, sync(False))
    assert (removed.transport, removed.already_recorded, removed_again.already_recorded) == (
        "klaviyo",
        False,
        True,
    )
    assert double.members(DELAYED_LIST_ID)["profiles"] == []
    assert len(double.profiles) == 1  # found again by its email (409 duplicate_profile)
    rows = {r.idempotency_key: r for r in await ledger.list(tracking_number="1Z999")}
    assert {r.kind for r in rows.values()} == {KLAVIYO_KIND}
    assert {r.trigger for r in rows.values()} == {"delayed_list_add", "delayed_list_remove"}
    assert {r.provider_message_id for r in rows.values()} == set(double.profiles)


async def test_the_double_lists_members_over_http(
    ledger: Ledger, klaviyo: tuple[KlaviyoDouble, str]
) -> None:
    double, url = klaviyo
    await ActivityEnvironment().run(
        list_activities(ledger, url).sync_delayed_list, sync(True, customer_email=None)
    )
    async with httpx.AsyncClient() as http:
        listed = (await http.get(f"{url}/_double/lists/{DELAYED_LIST_ID}")).json()
        await http.post(f"{url}/_double/reset")
    assert (listed["emails"], listed["phone_numbers"]) == ([], ["+15025550123"])
    assert double.members(DELAYED_LIST_ID)["profiles"] == []


async def test_429_on_the_list_is_retried_after_retry_after(
    ledger: Ledger, klaviyo: tuple[KlaviyoDouble, str]
) -> None:
    double, url = klaviyo
    double.script.append({"status": 429, "retry_after": 11, "path": "/relationships/profiles"})
    activities = list_activities(ledger, url)
    env = ActivityEnvironment()
    with pytest.raises(ApplicationError) as throttled:
        await env.run(activities.sync_delayed_list, sync(True))
    assert throttled.value.type == KLAVIYO_UNAVAILABLE
    assert throttled.value.next_retry_delay == timedelta(seconds=11)
    assert not throttled.value.non_retryable
    assert await ledger.get(sync(True).idempotency_key) is None
    assert double.members(DELAYED_LIST_ID)["profiles"] == []

    done = await env.run(activities.sync_delayed_list, sync(True))
    assert (done.transport, done.already_recorded) == ("klaviyo", False)
    assert double.members(DELAYED_LIST_ID)["emails"] == ["ada@example.com"]
    assert len(double.profiles) == 1


async def test_a_refused_list_change_is_recorded_and_not_retried(
    ledger: Ledger, klaviyo: tuple[KlaviyoDouble, str]
) -> None:
    double, url = klaviyo
    activities = KlaviyoActivities(ledger, KlaviyoClient(KEY, base_url=url), "NoSuchList")
    env = ActivityEnvironment()
    refused = await env.run(activities.sync_delayed_list, sync(True))
    again = await env.run(activities.sync_delayed_list, sync(True))
    assert (refused.transport, again.already_recorded) == ("klaviyo-refused", True)
    record = await ledger.get(sync(True).idempotency_key)
    assert record is not None and "not_found" in record.body
    assert double.lists == {DELAYED_LIST_ID: []}


@pytest.mark.parametrize(
    ("api_key", "list_id"), [(None, DELAYED_LIST_ID), (KEY, None), (None, None)]
)
async def test_without_a_key_and_a_list_it_is_a_recorded_no_op(
    ledger: Ledger,
    klaviyo: tuple[KlaviyoDouble, str],
    api_key: str | None,
    list_id: str | None,
) -> None:
    double, url = klaviyo
    activities = KlaviyoActivities.from_settings(
        Settings(klaviyo_api_key=api_key, klaviyo_base_url=url, klaviyo_delayed_list_id=list_id),
        ledger,
    )
    receipt = await ActivityEnvironment().run(activities.sync_delayed_list, sync(True))
    assert (receipt.transport, receipt.already_recorded) == (NOT_CONFIGURED, False)
    record = await ledger.get(sync(True).idempotency_key)
    assert record is not None and record.kind == KLAVIYO_KIND
    assert (double.profiles, double.members(DELAYED_LIST_ID)["profiles"]) == ({}, [])
    assert double.revisions == set()  # Klaviyo was not called at all


async def test_a_delay_that_ends_while_its_add_is_throttled_leaves_the_customer_off_the_list(
    temporal_env: WorkflowEnvironment,
    client: Client,
    task_queue: str,
    tmp_path: Path,
    klaviyo: tuple[KlaviyoDouble, str],
) -> None:
    """The list changes of one shipment reach Klaviyo in the order they were decided: the
    delay's add, throttled and retried after Retry-After, comes before the remove decided
    meanwhile (both ran at once before, and the customer stayed on the list for ever)."""
    double, url = klaviyo
    number = random_tracking_number("ups")
    shipment = make_shipment(tracking_number=number, order_value="300.00")
    double.script.append({"status": 429, "retry_after": 3, "path": "/relationships/profiles"})
    config = {
        "klaviyo_api_key": KEY,
        "klaviyo_base_url": url,
        "klaviyo_delayed_list_id": DELAYED_LIST_ID,
    }
    async with running_worker(client, task_queue, tmp_path, **config):
        with temporal_env.with_time_skipping_disabled():
            await register_shipment(client, shipment, ANY_TIME_POLICY, task_queue=task_queue)
            delay = make_event(
                CarrierStatus.EXCEPTION,
                at(1),
                tracking_number=number,
                exception=ExceptionKind.WEATHER_DELAY,
            )
            await signal_event(client, delay)

            async def throttled() -> int:
                return len(double.script)

            await eventually(throttled, lambda left: left == 0, what="the add answered 429")
            moving = make_event(CarrierStatus.IN_TRANSIT, at(2), tracking_number=number)
            await signal_event(client, moving)
            records = await eventually(
                lambda: outbox(tmp_path, number),
                lambda found: len([r for r in found if r.kind == KLAVIYO_KIND]) == 2,
                what="the add and the remove recorded",
            )
    changes = sorted((r for r in records if r.kind == KLAVIYO_KIND), key=lambda r: r.sent_at)
    assert [r.trigger for r in changes] == ["delayed_list_add", "delayed_list_remove"]
    assert double.members(DELAYED_LIST_ID)["profiles"] == []
