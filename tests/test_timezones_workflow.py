"""Every region source resolves inside the workflow sandbox and the first message goes out.

A worker process touches `pytz.country_timezones` for the first time inside a workflow; pytz
reads that table lazily from disk, which the sandbox forbids. Each test starts from a fresh,
unloaded table, as a freshly started worker has.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytz
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from starters.shipments import register_shipment, shipment_view, signal_event
from tests.factories import ANY_TIME_POLICY, at, make_address, make_event, make_shipment
from tests.harness import eventually, outbox, running_worker, sent
from trackflow.carriers.samples import random_tracking_number
from trackflow.models import CarrierStatus

# (country, province_code) -> the zone the customer gets
REGIONS = {
    ("US", "WA"): "America/Los_Angeles",
    ("CA", "BC"): "America/Vancouver",
    ("AU", "WA"): "Australia/Perth",
    ("RU", None): "Europe/Moscow",
    ("GB", None): "Europe/London",
    ("DE", None): "Europe/Berlin",
    ("FR", None): "Europe/Paris",
    ("JP", None): "Asia/Tokyo",
    ("BR", None): "America/Sao_Paulo",
    ("IN", None): "Asia/Kolkata",
    ("ZA", None): "Africa/Johannesburg",
}


@pytest.fixture
def fresh_country_table(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = type(pytz.country_timezones)()  # the lazy table as a new process has it
    monkeypatch.setattr(pytz, "country_timezones", fresh)


async def test_customers_without_a_timezone_get_their_first_message_in_every_region(
    temporal_env: WorkflowEnvironment,
    client: Client,
    task_queue: str,
    tmp_path: Path,
    fresh_country_table: None,
) -> None:
    shipments = {
        region: make_shipment(
            tracking_number=random_tracking_number("ups"),
            address=make_address(province_code=region[1], country_code=region[0]),
        )
        for region in REGIONS
    }
    async with running_worker(client, task_queue, tmp_path):
        with temporal_env.with_time_skipping_disabled():
            for shipment in shipments.values():
                await register_shipment(client, shipment, ANY_TIME_POLICY, task_queue=task_queue)
            await asyncio.gather(
                *(
                    signal_event(
                        client,
                        make_event(
                            CarrierStatus.IN_TRANSIT, at(1), tracking_number=s.tracking_number
                        ),
                    )
                    for s in shipments.values()
                )
            )
            for region, shipment in shipments.items():
                records = await eventually(
                    lambda s=shipment: outbox(tmp_path, s.tracking_number),  # type: ignore[misc]
                    lambda r: len(sent(r)) >= 1,
                    what=f"first message to {region}",
                )
                assert sent(records) == [("in_transit", "email")], region
                view = await shipment_view(client, shipment.tracking_number)
                assert view.timezone == REGIONS[region], region
