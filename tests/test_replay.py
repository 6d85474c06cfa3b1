"""Determinism: recorded histories must replay on the current workflow code.

`tests/histories/` keeps histories recorded by released versions; a change that breaks
their replay needs `workflow.patched`. Regenerate a fixture only for a new release:
`TRACKFLOW_RECORD_HISTORY=1 pytest tests/test_replay.py`.
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from starters.shipments import register_shipment, signal_event
from tests.factories import ANY_TIME_POLICY, at, make_event, make_shipment
from tests.harness import eventually, outbox, running_worker
from trackflow.models import CarrierStatus, ExceptionKind
from workers.worker import WORKFLOWS, sandbox_runner

HISTORIES = Path(__file__).parent / "histories"


def _replayer() -> Replayer:
    return Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=sandbox_runner(),
    )


async def test_full_lifecycle_history_replays_deterministically(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    shipment = make_shipment(
        tracking_number="1Z" + uuid.uuid4().hex[:16].upper(), order_value="500"
    )
    number = shipment.tracking_number
    events = [
        make_event(CarrierStatus.LABEL_CREATED, at(0), tracking_number=number),
        make_event(CarrierStatus.IN_TRANSIT, at(1), tracking_number=number),
        make_event(
            CarrierStatus.EXCEPTION, at(2), exception=ExceptionKind.WEATHER_DELAY,
            tracking_number=number,
        ),
        make_event(CarrierStatus.IN_TRANSIT, at(1), tracking_number=number),
        make_event(CarrierStatus.DELIVERED, at(9), tracking_number=number),
    ]  # fmt: skip
    async with running_worker(client, task_queue, tmp_path):
        with temporal_env.with_time_skipping_disabled():
            handle = await register_shipment(
                client, shipment, ANY_TIME_POLICY, task_queue=task_queue
            )
        for event in events:
            await signal_event(client, event)
        await eventually(
            lambda: outbox(tmp_path, number), lambda r: len(r) == 9, what="8 sends + 1 tag"
        )
        await temporal_env.fast_forward(handle, timedelta(hours=73))
        await handle.result()
    history = await handle.fetch_history()

    result = await _replayer().replay_workflow(history)
    assert result.replay_failure is None
    if os.environ.get("TRACKFLOW_RECORD_HISTORY"):
        (HISTORIES / "shipment_lifecycle_v1.json").write_text(history.to_json())


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_released_histories_still_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = await _replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None
