"""A customer who replied STOP: the shipment view says which channel was suppressed and why."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from starters.shipments import register_shipment, shipment_view
from storage import open_ledger
from tests.factories import ANY_TIME_POLICY, at, make_event, make_shipment
from tests.harness import eventually, running_worker
from trackflow.carriers.samples import random_tracking_number
from trackflow.models import CarrierStatus


async def test_a_suppressed_channel_shows_in_the_view_with_its_reason(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    shipment = make_shipment(tracking_number=random_tracking_number("ups"), order_value="300.00")
    ledger = open_ledger(str(tmp_path / "ledger.sqlite3"))
    try:  # an earlier shipment's STOP reply, remembered for the merchant
        await ledger.suppress("Acme", "sms", "+15025550123", "sms_stop")
    finally:
        await ledger.close()
    label = make_event(CarrierStatus.LABEL_CREATED, at(0), tracking_number=shipment.tracking_number)
    async with running_worker(client, task_queue, tmp_path, store_name="Acme"):
        with temporal_env.with_time_skipping_disabled():
            await register_shipment(
                client, shipment, ANY_TIME_POLICY, task_queue=task_queue, events=[label]
            )
        view = await eventually(
            lambda: shipment_view(client, shipment.tracking_number),
            lambda v: len(v.notifications) == 2,
            what="both channels decided",
        )
    shown = {(n.channel.value, n.outcome) for n in view.public().notifications}
    assert shown == {("email", "outbox"), ("sms", "suppressed:sms_stop")}
