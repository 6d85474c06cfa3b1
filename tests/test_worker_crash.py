"""A worker process killed with SIGKILL mid-lifecycle: nothing lost, nothing sent twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from starters.shipments import register_shipment, signal_event
from tests.factories import ANY_TIME_POLICY, at, make_event, make_shipment
from tests.harness import eventually, outbox, sent
from trackflow.carriers.samples import random_tracking_number
from trackflow.models import CarrierStatus

MILESTONES = [
    CarrierStatus.LABEL_CREATED,
    CarrierStatus.IN_TRANSIT,
    CarrierStatus.OUT_FOR_DELIVERY,
    CarrierStatus.DELIVERED,
]


@contextmanager
def worker_process(
    address: str, task_queue: str, data_dir: Path, **extra_env: str
) -> Iterator[subprocess.Popen[bytes]]:
    # The worker holds the policy the shipments name by digest, as a deployment's worker and
    # API share one policy file.
    data_dir.mkdir(parents=True, exist_ok=True)
    policy_file = data_dir / "policy.json"
    policy_file.write_text(ANY_TIME_POLICY.model_dump_json())
    env = dict(
        os.environ,
        TRACKFLOW_TEMPORAL_ADDRESS=address,
        TRACKFLOW_TASK_QUEUE=task_queue,
        TRACKFLOW_DATA_DIR=str(data_dir),
        TRACKFLOW_POLICY_FILE=str(policy_file),
        **extra_env,
    )
    process = subprocess.Popen([sys.executable, "-m", "starters.cli", "worker"], env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


async def test_sigkilled_worker_resumes_without_losing_or_repeating_messages(
    temporal_env: WorkflowEnvironment,
    client: Client,
    temporal_address: str,
    task_queue: str,
    tmp_path: Path,
) -> None:
    shipment = make_shipment(tracking_number=random_tracking_number("ups"), order_value="300.00")
    number = shipment.tracking_number
    events = [make_event(s, at(h), tracking_number=number) for h, s in enumerate(MILESTONES)]
    with worker_process(temporal_address, task_queue, tmp_path) as first:
        with temporal_env.with_time_skipping_disabled():  # the worker answers registrations
            registered = await register_shipment(
                client, shipment, ANY_TIME_POLICY, task_queue=task_queue
            )
        handle = registered.handle
        await signal_event(client, events[0])
        await eventually(lambda: outbox(tmp_path, number), lambda r: len(r) == 2, what="label")
        await signal_event(client, events[1])
        await signal_event(client, events[2])
        await eventually(lambda: outbox(tmp_path, number), lambda r: len(r) >= 3, what="mid-send")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    await signal_event(client, events[3])
    await signal_event(client, events[2])

    with worker_process(temporal_address, task_queue, tmp_path):
        await eventually(
            lambda: outbox(tmp_path, number),
            lambda r: len(r) >= 8,
            deadline_s=90,
            what="every message after the restart",
        )
        await temporal_env.fast_forward(handle, timedelta(hours=73))
        result = await handle.result()

    expected = [status.value for status in MILESTONES] + ["review_request"]
    assert sent(await outbox(tmp_path, number)) == [
        (trigger, channel) for trigger in expected for channel in ("email", "sms")
    ]
    assert [n.trigger for n in result.notifications] == [
        trigger for trigger in expected for _ in ("email", "sms")
    ]


POSTGRES = os.environ.get(
    "TRACKFLOW_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


async def test_two_workers_on_a_postgres_ledger_send_each_message_once_across_a_crash(
    temporal_env: WorkflowEnvironment,
    client: Client,
    temporal_address: str,
    task_queue: str,
    tmp_path: Path,
) -> None:
    """The multi-worker deployment: two worker processes share the PostgreSQL ledger; one
    is killed mid-lifecycle; every message of three shipments still goes out exactly once."""
    shipments = [
        make_shipment(tracking_number=random_tracking_number("ups"), order_value="300")
        for _ in range(3)
    ]
    ledger = {"TRACKFLOW_LEDGER_URL": POSTGRES}

    async def all_sent(count: int) -> None:
        for shipment in shipments:
            await eventually(
                partial(outbox, tmp_path, shipment.tracking_number, ledger_url=POSTGRES),
                lambda r: len(r) >= count,
                deadline_s=90,
                what=f"{count} messages",
            )

    with (
        worker_process(temporal_address, task_queue, tmp_path / "a", **ledger) as first,
        worker_process(temporal_address, task_queue, tmp_path / "b", **ledger),
    ):
        with temporal_env.with_time_skipping_disabled():  # the workers answer registrations
            for shipment in shipments:
                await register_shipment(client, shipment, ANY_TIME_POLICY, task_queue=task_queue)
        for hour, status in enumerate(MILESTONES[:2]):
            for shipment in shipments:
                await signal_event(
                    client, make_event(status, at(hour), tracking_number=shipment.tracking_number)
                )
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        for hour, status in enumerate(MILESTONES[2:], start=2):
            for shipment in shipments:
                await signal_event(
                    client, make_event(status, at(hour), tracking_number=shipment.tracking_number)
                )
        await all_sent(8)

    for shipment in shipments:
        records = await outbox(tmp_path, shipment.tracking_number, ledger_url=POSTGRES)
        assert sent(records) == [
            (status.value, channel) for status in MILESTONES for channel in ("email", "sms")
        ]
