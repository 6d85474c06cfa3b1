"""The billable-action counter the history budget and `make bench-e2e` use (bench.actions),
against the rules of docs.temporal.io/cloud/actions, on hand-built histories."""

from __future__ import annotations

from collections import Counter

from temporalio.api.common.v1 import Payload, SearchAttributes
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import (
    ActivityTaskStartedEventAttributes,
    HistoryEvent,
    MarkerRecordedEventAttributes,
    UpsertWorkflowSearchAttributesEventAttributes,
)

from bench.actions import billable

E = EventType


def _event(event_id: int, kind: EventType.ValueType, **attributes: object) -> HistoryEvent:
    return HistoryEvent(event_id=event_id, event_type=kind, **attributes)  # type: ignore[arg-type]


def _marker(event_id: int, name: str) -> HistoryEvent:
    return _event(
        event_id,
        E.EVENT_TYPE_MARKER_RECORDED,
        marker_recorded_event_attributes=MarkerRecordedEventAttributes(marker_name=name),
    )


def _upsert(event_id: int, *names: str) -> HistoryEvent:
    fields = {name: Payload(data=b'"x"') for name in names}
    return _event(
        event_id,
        E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
        upsert_workflow_search_attributes_event_attributes=(
            UpsertWorkflowSearchAttributesEventAttributes(
                search_attributes=SearchAttributes(indexed_fields=fields)
            )
        ),
    )


def test_counts_as_temporal_cloud_bills() -> None:
    history = [
        _event(1, E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED),  # 1
        _event(2, E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED),
        _event(3, E.EVENT_TYPE_WORKFLOW_TASK_STARTED),
        _event(4, E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
        _marker(5, "core_patch"),  # a patch marker: free
        _upsert(6, "TemporalChangeVersion"),  # exempt
        _marker(7, "core_local_activity"),  # two local activities of one task: 1
        _marker(8, "core_local_activity"),
        _upsert(9, "TrackflowStatus", "TrackflowNextAction"),  # one upsert command: 1
        _event(10, E.EVENT_TYPE_TIMER_STARTED),  # 1
        _event(11, E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED),  # 1
        _event(12, E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED),
        _event(13, E.EVENT_TYPE_WORKFLOW_TASK_STARTED),
        _event(14, E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
        _marker(15, "core_local_activity"),  # another task's local activity: 1
        _event(16, E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),  # 1
        _event(  # its third attempt succeeded: 2 retries
            17,
            E.EVENT_TYPE_ACTIVITY_TASK_STARTED,
            activity_task_started_event_attributes=ActivityTaskStartedEventAttributes(attempt=3),
        ),
        _event(18, E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED),
        _event(19, E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED),  # 1
        _event(20, E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED),
    ]
    counts: Counter[str] = Counter()
    assert billable(history, counts=counts) == 1 + 1 + 1 + 1 + 1 + 1 + 1 + 2 + 1
    assert counts["upserts of TemporalChangeVersion only (exempt)"] == 1
    assert counts["marker core_local_activity"] == 3
    assert counts["activity retries"] == 2
