"""The workflow sandbox catches a clock read in the policy (workers/worker.py `sandbox_runner`).

Only the modules whose types cross the workflow boundary are shared with the host; the policy
is imported afresh inside the sandbox, where `datetime.now()` (like `time.time()` or `random`)
fails the workflow task. A test cannot edit trackflow/policy.py, so `careless_policy` hands
every fresh import of it (the sandbox's) a copy in which each public function first reads the
clock; the host keeps the module it imported at startup.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from types import FunctionType, ModuleType
from typing import Any

from temporalio import workflow

# Imported outside imports_passed_through(), so the sandbox imports its own copy.
from trackflow import policy

with workflow.unsafe.imports_passed_through():
    import pytest
    from temporalio.api.enums.v1 import EventType
    from temporalio.api.history.v1 import HistoryEvent
    from temporalio.client import Client, WorkflowHandle
    from temporalio.service import RPCError, RPCStatusCode
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import Worker
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    from tests.harness import eventually
    from tests.histories import scenarios
    from trackflow.shipment_state import ShipmentState
    from workers.worker import sandbox_runner

POLICY = "trackflow.policy"
CARELESS_EDIT = """

import functools as _functools
import types as _types
from datetime import datetime as _datetime


def _reads_the_clock(function):
    @_functools.wraps(function)
    def careless(*args, **kwargs):
        _datetime.now()  # the slip under test: the policy asks the clock instead of `now`
        return function(*args, **kwargs)

    return careless


for _name, _value in list(globals().items()):
    if (
        isinstance(_value, _types.FunctionType)
        and _value.__module__ == __name__
        and not _name.startswith("_")
    ):
        globals()[_name] = _reads_the_clock(_value)
"""


class _CarelessLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname: str) -> Any:
        source = Path(self.path).read_text() + CARELESS_EDIT
        return compile(source, self.path, "exec")


class _CarelessPolicyFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != POLICY:
            return None
        found = importlib.machinery.PathFinder.find_spec(fullname, path)
        assert found is not None and found.origin is not None
        loader = _CarelessLoader(fullname, found.origin)
        return importlib.util.spec_from_file_location(fullname, found.origin, loader=loader)


@pytest.fixture
def careless_policy() -> Iterator[None]:
    assert sys.modules[POLICY] is policy, "the host imported the real policy before the edit"
    finder = _CarelessPolicyFinder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
    assert not hasattr(policy, "_reads_the_clock"), "the host's policy stayed as it was"


@workflow.defn(name="PolicyProbe")
class _PolicyProbeWorkflow:
    """A throwaway workflow that asks the policy for its first step."""

    @workflow.run
    async def run(self) -> str:
        state = policy.on_start(ShipmentState(), workflow.now())
        return str(state.started_at)


async def _first_task_outcome(handle: WorkflowHandle[Any, Any]) -> HistoryEvent:
    """The first workflow task's end: completed, or failed (and retried, never completing)."""
    ends = {EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED}

    async def first_end() -> HistoryEvent | None:
        history = await handle.fetch_history()
        return next((e for e in history.events if e.event_type in ends), None)

    end = await eventually(first_end, lambda e: e is not None, what="the first workflow task")
    assert end is not None
    return end


def _restricted_clock_read(end: HistoryEvent) -> bool:
    failure = end.workflow_task_failed_event_attributes.failure
    return (
        end.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        and failure.application_failure_info.type == "RestrictedWorkflowAccessError"
        and "datetime.datetime.now" in failure.message
    )


async def _probe(client: Client, runner: SandboxedWorkflowRunner) -> HistoryEvent:
    task_queue = f"sandbox-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=task_queue, workflows=[_PolicyProbeWorkflow], workflow_runner=runner
    ):
        handle = await client.start_workflow(
            _PolicyProbeWorkflow.run, id=f"policy-probe-{task_queue}", task_queue=task_queue
        )
        end = await _first_task_outcome(handle)
        if end.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            await handle.terminate("probe done")
        else:
            await handle.result()
    return end


async def test_a_clock_read_in_the_policy_fails_the_workflow_task(
    careless_policy: None, client: Client
) -> None:
    end = await _probe(client, sandbox_runner())
    assert _restricted_clock_read(end), end


async def test_with_the_whole_package_passed_through_the_clock_read_goes_unseen(
    careless_policy: None, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: the same slip, with trackflow shared with the host as it was before."""
    careless = dict(vars(policy))
    exec(CARELESS_EDIT, careless)  # the host's copy gets the slip too
    for name, value in careless.items():
        if isinstance(value, FunctionType) and hasattr(policy, name):
            monkeypatch.setattr(policy, name, value)
    whole_package = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            "trackflow", "pydantic", "pytz"
        )
    )
    end = await _probe(client, whole_package)
    assert end.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED


def _started(handle: WorkflowHandle[Any, Any]) -> Callable[[], Awaitable[bool]]:
    async def started() -> bool:
        try:
            await handle.describe()
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            return False
        return True

    return started


async def test_a_clock_read_in_the_policy_fails_the_shipment_workflow(
    careless_policy: None, temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The real workflow, which imports the policy outside imports_passed_through(). Its
    registration (update-with-start) is never answered: the first task fails, so it is left
    waiting in the background while the task's failure is read from the history."""
    stage = scenarios.Stage(temporal_env, f"sandbox-{uuid.uuid4().hex[:8]}", tmp_path)
    parcel = scenarios.shipment()
    async with stage.worker():
        registering = asyncio.ensure_future(scenarios.register(stage, parcel, scenarios.ANY_TIME))
        handle = stage.client.get_workflow_handle(parcel.workflow_id)
        try:
            await eventually(_started(handle), bool, what=f"{handle.id} started")
            end = await _first_task_outcome(handle)
            await handle.terminate("probe done")
        finally:
            registering.cancel()
            with contextlib.suppress(BaseException):
                await registering
    assert _restricted_clock_read(end), end
