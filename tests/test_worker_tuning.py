"""TRACKFLOW_MAX_CACHED_WORKFLOWS and the slot settings reach the main worker; what the worker
says about its configuration at start."""

from __future__ import annotations

import importlib.util
import inspect
import logging
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.worker import Worker

import workflows.shipment as shipment_workflow
from tests.harness import running_worker
from trackflow.settings import Settings
from workers.worker import compile_sandboxed_packages, main_worker_tuning


def test_unset_the_cache_keeps_1000_workflows_and_the_slots_are_the_sdks() -> None:
    assert main_worker_tuning(Settings.from_env({})) == {"max_cached_workflows": 1000}


def test_the_environment_sets_the_cache_size_and_every_slot() -> None:
    settings = Settings.from_env(
        {
            "TRACKFLOW_MAX_CACHED_WORKFLOWS": "250",
            "TRACKFLOW_MAX_CONCURRENT_WORKFLOW_TASKS": "50",
            "TRACKFLOW_MAX_CONCURRENT_ACTIVITIES": "40",
            "TRACKFLOW_MAX_CONCURRENT_LOCAL_ACTIVITIES": "30",
        }
    )
    assert main_worker_tuning(settings) == {
        "max_cached_workflows": 250,
        "max_concurrent_workflow_tasks": 50,
        "max_concurrent_activities": 40,
        "max_concurrent_local_activities": 30,
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRACKFLOW_MAX_CACHED_WORKFLOWS", "-1"),
        ("TRACKFLOW_MAX_CONCURRENT_WORKFLOW_TASKS", "1"),  # the SDK needs 2 with a cache
        ("TRACKFLOW_MAX_CONCURRENT_ACTIVITIES", "0"),
        ("TRACKFLOW_MAX_CONCURRENT_LOCAL_ACTIVITIES", "0"),
    ],
)
def test_out_of_range_tuning_is_a_setting_error(name: str, value: str) -> None:
    with pytest.raises(ValidationError):
        Settings.from_env({name: value})


def test_the_sdk_worker_takes_the_tuning() -> None:
    """Every key names a parameter of the SDK's Worker (checked without a server)."""
    settings = Settings.from_env(
        {"TRACKFLOW_MAX_CACHED_WORKFLOWS": "0", "TRACKFLOW_MAX_CONCURRENT_ACTIVITIES": "7"}
    )
    tuning = main_worker_tuning(settings)
    bound = inspect.signature(Worker).bind(object(), task_queue="tq", **tuning)
    assert bound.arguments["max_cached_workflows"] == 0
    assert bound.arguments["max_concurrent_activities"] == 7
    full = main_worker_tuning(
        settings.model_copy(
            update={"max_concurrent_workflow_tasks": 4, "max_concurrent_local_activities": 3}
        )
    )
    assert set(full) <= set(inspect.signature(Worker).parameters)


def test_the_sandboxed_packages_get_bytecode_even_when_python_writes_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every workflow run imports the policy afresh in its sandbox: without bytecode on disk
    (PYTHONDONTWRITEBYTECODE=1 here) each import compiles the source again."""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    cached = Path(importlib.util.cache_from_source(inspect.getfile(shipment_workflow)))
    cached.unlink(missing_ok=True)
    compile_sandboxed_packages()
    assert cached.exists()


async def test_the_worker_says_once_at_start_that_no_support_contact_is_set(
    client: Client, task_queue: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 18, item 6: messages then give the sender's address, or no way at all."""
    caplog.set_level(logging.WARNING, logger="trackflow.worker")
    async with running_worker(client, task_queue, tmp_path, email_from="Acme <shop@acme.test>"):
        pass
    said = [r.getMessage() for r in caplog.records if r.name == "trackflow.worker"]
    assert len(said) == 1 and "TRACKFLOW_SUPPORT_EMAIL" in said[0], said
    assert "shop@acme.test" in said[0]

    caplog.clear()
    async with running_worker(client, task_queue, tmp_path, support_phone="+1 502 555 0100"):
        pass
    assert not [r for r in caplog.records if r.name == "trackflow.worker"]
