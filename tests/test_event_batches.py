"""A webhook's events reach their shipment as one signal, not one signal per event."""

from __future__ import annotations

from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from starters.shipments import register_shipment, signal_or_keep_events
from tests.factories import ANY_TIME_POLICY, at, make_event, make_shipment
from tests.harness import eventually, outbox, running_worker, sent
from trackflow.carriers.samples import random_tracking_number
from trackflow.contracts import SIGNAL_CARRIER_EVENTS
from trackflow.models import CarrierStatus


def _number() -> str:
    return random_tracking_number("ups")


async def test_a_webhooks_history_of_events_is_one_signal_per_shipment(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    shipment = make_shipment(tracking_number=_number(), order_value="20")
    number = shipment.tracking_number
    unregistered = _number()
    history = [
        make_event(CarrierStatus.LABEL_CREATED, at(0), tracking_number=number),
        make_event(CarrierStatus.IN_TRANSIT, at(1), tracking_number=number),
        make_event(CarrierStatus.IN_TRANSIT, at(2), tracking_number=number, location="Memphis"),
        make_event(CarrierStatus.OUT_FOR_DELIVERY, at(3), tracking_number=number),
        make_event(CarrierStatus.IN_TRANSIT, at(0), tracking_number=unregistered),
    ]
    async with running_worker(client, task_queue, tmp_path):
        with temporal_env.with_time_skipping_disabled():
            handle = (
                await register_shipment(client, shipment, ANY_TIME_POLICY, task_queue=task_queue)
            ).handle
            matched = await signal_or_keep_events(client, history, task_queue=task_queue)
        records = await eventually(
            lambda: outbox(tmp_path, number), lambda r: len(r) >= 3, what="three milestones"
        )
        assert sent(records) == [
            ("label_created", "email"),
            ("in_transit", "email"),
            ("out_for_delivery", "email"),
        ]
        assert matched == 4
        signals = [
            event.workflow_execution_signaled_event_attributes.signal_name
            async for event in handle.fetch_history_events()
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        ]
        assert signals == [SIGNAL_CARRIER_EVENTS]
        kept = await client.get_workflow_handle(f"unmatched-{unregistered}").describe()
        assert kept.status == WorkflowExecutionStatus.RUNNING  # keeping it for a registration
