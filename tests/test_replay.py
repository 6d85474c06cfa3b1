"""Replay guard: what was recorded still replays, and new runs still issue the same commands.

tests/histories/ keeps one recorded history per workflow shape that ships (written by
`make record-histories`, see tests/histories/record.py) with its command-sequence fingerprint,
and the policies the fixtures name (policies.jsonl). Every history must replay on the current
workflow code; every scenario is run again here and must issue exactly the recorded commands.
See docs/testing.md (Replay guard) for what to do when either fails.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.histories.fingerprint import (
    CommandSequenceChanged,
    Fingerprint,
    check,
    command,
)
from tests.histories.record import HISTORIES, fingerprint_path, history_path, replayer
from tests.histories.scenarios import SCENARIO_OF, SCENARIOS, Scenario, run_scenario
from workers.worker import WORKFLOWS

FIXTURES = sorted(HISTORIES.glob("*.json"))
SHAPES = [shape for scenario in SCENARIOS for shape in scenario.shapes]


def _load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def _expected(shape: str) -> Fingerprint:
    path = fingerprint_path(shape)
    assert path.exists(), f"{path} is missing: record it with `make record-histories`"
    return Fingerprint.parse(path.read_text())


def _test_id(shape: str) -> str:
    path = fingerprint_path(shape)
    return f"{Fingerprint.parse(path.read_text()).workflow}:{shape}" if path.exists() else shape


@pytest.mark.parametrize("path", FIXTURES, ids=lambda path: path.stem)
async def test_recorded_history_replays_on_the_current_code(path: Path) -> None:
    result = await replayer().replay_workflow(_load(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, (
        f"tests/histories/{path.name} no longer replays on the current workflow code: "
        f"{result.replay_failure!r}. Runs recorded like it may be in flight: keep their old "
        "commands behind workflow.patched(...), then re-record with `make record-histories`; "
        "see docs/testing.md (Replay guard)."
    )


def test_every_shipped_workflow_has_a_fixture() -> None:
    shipped = {workflow._Definition.must_from_class(cls).name for cls in WORKFLOWS}
    recorded = {_expected(shape).workflow for shape in SHAPES}
    assert shipped - recorded == set(), "add a scenario in tests/histories/scenarios.py"


@pytest.mark.parametrize("shape", SHAPES)
def test_fixture_was_recorded_with_its_fingerprint(shape: str) -> None:
    check(shape, _expected(shape), _load(history_path(shape)))


# One run of each scenario per test session, shared by the fixtures it records.
_fresh_runs: dict[str, asyncio.Task[dict[str, WorkflowHistory]]] = {}


async def _fresh(
    scenario: Scenario, env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, WorkflowHistory]:
    if scenario.name not in _fresh_runs:
        data_dir = tmp_path_factory.mktemp(scenario.name)
        _fresh_runs[scenario.name] = asyncio.ensure_future(run_scenario(scenario, env, data_dir))
    return await _fresh_runs[scenario.name]


@pytest.mark.parametrize("shape", SHAPES, ids=_test_id)
async def test_command_sequence_is_unchanged(
    shape: str, temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> None:
    history = (await _fresh(SCENARIO_OF[shape], temporal_env, tmp_path_factory))[shape]
    replayed = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, f"a fresh {shape} run does not replay"
    check(shape, _expected(shape), history)


# --- The checker itself ---------------------------------------------------------------------


def _doctored(shape: str, swap: tuple[str, str]) -> WorkflowHistory:
    """The fixture with the first `swap[0]` command moved after the `swap[1]` that follows it,
    as a workflow edit that reorders them would have recorded it."""
    history = _load(history_path(shape))
    events = list(history.events)
    first = next(i for i, e in enumerate(events) if command(e) == swap[0])
    second = next(i for i, e in enumerate(events) if i > first and command(e) == swap[1])
    events[first], events[second] = events[second], events[first]
    return WorkflowHistory(history.workflow_id, events)


def test_a_reordered_command_fails_with_what_to_do() -> None:
    shape = "shipment_lost_revival"
    tag = "activity tag_helpdesk"
    alert_after_tag = _doctored(shape, ("activity raise_alert", tag))
    with pytest.raises(CommandSequenceChanged) as failure:
        check(shape, _expected(shape), alert_after_tag)
    message = str(failure.value)
    assert message.startswith(
        "the command sequence of ShipmentTrackingWorkflow changed (shipment_lost_revival): "
        "if this is intended and old histories must still replay, guard the change with "
        "workflow.patched(...) and re-record with `make record-histories`; see docs/testing.md"
    )
    moved = f"+{tag}\n activity raise_alert\n-{tag}"
    assert moved in message


def test_a_different_activity_or_child_fails_the_check() -> None:
    shape = "shipment_return"
    history = _load(history_path(shape))
    child = next(e for e in history.events if command(e) == "child ReturnsWorkflow")
    child.start_child_workflow_execution_initiated_event_attributes.workflow_type.name = "Other"
    with pytest.raises(CommandSequenceChanged, match=r"\+child Other"):
        check(shape, _expected(shape), history)


@activity.defn(name="fingerprint_probe")
async def _probe_activity() -> str:
    return "done"


@workflow.defn(name="FingerprintProbe", sandboxed=False)
class _FingerprintProbeWorkflow:
    @workflow.run
    async def run(self) -> None:
        if workflow.patched("probe-patch"):
            await workflow.execute_local_activity(
                _probe_activity, start_to_close_timeout=timedelta(seconds=10)
            )
        await workflow.execute_activity(
            _probe_activity, start_to_close_timeout=timedelta(seconds=10)
        )


async def test_fingerprint_names_local_activities_and_patches(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str
) -> None:
    """Local activities and `workflow.patched` leave markers: they are named, not just 'marker'."""
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[_FingerprintProbeWorkflow],
        activities=[_probe_activity],
    ):
        with temporal_env.with_time_skipping_disabled():
            handle = await client.start_workflow(
                _FingerprintProbeWorkflow.run, id=f"probe-{task_queue}", task_queue=task_queue
            )
        await handle.result()
    fingerprint = Fingerprint.of(await handle.fetch_history())
    assert fingerprint == Fingerprint(
        workflow="FingerprintProbe",
        commands=(
            "patch probe-patch",
            "upsert search attributes",  # TemporalChangeVersion, set by workflow.patched
            "local activity fingerprint_probe",
            "activity fingerprint_probe",
            "complete",
        ),
    )
