"""ShipmentTrackingWorkflow on the real dev server, with an in-process worker."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from starters.shipments import register_shipment, shipment_view, signal_event
from tests.factories import ANY_TIME_POLICY, at, make_event, make_shipment
from tests.harness import eventually, outbox, running_worker, sent
from trackflow.carriers.samples import random_tracking_number
from trackflow.contracts import NEXT_ACTION, STATUS
from trackflow.models import CarrierStatus, ExceptionKind, Shipment, ShippingSpeed
from trackflow.policy import ShipmentView

POLICY = ANY_TIME_POLICY
MILESTONES = [
    CarrierStatus.LABEL_CREATED,
    CarrierStatus.IN_TRANSIT,
    CarrierStatus.OUT_FOR_DELIVERY,
    CarrierStatus.DELIVERED,
]


def _unique_shipment(**overrides: object) -> Shipment:
    number = random_tracking_number("ups")
    return make_shipment(tracking_number=number, **overrides)  # type: ignore[arg-type]


async def _messages_count(data_dir: Path, shipment: Shipment, count: int) -> list[tuple[str, str]]:
    records = await eventually(
        lambda: outbox(data_dir, shipment.tracking_number),
        lambda r: len(r) >= count,
        what=f"{count} messages for {shipment.tracking_number}",
    )
    return sent(records)


async def test_happy_path_sends_each_milestone_once_per_channel(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    shipment = _unique_shipment(order_value="212.50")
    async with running_worker(client, task_queue, tmp_path):
        with temporal_env.with_time_skipping_disabled():
            handle = (
                await register_shipment(client, shipment, POLICY, task_queue=task_queue)
            ).handle
        for hour, status in enumerate(MILESTONES):
            await signal_event(
                client, make_event(status, at(hour), tracking_number=shipment.tracking_number)
            )
        messages = await _messages_count(tmp_path, shipment, 8)
        assert messages == [
            (status.value, channel) for status in MILESTONES for channel in ("email", "sms")
        ]
        view = await shipment_view(client, shipment.tracking_number)
        assert view.status == "delivered"
        assert view.next_action.kind == "review_request"
        description = await handle.describe()
        assert description.typed_search_attributes.get(STATUS) == "delivered"
        assert description.typed_search_attributes.get(NEXT_ACTION) == "review_request"

        await temporal_env.fast_forward(handle, POLICY.return_window + timedelta(minutes=1))
        result = await handle.result()
        assert result.status == "delivered"
        assert result.closed_reason == "lifecycle complete"
        assert len(result.notifications) == 10
    messages = sent(await outbox(tmp_path, shipment.tracking_number))
    assert messages[8:] == [("review_request", "email"), ("review_request", "sms")]


async def test_duplicate_and_out_of_order_events_send_nothing_more(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    shipment = _unique_shipment(order_value="40.00")
    number = shipment.tracking_number
    async with running_worker(client, task_queue, tmp_path):
        with temporal_env.with_time_skipping_disabled():
            await register_shipment(client, shipment, POLICY, task_queue=task_queue)
        out_for_delivery = make_event(
            CarrierStatus.OUT_FOR_DELIVERY, at(5), event_id="e-ofd", tracking_number=number
        )
        for _ in range(3):
            await signal_event(client, out_for_delivery)
        await signal_event(
            client, make_event(CarrierStatus.IN_TRANSIT, at(2), tracking_number=number)
        )
        await signal_event(
            client,
            make_event(
                CarrierStatus.EXCEPTION,
                at(3),
                exception=ExceptionKind.WEATHER_DELAY,
                tracking_number=number,
            ),
        )
        await signal_event(
            client, make_event(CarrierStatus.DELIVERED, at(9), tracking_number=number)
        )
        await _messages_count(tmp_path, shipment, 2)
        view = await eventually(
            lambda: shipment_view(client, number),
            lambda v: len(v.timeline) == 4,
            what="all four distinct events in the timeline",
        )
    assert sent(await outbox(tmp_path, number)) == [
        ("out_for_delivery", "email"),
        ("delivered", "email"),
    ]
    assert [entry.effect for entry in view.timeline] == [
        "ignored: milestone already reached",
        "ignored: older than the last milestone",
        "milestone",
        "milestone",
    ]


async def test_express_shipment_asks_for_a_review_after_the_express_hold(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    express = _unique_shipment(shipping_speed=ShippingSpeed.EXPRESS)
    standard = _unique_shipment()
    handles = {}
    async with running_worker(client, task_queue, tmp_path):
        for shipment in (express, standard):
            with temporal_env.with_time_skipping_disabled():
                handles[shipment.shipping_speed] = (
                    await register_shipment(client, shipment, POLICY, task_queue=task_queue)
                ).handle
            delivered = make_event(
                CarrierStatus.DELIVERED, at(1), tracking_number=shipment.tracking_number
            )
            await signal_event(client, delivered)
            await _messages_count(tmp_path, shipment, 1)

        express_hold = POLICY.express.post_delivery_hold
        for handle in handles.values():
            await temporal_env.fast_forward(handle, express_hold + timedelta(minutes=1))
        await _messages_count(tmp_path, express, 2)
        assert sent(await outbox(tmp_path, standard.tracking_number)) == [("delivered", "email")]

        await temporal_env.fast_forward(handles[ShippingSpeed.STANDARD], timedelta(hours=12))
        await _messages_count(tmp_path, standard, 2)
        for handle in handles.values():
            await temporal_env.fast_forward(handle, POLICY.return_window)
            assert (await handle.result()).closed_reason == "lifecycle complete"
    for shipment in (express, standard):
        assert sent(await outbox(tmp_path, shipment.tracking_number)) == [
            ("delivered", "email"),
            ("review_request", "email"),
        ]


async def test_long_history_continues_as_new_without_losing_or_repeating_anything(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    policy = POLICY.model_copy(update={"continue_as_new_after_events": 10})
    shipment = _unique_shipment(order_value="212.50")
    number = shipment.tracking_number
    first_run = None
    async with running_worker(client, task_queue, tmp_path):
        with temporal_env.with_time_skipping_disabled():
            handle = (
                await register_shipment(client, shipment, policy, task_queue=task_queue)
            ).handle
        first_run = handle.result_run_id
        for hour, status in enumerate(MILESTONES):
            await signal_event(client, make_event(status, at(hour), tracking_number=number))
            await signal_event(client, make_event(status, at(hour), tracking_number=number))
        await _messages_count(tmp_path, shipment, 8)
        await temporal_env.fast_forward(
            client.get_workflow_handle(shipment.workflow_id), timedelta(hours=73)
        )
        final = client.get_workflow_handle(shipment.workflow_id, result_type=ShipmentView)
        result = await final.result()
        latest_run = (await final.describe()).run_id
    assert latest_run != first_run
    assert [e.effect for e in result.timeline] == ["milestone"] * 4
    assert len(result.notifications) == 10
    assert len(sent(await outbox(tmp_path, number))) == 10


async def test_support_url_from_settings_reaches_the_messages(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    shipment = _unique_shipment()
    url = "https://help.example.com/orders"
    async with running_worker(client, task_queue, tmp_path, support_url=url):
        with temporal_env.with_time_skipping_disabled():
            await register_shipment(client, shipment, POLICY, task_queue=task_queue)
        await signal_event(
            client,
            make_event(CarrierStatus.IN_TRANSIT, at(1), tracking_number=shipment.tracking_number),
        )
        records = await eventually(
            lambda: outbox(tmp_path, shipment.tracking_number), lambda r: len(r) >= 1
        )
    assert url in records[0].body
