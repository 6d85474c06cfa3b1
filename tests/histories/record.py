"""Record the replay fixtures from the current workflow code: `make record-histories`.

    .venv/bin/python -m tests.histories.record [scenario or fixture name ...]

Starts its own dev server (as tests/conftest.py does), runs each scenario of
`tests.histories.scenarios` against the real worker, replays what it recorded, and writes
tests/histories/<fixture>.json (the history) and <fixture>.fingerprint (its command sequence).
Record again after a deliberate change of a workflow's commands, and commit both files.

Workflow inputs name their tracking policy by digest (`trackflow.policy_table`), as a worker
finds it in its ledger. tests/histories/policies.jsonl is that ledger for the fixtures: one
line per digest the fixtures name, with the policy's body; `replayer()` holds them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Interceptor, Replayer

from tests.dev_server import start_dev_server
from tests.histories.fingerprint import Fingerprint
from tests.histories.scenarios import SCENARIO_OF, SCENARIOS, Scenario, run_scenario
from trackflow import policy_table
from trackflow.tracking_policy import TrackingPolicy
from workers.runtime import data_converter
from workers.worker import WORKFLOWS, sandbox_runner

HISTORIES = Path(__file__).parent
POLICIES = HISTORIES / "policies.jsonl"


def replayer(*, interceptors: Sequence[Interceptor] = ()) -> Replayer:
    """The worker's workflows, sandbox and (key-less) data converter, holding the fixtures'
    policies as a worker holds its ledger's."""
    hold_recorded_policies()
    return Replayer(
        workflows=WORKFLOWS,
        data_converter=data_converter(None),
        workflow_runner=sandbox_runner(),
        interceptors=interceptors,
    )


def recorded_policies() -> dict[str, str]:
    """Digest -> the policy's JSON, as recorded with the fixtures."""
    if not POLICIES.exists():
        return {}
    lines = (json.loads(line) for line in POLICIES.read_text().splitlines() if line.strip())
    return {line["digest"]: line["policy"] for line in lines}


def hold_recorded_policies() -> None:
    """Each recorded policy under the digest its fixtures name, as a worker holds the policies
    its ledger stored (workers/worker.py `hold_policies`): a field added to TrackingPolicy
    since changes what the body would digest to now, not the shipments' rules."""
    for digest, body in recorded_policies().items():
        policy_table.hold(digest, TrackingPolicy.model_validate_json(body))


def policy_digests(history: WorkflowHistory) -> set[str]:
    """The policy digests that the run's input names (`PolicyRef`s anywhere in it)."""
    started = history.events[0].workflow_execution_started_event_attributes
    found: set[str] = set()

    def visit(value: object) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("digest"), str):
                found.add(value["digest"])
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)

    for payload in started.input.payloads:
        if payload.metadata.get("encoding") == b"json/plain":
            visit(json.loads(payload.data))
    return found


def save_policies() -> None:
    """Keep the body of every policy a fixture names (recorded now or before), and no other."""
    bodies = recorded_policies() | {
        digest: policy.model_dump_json() for digest, policy in policy_table.known().items()
    }
    named: set[str] = set()
    for path in sorted(HISTORIES.glob("*.json")):
        named |= policy_digests(WorkflowHistory.from_json(path.stem, path.read_text()))
    missing = named - set(bodies)
    if missing:
        raise SystemExit(f"the fixtures name policies nobody recorded: {sorted(missing)}")
    lines = (json.dumps({"digest": d, "policy": bodies[d]}) for d in sorted(named))
    POLICIES.write_text("".join(f"{line}\n" for line in lines))


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
            save_policies()
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
