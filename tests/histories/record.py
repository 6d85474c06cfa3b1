"""Record the replay fixtures from the current workflow code: `make record-histories`.

    .venv/bin/python -m tests.histories.record [scenario or fixture name ...]

Starts its own dev server (as tests/conftest.py does), runs each scenario of
`tests.histories.scenarios` against the real worker, replays what it recorded, and writes
tests/histories/<fixture>.json (the history) and <fixture>.fingerprint (its command sequence).
Record again after a deliberate change of a workflow's commands, and commit both files.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tests.conftest import temporal_cli
from tests.histories.fingerprint import Fingerprint
from tests.histories.scenarios import SCENARIO_OF, SCENARIOS, Scenario, run_scenario
from trackflow.contracts import ALL_KEYS
from workers.runtime import data_converter
from workers.worker import WORKFLOWS, sandbox_runner

HISTORIES = Path(__file__).parent


def replayer() -> Replayer:
    """The worker's workflows, sandbox and (key-less) data converter."""
    return Replayer(
        workflows=WORKFLOWS, data_converter=data_converter(None), workflow_runner=sandbox_runner()
    )


async def start_dev_server() -> WorkflowEnvironment:
    """The dev server tests/conftest.py starts: per-workflow time skipping, our attributes."""
    return await WorkflowEnvironment.start_time_skipping_v2(
        dev_server_existing_path=temporal_cli(),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
        ],
        search_attributes=ALL_KEYS,
        data_converter=data_converter(None),
    )


def fingerprint_path(shape: str) -> Path:
    return HISTORIES / f"{shape}.fingerprint"


def history_path(shape: str) -> Path:
    return HISTORIES / f"{shape}.json"


def save(shape: str, history: WorkflowHistory) -> str:
    text = history.to_json()
    history_path(shape).write_text(text)
    fingerprint = Fingerprint.of(history)
    fingerprint_path(shape).write_text(fingerprint.render(history_path(shape).name))
    return (
        f"{shape}: {fingerprint.workflow}, {len(history.events)} events, "
        f"{len(text.encode()) / 1024:.1f} KB, {len(fingerprint.commands)} commands"
    )


def chosen(names: list[str]) -> list[Scenario]:
    if not names:
        return list(SCENARIOS)
    by_name = {scenario.name: scenario for scenario in SCENARIOS} | SCENARIO_OF
    unknown = [name for name in names if name not in by_name]
    if unknown:
        known = ", ".join(sorted(by_name))
        raise SystemExit(f"unknown scenario or fixture {', '.join(unknown)} (known: {known})")
    return list(dict.fromkeys(by_name[name] for name in names))


async def record(scenarios: list[Scenario]) -> None:
    env = await start_dev_server()
    try:
        for scenario in scenarios:
            with tempfile.TemporaryDirectory(prefix="trackflow-record-") as data_dir:
                histories = await run_scenario(scenario, env, Path(data_dir))
            for shape, history in histories.items():
                result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
                if result.replay_failure is not None:
                    raise SystemExit(f"{shape} does not replay: {result.replay_failure!r}")
                print(save(shape, history), flush=True)
    finally:
        await env.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.histories.record", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("names", nargs="*", help="scenarios or fixtures to record (default: all)")
    args = parser.parse_args(argv)
    asyncio.run(record(chosen(args.names)))


if __name__ == "__main__":
    main(sys.argv[1:])
