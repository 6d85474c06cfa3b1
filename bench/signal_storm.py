"""A burst of carrier events for one shipment, unthrottled: `python -m bench.signal_storm`.

Starts its own dev server and worker, registers one shipment, sends `--events` maximum-size
carrier events as concurrent signals (`--concurrency` at a time, never waiting for the workflow)
and reports how long the workflow took to take them all in, how many workflow tasks the server
failed and why, and how long its runs' histories grew. A measurement, not a goal: while a
workflow task runs, the server buffers new signals and fails the task (FORCE_CLOSE_COMMAND)
once more than 100 are buffered, so a burst faster than the workflow's tasks holds it back
until the burst ends (tests/test_state_bounds.py sends in processed batches of 50 instead).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.testing import WorkflowEnvironment

from starters.shipments import register_shipment, shipment_view, signal_event
from tests.dev_server import all_runs
from trackflow.contracts import ALL_KEYS
from trackflow.models import CarrierEvent, CarrierStatus, Customer, Shipment
from trackflow.settings import Settings
from trackflow.tracking_policy import ALWAYS, TrackingPolicy
from workers.runtime import data_converter
from workers.worker import running_workers


def _events(tracking_number: str, count: int) -> list[CarrierEvent]:
    first_at = datetime.now(UTC) - timedelta(minutes=count + 60)
    return [
        CarrierEvent(
            tracking_number=tracking_number,
            status=CarrierStatus.LABEL_CREATED if i == 0 else CarrierStatus.IN_TRANSIT,
            occurred_at=first_at + timedelta(minutes=i),
            description=f"{i:05d}".ljust(500, "d"),
            location=f"{i:05d}".ljust(200, "l"),
            event_id=f"{i:05d}".ljust(200, "e"),
        )
        for i in range(count)
    ]


async def storm(events: int, concurrency: int, continue_as_new_after: int) -> None:
    cli = Path(sys.executable).parent / "temporal"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(cli) if cli.exists() else None,
        search_attributes=ALL_KEYS,
        data_converter=data_converter(None),
    )
    policy = TrackingPolicy(
        email_window=ALWAYS, sms_window=ALWAYS, continue_as_new_after_events=continue_as_new_after
    )
    shipment = Shipment(
        order_id="1001",
        tracking_number="1Z" + uuid.uuid4().hex[:16].upper(),
        carrier="UPS",
        customer=Customer(email="ada@example.com"),
        order_value=Decimal("49.00"),
    )
    batch = _events(shipment.tracking_number, events)
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            settings = Settings(task_queue="storm", data_dir=Path(data_dir))
            async with running_workers(env.client, settings):
                registered = await register_shipment(
                    env.client, shipment, policy, task_queue="storm"
                )
                start = time.perf_counter()
                for at in range(0, events, concurrency):
                    chunk = batch[at : at + concurrency]
                    await asyncio.gather(*(signal_event(env.client, e) for e in chunk))
                sent = time.perf_counter() - start
                while True:
                    view = await shipment_view(env.client, shipment.tracking_number)
                    if len(view.timeline) + view.timeline_omitted >= events:
                        break
                    await asyncio.sleep(0.2)
                processed = time.perf_counter() - start
                runs = await all_runs(
                    env.client, shipment.workflow_id, registered.handle.result_run_id or ""
                )
    finally:
        await env.shutdown()
    failed: Counter[str] = Counter(
        WorkflowTaskFailedCause.Name(e.workflow_task_failed_event_attributes.cause)
        for run in runs
        for e in run.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    )
    print(f"{events} events sent in {sent:.1f} s, all taken in after {processed:.1f} s")
    print(f"failed workflow tasks: {dict(failed) or 'none'}")
    for number, run in enumerate(runs, start=1):
        size = sum(e.ByteSize() for e in run.events)
        print(f"run {number}: {len(run.events)} history events, {size / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--continue-as-new-after", type=int, default=2_000)
    args = parser.parse_args()
    asyncio.run(storm(args.events, args.concurrency, args.continue_as_new_after))


if __name__ == "__main__":
    main()
