"""The typed effect contract: every activity declared once (trackflow.activity_catalogue),
implemented under its declared name and types, registered from the same lists, and called by
reference from the workflows (no activity name as a string there)."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity

from activities.alerts import AlertActivities
from activities.digest import DigestActivities
from activities.helpdesk import HelpdeskActivities
from activities.klaviyo import KlaviyoActivities
from activities.notify import NotificationActivities
from activities.polling import PollingActivities
from activities.read_model import ReadModel
from activities.tickets import TicketActivities
from trackflow import activity_catalogue as catalogue

IMPLEMENTATIONS: list[type] = [
    AlertActivities,
    DigestActivities,
    HelpdeskActivities,
    KlaviyoActivities,
    NotificationActivities,
    PollingActivities,
    ReadModel,
    TicketActivities,
]
WORKFLOWS = Path(__file__).parents[1] / "workflows"


def _definition(method: Callable[..., Any]) -> activity._Definition:
    return activity._Definition.must_from_callable(method)


def _declaring_class(method: Callable[..., Any]) -> type:
    declaring = getattr(catalogue, method.__qualname__.split(".")[0])
    assert isinstance(declaring, type)
    return declaring


def test_each_activity_is_declared_once_under_its_own_name() -> None:
    names = [catalogue.activity_name(method) for method in catalogue.EVERY_ACTIVITY]
    assert len(names) == len(set(names)) == 9
    assert sorted(names) == sorted(method.__name__ for method in catalogue.EVERY_ACTIVITY)


@pytest.mark.parametrize("declared", catalogue.EVERY_ACTIVITY, ids=lambda m: m.__name__)
def test_one_implementation_runs_under_the_declared_name_input_and_output(
    declared: Callable[..., Any],
) -> None:
    implementations = [
        cls for cls in IMPLEMENTATIONS if issubclass(cls, _declaring_class(declared))
    ]
    assert len(implementations) == 1, implementations
    implemented = getattr(implementations[0], declared.__name__)
    assert implemented is not declared, "the declaration itself would be registered"
    want, got = _definition(declared), _definition(implemented)
    assert (got.name, got.arg_types, got.ret_type) == (want.name, want.arg_types, want.ret_type)


def test_bind_finds_each_declared_activity_on_exactly_one_implementation() -> None:
    class Alerts(catalogue.AlertActivities):
        @catalogue.implements(catalogue.AlertActivities.raise_alert)
        async def raise_alert(self, alert: Any) -> Any:
            return alert

    alerts = Alerts()
    assert catalogue.bind([catalogue.AlertActivities.raise_alert], alerts) == [alerts.raise_alert]
    with pytest.raises(TypeError, match="record_alert: 0 implementations"):
        catalogue.bind([catalogue.AlertActivities.record_alert], alerts)
    with pytest.raises(TypeError, match="raise_alert: 2 implementations"):
        catalogue.bind([catalogue.AlertActivities.raise_alert], alerts, Alerts())


def test_the_worker_registers_every_declared_activity_on_one_queue() -> None:
    queues = [catalogue.MAIN_QUEUE, catalogue.INTEGRATIONS_QUEUE, catalogue.POLL_QUEUE]
    registered = [method for queue in queues for method in queue]
    assert sorted(map(catalogue.activity_name, registered)) == sorted(
        map(catalogue.activity_name, catalogue.EVERY_ACTIVITY)
    )
    assert "bind(MAIN_QUEUE" in (WORKFLOWS.parent / "workers" / "worker.py").read_text()


def test_workflows_name_no_activity_as_a_string() -> None:
    names = {catalogue.activity_name(method) for method in catalogue.EVERY_ACTIVITY}
    found = [
        (path.name, node.lineno, node.value)
        for path in sorted(WORKFLOWS.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in names
    ]
    assert found == []
