"""Billable actions counted from a recorded history, as Temporal Cloud bills them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

LOCAL_ACTIVITY_MARKER = "core_local_activity"
CHANGE_VERSION = "TemporalChangeVersion"


def billable(events: Sequence[HistoryEvent], *, counts: Counter[str]) -> int:
    """Billable actions in one run's history, as Temporal Cloud counts them
    (docs.temporal.io/cloud/actions): a workflow start 1, each signal 1, each activity
    scheduled 1 plus 1 per retry (its last attempt number), the local activities of one
    workflow task 1 together, each timer started 1, each search-attribute upsert 1 (one that
    only sets TemporalChangeVersion, written by `workflow.patched`, is exempt), each child
    workflow started 1, each external signal 1, continue-as-new 1, each update accepted 1.
    Queries leave no history and are not counted (the driver sends none). `counts` gets the
    number of each event type (the shape of the work)."""
    actions = 0
    tasks_with_local_activities: set[int] = set()
    task = 0  # the workflow task whose commands the events that follow it are
    for event in events:
        kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
        counts[kind] += 1
        match event.event_type:
            case (
                EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
                | EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
                | EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                | EventType.EVENT_TYPE_TIMER_STARTED
                | EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED
                | EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
                | EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED
                | EventType.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED
                | EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
                | EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
            ):
                actions += 1
            case EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                task = event.event_id
            case EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
                fields = event.upsert_workflow_search_attributes_event_attributes
                if set(fields.search_attributes.indexed_fields) - {CHANGE_VERSION}:
                    actions += 1
                else:
                    counts["upserts of TemporalChangeVersion only (exempt)"] += 1
            case EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                retries = max(0, event.activity_task_started_event_attributes.attempt - 1)
                counts["activity retries"] += retries
                actions += retries
            case EventType.EVENT_TYPE_MARKER_RECORDED:
                name = event.marker_recorded_event_attributes.marker_name
                counts[f"marker {name}"] += 1
                if name == LOCAL_ACTIVITY_MARKER:
                    tasks_with_local_activities.add(task)
            case _:
                pass
    return actions + len(tasks_with_local_activities)
