"""Command-sequence fingerprints: a workflow history reduced to the commands its code issued.

Replaying a recorded history proves that the current code would issue the same commands for
that old run. The fingerprint proves the converse for new runs: the ordered list of
command-generated events (activities, timers, children, external signals, markers, search
attribute upserts, the way the run ended), each with the name that identifies it, compared with
the list committed next to the fixture. A workflow edit that adds, drops or reorders a command
changes it, and the test says what to do (see `CommandSequenceChanged`).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass

from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

HEADER = "workflow"


def _marker(event: HistoryEvent) -> str:
    """Local activities and `workflow.patched` leave markers; name what they stand for."""
    attributes = event.marker_recorded_event_attributes
    name = attributes.marker_name
    if name == "core_local_activity":
        return f"local activity {_marker_field(attributes.details.get('data'), 'activity_type')}"
    if name == "core_patch":
        return f"patch {_marker_field(attributes.details.get('patch-data'), 'id')}"
    return f"marker {name}"


def _marker_field(payloads: Payloads | None, field: str) -> str:
    """A field of the JSON that the SDK core keeps in its own markers ("?" if unreadable)."""
    try:
        value = json.loads(payloads.payloads[0].data)[field] if payloads else None
    except (IndexError, KeyError, TypeError, ValueError):
        value = None
    return str(value) if value is not None else "?"


_COMMANDS: dict[EventType.ValueType, Callable[[HistoryEvent], str]] = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: lambda e: (
        f"activity {e.activity_task_scheduled_event_attributes.activity_type.name}"
    ),
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED: lambda e: "cancel activity",
    EventType.EVENT_TYPE_TIMER_STARTED: lambda e: "timer",
    EventType.EVENT_TYPE_TIMER_CANCELED: lambda e: "cancel timer",
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: lambda e: (
        f"child {e.start_child_workflow_execution_initiated_event_attributes.workflow_type.name}"
    ),
    EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: lambda e: (
        "signal external "
        + e.signal_external_workflow_execution_initiated_event_attributes.signal_name
    ),
    EventType.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: lambda e: (
        "cancel external"
    ),
    EventType.EVENT_TYPE_MARKER_RECORDED: _marker,
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: lambda e: "upsert search attributes",
    EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED: lambda e: "modify properties",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: lambda e: (
        "accept update "
        + e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
    ),
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED: lambda e: "complete update",
    EventType.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED: lambda e: (
        f"nexus {e.nexus_operation_scheduled_event_attributes.service}"
        f"/{e.nexus_operation_scheduled_event_attributes.operation}"
    ),
    EventType.EVENT_TYPE_NEXUS_OPERATION_CANCEL_REQUESTED: lambda e: "cancel nexus operation",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: lambda e: "complete",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: lambda e: "fail",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: lambda e: "cancel",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: lambda e: "continue as new",
}


def workflow_type(history: WorkflowHistory) -> str:
    first = history.events[0]
    return first.workflow_execution_started_event_attributes.workflow_type.name


@dataclass(frozen=True)
class Fingerprint:
    workflow: str
    commands: tuple[str, ...]

    @classmethod
    def of(cls, history: WorkflowHistory) -> Fingerprint:
        commands = (command(event) for event in history.events)
        return cls(workflow_type(history), tuple(c for c in commands if c is not None))

    @classmethod
    def parse(cls, text: str) -> Fingerprint:
        lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
        if not lines or not lines[0].startswith(f"{HEADER} "):
            raise ValueError(f"a fingerprint starts with '{HEADER} <workflow type>'")
        return cls(workflow=lines[0].removeprefix(f"{HEADER} "), commands=tuple(lines[1:]))

    def render(self, fixture: str) -> str:
        return "\n".join(
            [
                f"# The commands of tests/histories/{fixture}, in order: written by",
                "# `make record-histories`, checked by tests/test_replay.py. Do not edit by hand.",
                f"{HEADER} {self.workflow}",
                *self.commands,
                "",
            ]
        )


def command(event: HistoryEvent) -> str | None:
    """How the fingerprint names the command behind `event`; None if no command made it."""
    name = _COMMANDS.get(event.event_type)
    return name(event) if name else None


class CommandSequenceChanged(AssertionError):
    pass


def check(shape: str, expected: Fingerprint, history: WorkflowHistory) -> None:
    """Raise `CommandSequenceChanged`, saying what to do, unless `history` issued exactly the
    committed commands in the committed order."""
    actual = Fingerprint.of(history)
    if actual == expected:
        return
    diff = difflib.unified_diff(
        [f"{HEADER} {expected.workflow}", *expected.commands],
        [f"{HEADER} {actual.workflow}", *actual.commands],
        fromfile=f"tests/histories/{shape}.fingerprint (committed)",
        tofile=f"{shape} (this run)",
        lineterm="",
    )
    raise CommandSequenceChanged(
        f"the command sequence of {expected.workflow} changed ({shape}): if this is intended "
        "and old histories must still replay, guard the change with workflow.patched(...) and "
        "re-record with `make record-histories`; see docs/testing.md (Replay guard).\n"
        + "\n".join(diff)
    )
