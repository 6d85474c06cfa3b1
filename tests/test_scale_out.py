"""Scale out: two worker processes and two API processes against one Temporal server and one
PostgreSQL ledger; 200 shipments registered and an event posted for each, every shipment's
requests alternating between the APIs; every message exactly once, and both workers sent some.

One event per shipment (not in_transit and delivered) keeps the test well under 30 s on two
cores: it scales the number of shipments and processes, not the work per shipment."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from itertools import product
from pathlib import Path

import asyncpg
import httpx
import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from tests.api_support import TOKEN, event_body, shipment_body, tracking_number
from tests.harness import eventually, free_port
from tests.test_worker_crash import POSTGRES, worker_process

SHIPMENTS = 200
TRIGGERS = ("in_transit",)
CHANNELS = ("email", "sms")
IN_FLIGHT = 16  # shipments whose requests are under way at once


@pytest.fixture
async def postgres_ledger() -> AsyncIterator[str]:
    """A ledger DSN whose tables live in a schema of their own, dropped afterwards."""
    schema = f"scale_out_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        # asyncpg passes unknown DSN parameters on as server settings
        yield f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}search_path={schema}"
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


@contextmanager
def api_process(
    address: str, task_queue: str, data_dir: Path, port: int, **extra_env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`trackflow api` on `port` (the same policy file as the workers')."""
    env = dict(
        os.environ,
        TRACKFLOW_TEMPORAL_ADDRESS=address,
        TRACKFLOW_TASK_QUEUE=task_queue,
        TRACKFLOW_DATA_DIR=str(data_dir),
        TRACKFLOW_API_TOKEN=TOKEN,
        **extra_env,
    )
    command = [sys.executable, "-m", "starters.cli", "api", "--port", str(port)]
    process = subprocess.Popen(command, env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


async def healthy(http: httpx.AsyncClient) -> int:
    try:
        return (await http.get("/healthz")).status_code
    except httpx.TransportError:
        return 0


async def workflow_pollers(client: Client, task_queue: str) -> set[str]:
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    described = await client.workflow_service.describe_task_queue(request)
    return {poller.identity for poller in described.pollers}


async def test_two_workers_and_two_apis_send_every_message_of_200_shipments_once(
    client: Client,
    temporal_address: str,
    task_queue: str,
    tmp_path: Path,
    postgres_ledger: str,
) -> None:
    ledger = {"TRACKFLOW_LEDGER_URL": postgres_ledger}
    ports = [free_port(), free_port()]
    numbers = [tracking_number() for _ in range(SHIPMENTS)]
    with ExitStack() as stack:
        workers = [
            stack.enter_context(
                worker_process(temporal_address, task_queue, tmp_path / w, **ledger)
            )
            for w in ("worker-a", "worker-b")
        ]
        policy = {"TRACKFLOW_POLICY_FILE": str(tmp_path / "worker-a" / "policy.json")}
        for n, port in enumerate(ports):
            data_dir = tmp_path / f"api-{n}"
            stack.enter_context(
                api_process(temporal_address, task_queue, data_dir, port, **ledger, **policy)
            )
        apis = [
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=60,
            )
            for port in ports
        ]
        try:
            for api in apis:
                await eventually(partial(healthy, api), lambda s: s == 200, what="API up")
            await eventually(
                lambda: workflow_pollers(client, task_queue),
                lambda p: len(p) >= 2,
                what="both workers polling",
            )
            statuses = await post_everything(apis, numbers)
        finally:
            for api in apis:
                await api.aclose()
        assert statuses == Counter({202: SHIPMENTS * (1 + len(TRIGGERS))})
        expected = SHIPMENTS * len(TRIGGERS) * len(CHANNELS)
        rows = await eventually(
            lambda: message_rows(postgres_ledger, numbers),
            lambda r: sum(row["status"] == "sent" for row in r) >= expected,
            deadline_s=60,
            what=f"{expected} messages",
        )
        worker_pids = {str(worker.pid) for worker in workers}

    # one row per idempotency key (a UNIQUE column); one key per shipment, trigger, channel
    assert Counter((r["tracking_number"], r["trigger"], r["channel"]) for r in rows) == Counter(
        product(numbers, TRIGGERS, CHANNELS)
    )
    assert {r["status"] for r in rows} == {"sent"}
    # the owner of a sent row is `host:pid/...` of the worker that sent it: both did
    assert {r["owner"].split("/")[0].rsplit(":", 1)[1] for r in rows} == worker_pids


async def post_everything(apis: list[httpx.AsyncClient], numbers: list[str]) -> Counter[int]:
    """Each shipment registered and its events posted in order, its requests alternating
    between the two APIs; IN_FLIGHT shipments at a time."""
    statuses: Counter[int] = Counter()
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(index: int, number: str) -> None:
        async with gate:
            requests = [("/v1/shipments", shipment_body(number))] + [
                (
                    "/v1/events",
                    event_body(
                        number,
                        trigger,
                        occurred_at=f"2026-11-20T{10 + hour:02d}:00:00Z",
                    ),
                )
                for hour, trigger in enumerate(TRIGGERS)
            ]
            for step, (path, body) in enumerate(requests):
                response = await apis[(index + step) % len(apis)].post(path, json=body)
                statuses[response.status_code] += 1

    await asyncio.gather(*(one(index, number) for index, number in enumerate(numbers)))
    return statuses


async def message_rows(dsn: str, numbers: list[str]) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await connection.fetch(
            'SELECT tracking_number, "trigger", channel, status, owner FROM notification_ledger '
            "WHERE kind = 'message' AND tracking_number = ANY($1::text[])",
            numbers,
        )
        return rows
    except asyncpg.UndefinedTableError:
        return []
    finally:
        await connection.close()
