"""Durable timers on the real dev server, at the policy's real durations (time skipping)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from starters.shipments import (
    ShipmentClosed,
    register_shipment,
    request_return,
    shipment_view,
    signal_event,
)
from tests.factories import ANY_TIME_POLICY, at, make_event, make_shipment
from tests.harness import eventually, outbox, running_worker, sent, zone_at_local_hour
from trackflow.carriers.samples import random_tracking_number
from trackflow.contracts import STATUS
from trackflow.models import CarrierStatus, ExceptionKind, ReturnRequest, Shipment
from trackflow.policy import ShipmentView
from trackflow.tracking_policy import TrackingPolicy

DAYTIME = TrackingPolicy()  # real send windows; customers live where it is midday now


def _shipment(**overrides: Any) -> Shipment:
    number = random_tracking_number("ups")
    return make_shipment(tracking_number=number, order_value="300", **overrides)


async def _start(
    env: WorkflowEnvironment, client: Client, shipment: Shipment, policy: TrackingPolicy, tq: str
) -> WorkflowHandle[object, ShipmentView]:
    with env.with_time_skipping_disabled():
        return (await register_shipment(client, shipment, policy, task_queue=tq)).handle


async def _records(data_dir: Path, shipment: Shipment, count: int) -> list[Any]:
    return await eventually(
        lambda: outbox(data_dir, shipment.tracking_number),
        lambda records: len(records) >= count,
        what=f"{count} ledger records",
    )


async def test_lost_package_alerts_tags_and_revives_when_it_moves_again(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    shipment = _shipment(timezone=zone_at_local_hour(12))
    number = shipment.tracking_number
    policy = DAYTIME.model_copy(update={"stale_message_enabled": False})
    async with running_worker(client, task_queue, tmp_path):
        handle = await _start(temporal_env, client, shipment, policy, task_queue)
        await signal_event(
            client, make_event(CarrierStatus.IN_TRANSIT, at(0), tracking_number=number)
        )
        await _records(tmp_path, shipment, 2)

        await temporal_env.fast_forward(handle, policy.standard.lost_after + timedelta(minutes=5))
        records = await _records(tmp_path, shipment, 7)
        view = await shipment_view(client, number)
        status = (await handle.describe()).typed_search_attributes.get(STATUS)

        found = make_event(CarrierStatus.IN_TRANSIT, at(300), tracking_number=number)
        await signal_event(client, found)
        revived = await _records(tmp_path, shipment, 10)  # 2 messages + off the delayed list
        after = await shipment_view(client, number)

    assert view.status == "lost"
    assert status == "lost"
    assert sent(records) == [
        ("in_transit", "email"),
        ("in_transit", "sms"),
        ("lost", "email"),
        ("lost", "sms"),
    ]
    assert sorted((r.kind, r.trigger) for r in records if r.kind != "message") == [
        ("alert", "lost"),
        ("helpdesk", "auto_delay_notified"),  # with lost_package, one note
        ("klaviyo", "delayed_list_add"),
    ]
    assert sent(revived)[4:] == [("in_transit", "email"), ("in_transit", "sms")]
    assert any("moving again" in r.body for r in revived[7:] if r.kind == "message")
    assert [r.trigger for r in revived if r.kind == "klaviyo"] == [
        "delayed_list_add",
        "delayed_list_remove",
    ]
    assert after.status == "in_transit"


async def test_stale_shipment_gets_one_check_in_per_quiet_spell(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    shipment = _shipment(email="ada@example.com", phone=None)
    number = shipment.tracking_number
    stale_after = ANY_TIME_POLICY.standard.stale_after
    async with running_worker(client, task_queue, tmp_path):
        handle = await _start(temporal_env, client, shipment, ANY_TIME_POLICY, task_queue)
        await signal_event(
            client, make_event(CarrierStatus.IN_TRANSIT, at(0), tracking_number=number)
        )
        await _records(tmp_path, shipment, 1)

        await temporal_env.fast_forward(handle, stale_after + timedelta(minutes=1))
        await _records(tmp_path, shipment, 3)  # stale email + helpdesk tag
        await temporal_env.fast_forward(handle, stale_after + timedelta(minutes=1))
        quiet = await shipment_view(client, number)

        scan = make_event(CarrierStatus.IN_TRANSIT, at(100), tracking_number=number)
        await signal_event(client, scan)
        await eventually(
            lambda: shipment_view(client, number),
            lambda v: v.next_action.kind == "stale_check_in",
            what="stale timer re-armed by the new scan",
        )
        await temporal_env.fast_forward(handle, stale_after + timedelta(minutes=1))
        records = await _records(tmp_path, shipment, 5)

    assert quiet.next_action.kind == "declare_lost"
    assert sent(records) == [("in_transit", "email"), ("stale", "email"), ("stale", "email")]
    assert len({r.idempotency_key for r in records}) == len(records)


async def test_out_for_delivery_before_the_morning_waits_for_the_send_window(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    shipment = _shipment(timezone=zone_at_local_hour(5))
    number = shipment.tracking_number
    async with running_worker(client, task_queue, tmp_path):
        handle = await _start(temporal_env, client, shipment, DAYTIME, task_queue)
        ofd = make_event(CarrierStatus.OUT_FOR_DELIVERY, at(0), tracking_number=number)
        await signal_event(client, ofd)
        waiting = await eventually(
            lambda: shipment_view(client, number),
            lambda v: bool(v.waiting),
            what="out-for-delivery held until the morning",
        )
        assert await outbox(tmp_path, number) == []

        await temporal_env.fast_forward(handle, timedelta(hours=3, minutes=5))
        records = await _records(tmp_path, shipment, 2)
        after = await shipment_view(client, number)

    assert waiting.next_action.kind == "send_when_window_opens"
    assert waiting.next_action.due_local is not None
    assert " 08:00 " in waiting.next_action.due_local
    assert sent(records) == [("out_for_delivery", "email"), ("out_for_delivery", "sms")]
    assert after.waiting == []
    assert after.notes == []


async def test_held_message_that_became_obsolete_is_dropped_not_sent_late(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    shipment = _shipment(timezone=zone_at_local_hour(5), phone=None)
    number = shipment.tracking_number
    async with running_worker(client, task_queue, tmp_path):
        handle = await _start(temporal_env, client, shipment, DAYTIME, task_queue)
        for hour, status in enumerate([CarrierStatus.OUT_FOR_DELIVERY, CarrierStatus.DELIVERED]):
            await signal_event(client, make_event(status, at(hour), tracking_number=number))
        held = await eventually(
            lambda: shipment_view(client, number),
            lambda v: len(v.timeline) == 2,
            what="both events applied",
        )
        await temporal_env.fast_forward(handle, timedelta(hours=3, minutes=5))
        records = await _records(tmp_path, shipment, 1)
        view = await shipment_view(client, number)

    assert [p.send.trigger for p in held.waiting] == ["delivered"]
    assert sent(records) == [("delivered", "email")]
    dropped = [n for n in view.notes if n.kind == "dropped"]
    assert [n.key.split(":")[1] for n in dropped] == ["out_for_delivery"]
    assert "later milestone" in dropped[0].detail


async def test_return_within_72_hours_starts_the_returns_workflow(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    shipment = _shipment(phone=None)
    number = shipment.tracking_number
    async with running_worker(client, task_queue, tmp_path):
        handle = await _start(temporal_env, client, shipment, ANY_TIME_POLICY, task_queue)
        await signal_event(
            client, make_event(CarrierStatus.DELIVERED, at(0), tracking_number=number)
        )
        await _records(tmp_path, shipment, 1)
        await temporal_env.fast_forward(handle, timedelta(hours=30))
        await request_return(client, number, ReturnRequest(request_id="r-1", kind="refund"))
        await request_return(client, number, ReturnRequest(request_id="r-1", kind="refund"))
        # The three messages, the helpdesk tag and the return-opened alert (those two in the
        # background, in either order).
        records = await _records(tmp_path, shipment, 5)
        child = client.get_workflow_handle(f"return-{number}-1001-r-1")
        assert await child.result() == [f"{number}/1001:return_requested:r-1:email"]
        await temporal_env.fast_forward(handle, timedelta(hours=43))
        result = await handle.result()

    assert sent(records) == [
        ("delivered", "email"),
        ("review_request", "email"),
        ("return_requested", "email"),
    ]
    assert [(r.kind, r.trigger) for r in records if r.kind == "helpdesk"] == [
        ("helpdesk", "return_requested")
    ]
    assert result.closed_reason == "lifecycle complete"
    assert [n.kind for n in result.notes] == ["return_started"]


async def test_return_after_the_window_starts_nothing(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    shipment = _shipment(phone=None)
    number = shipment.tracking_number
    async with running_worker(client, task_queue, tmp_path):
        handle = await _start(temporal_env, client, shipment, ANY_TIME_POLICY, task_queue)
        await signal_event(
            client, make_event(CarrierStatus.DELIVERED, at(0), tracking_number=number)
        )
        await _records(tmp_path, shipment, 1)
        await temporal_env.fast_forward(handle, ANY_TIME_POLICY.return_window + timedelta(hours=1))
        await handle.result()
        try:
            await request_return(client, number, ReturnRequest(request_id="late", kind="return"))
        except ShipmentClosed as closed:
            refused = str(closed)
        records = await outbox(tmp_path, number)

    assert "return window is over" in refused
    assert sent(records) == [("delivered", "email"), ("review_request", "email")]
    assert not any(r.trigger == "return_requested" for r in records)


async def test_exception_episode_tags_the_helpdesk_and_skips_the_review(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    shipment = _shipment(phone=None)
    number = shipment.tracking_number
    events = [
        make_event(CarrierStatus.IN_TRANSIT, at(0), tracking_number=number),
        make_event(
            CarrierStatus.EXCEPTION, at(1), exception=ExceptionKind.ADDRESS_ISSUE,
            tracking_number=number,
        ),
        make_event(CarrierStatus.IN_TRANSIT, at(2), tracking_number=number),
        make_event(CarrierStatus.DELIVERED, at(3), tracking_number=number),
    ]  # fmt: skip
    async with running_worker(client, task_queue, tmp_path):
        handle = await _start(temporal_env, client, shipment, ANY_TIME_POLICY, task_queue)
        for event in events:
            await signal_event(client, event)
        await _records(tmp_path, shipment, 4)
        await temporal_env.fast_forward(handle, ANY_TIME_POLICY.return_window + timedelta(hours=1))
        result = await handle.result()
    records = await outbox(tmp_path, number)
    assert sent(records) == [
        ("in_transit", "email"),
        ("exception", "email"),
        ("delivered", "email"),
    ]
    assert [r.trigger for r in records if r.kind == "helpdesk"] == ["auto_delay_notified"]
    assert [entry.effect for entry in result.timeline] == [
        "milestone",
        "exception",
        "recovered",
        "milestone",
    ]
    assert [n.detail for n in result.notes if n.kind == "review"] == ["skipped: address_issue"]


async def test_a_wild_timestamp_and_a_burst_of_delays_end_to_end(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """Issue 7, in the workflow: a 9999-12-31 'delivered' is only noted; ten alternating
    delays in a burst send one exception message; a 'damaged' after them still goes out."""
    shipment = _shipment(phone=None)
    number = shipment.tracking_number
    wild = make_event(
        CarrierStatus.DELIVERED,
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        tracking_number=number,
        event_id="wild",
    )
    kinds = [ExceptionKind.WEATHER_DELAY, ExceptionKind.CARRIER_DELAY]
    burst = [
        make_event(
            CarrierStatus.EXCEPTION, at(1, minutes=i), exception=kinds[i % 2],
            tracking_number=number, event_id=f"x-{i}",
        )
        for i in range(10)
    ]  # fmt: skip
    damaged = make_event(
        CarrierStatus.EXCEPTION, at(2), exception=ExceptionKind.DAMAGED,
        tracking_number=number, event_id="bad",
    )  # fmt: skip
    async with running_worker(client, task_queue, tmp_path):
        await _start(temporal_env, client, shipment, ANY_TIME_POLICY, task_queue)
        await signal_event(
            client, make_event(CarrierStatus.IN_TRANSIT, at(0), tracking_number=number)
        )
        for event in [wild, *burst, damaged]:
            await signal_event(client, event)
        records = await _records(tmp_path, shipment, 5)  # 3 messages, 2 helpdesk tags
        view = await eventually(
            lambda: shipment_view(client, number),
            lambda v: any(e.exception == ExceptionKind.DAMAGED for e in v.timeline),
            what="the damaged event applied",
        )
    assert sent(records) == [
        ("in_transit", "email"),
        ("exception", "email"),
        ("exception", "email"),
    ]
    assert [r.exception for r in records if r.kind == "message"][1:] == [
        "weather_delay",
        "damaged",
    ]
    assert view.status == "exception"
    assert view.exception == ExceptionKind.DAMAGED
    assert [n.kind for n in view.notes].count("suppressed") == 9
    assert [n.key for n in view.notes if n.kind == "implausible_timestamp"] == ["api:wild"]
    assert all(e.occurred_at.year == 2026 for e in view.timeline)
