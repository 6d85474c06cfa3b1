"""Pinned facts: a recorded shipment decides the same after the zone tables or pytz change.

tests/histories/shipment_pinned_region.json is a shipment whose customer has no time zone: its
zone and send-window region came from the address, through `trackflow.timezones`' region table,
and were pinned at registration (`trackflow.pinning`); its label message was held for the
customer's morning. Here the tables change after the recording, so that a fresh `pin` gives
another zone, and the history is replayed on the worker's sandbox: it still replays (the same
commands), and the run's result, computed again by the workflow code, is the recorded one and
still shows the pinned zone. With the look-ups made to raise, it replays too: nothing re-derives.

Replaying alone would not catch a policy that re-derives the zone: a hold timer of another
length is no nondeterminism to Temporal (the recorded timer fires all the same). Comparing the
replayed result with the recorded one does: it carries the zone and the held messages' times.

The sandbox imports `trackflow.timezones` afresh (it is no boundary module), so editing the
host's module would not reach the workflow. `edited_timezones` hands every fresh import of it
(the sandbox's) an edited copy, as a deploy with a changed table would; pytz, shared with the
host, is patched on the host. A probe workflow run by the same sandbox runner shows that the
edit reaches workflow code: its `pin` gives the other zone (or raises).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from temporalio import workflow

# Imported outside imports_passed_through(), so the sandbox imports its own copies (and with
# them trackflow.timezones, edited by `edited_timezones`).
from trackflow import pinning

with workflow.unsafe.imports_passed_through():
    import pytest
    import pytz
    from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
    from temporalio.worker import (
        ExecuteWorkflowInput,
        Interceptor,
        Worker,
        WorkflowInboundInterceptor,
        WorkflowInterceptorClassInput,
    )

    from tests.histories.record import history_path, replayer
    from trackflow import timezones
    from trackflow.contracts import ShipmentWorkflowInput
    from trackflow.models import PinnedFacts, Shipment
    from trackflow.shipment_state import ShipmentView
    from trackflow.tracking_policy import TrackingPolicy
    from workers.worker import sandbox_runner

TIMEZONES = "trackflow.timezones"
FIXTURE = "shipment_pinned_region"


# --- The recorded shipment ------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    history: WorkflowHistory
    shipment: Shipment
    pinned: PinnedFacts
    result: ShipmentView
    other_zone: str  # a zone of the same country that neither the tables nor pytz give it today

    @property
    def country(self) -> str:
        return self.pinned.region.split("-")[0] if self.pinned.region else ""

    @property
    def region(self) -> str:
        return self.pinned.region.split("-", 1)[1] if self.pinned.region else ""

    def unpinned(self) -> Shipment:
        return self.shipment.model_copy(update={"pinned": None})


def _other_zone(pinned: PinnedFacts) -> str:
    """The zone of the pinned country whose offset differs most from the pinned zone's (so a
    decision re-derived from it would fall at another hour), and that neither the region table
    nor pytz gives that country today."""
    country = (pinned.region or "").split("-")[0]
    now = datetime.now(UTC)

    def offset(zone: str) -> timedelta:
        return now.astimezone(pytz.timezone(zone)).utcoffset() or timedelta(0)

    today = {pinned.timezone, timezones._country_zone(country)}
    candidates = [zone for zone in pytz.country_timezones[country] if zone not in today]
    return max(candidates, key=lambda zone: abs(offset(zone) - offset(pinned.timezone)))


def _payload(payloads: Any) -> Any:
    return json.loads(payloads.payloads[0].data)


@pytest.fixture(scope="module")
def recorded() -> Recorded:
    path = history_path(FIXTURE)
    history = WorkflowHistory.from_json(FIXTURE, path.read_text())
    started = history.events[0].workflow_execution_started_event_attributes
    shipment = ShipmentWorkflowInput.model_validate(_payload(started.input)).shipment
    completed = history.events[-1].workflow_execution_completed_event_attributes
    result = ShipmentView.model_validate(_payload(completed.result))
    assert shipment.pinned is not None, f"{path.name} records a pinned shipment"
    assert shipment.customer.timezone is None, "the zone must come from the address"
    assert shipment.pinned.timezone_source == "address_region", shipment.pinned
    assert shipment.pinned.region, shipment.pinned
    return Recorded(history, shipment, shipment.pinned, result, _other_zone(shipment.pinned))


# --- Editing the tables, on the host and for every fresh import (the sandbox's) -------------


class _EditedLoader(importlib.machinery.SourceFileLoader):
    def __init__(self, fullname: str, path: str, edit: str, loads: list[str]) -> None:
        super().__init__(fullname, path)
        self._edit = edit
        self._loads = loads

    def get_code(self, fullname: str) -> Any:
        self._loads.append(fullname)
        return compile(Path(self.path).read_text() + self._edit, self.path, "exec")


class _EditedTimezonesFinder(importlib.abc.MetaPathFinder):
    def __init__(self, edit: str) -> None:
        self.edit = edit
        self.loads: list[str] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != TIMEZONES:
            return None
        found = importlib.machinery.PathFinder.find_spec(fullname, path)
        assert found is not None and found.origin is not None
        loader = _EditedLoader(fullname, found.origin, self.edit, self.loads)
        return importlib.util.spec_from_file_location(fullname, found.origin, loader=loader)


@pytest.fixture
def edited_timezones() -> Iterator[_EditedTimezonesFinder]:
    """Installs a finder whose edit (Python appended to trackflow/timezones.py) the test sets."""
    assert sys.modules[TIMEZONES] is timezones, "the host imported the real module first"
    finder = _EditedTimezonesFinder("")
    sys.meta_path.insert(0, finder)
    try:
        yield finder
    finally:
        sys.meta_path.remove(finder)


def _pytz_country_zone(monkeypatch: pytest.MonkeyPatch, country: str, zone: str) -> None:
    """pytz (shared with the sandbox) now lists `zone` first for `country`, as an upgrade of its
    zone data could; the host's table, read at import, follows."""
    table = {code: list(zones) for code, zones in pytz.country_timezones.items()}
    table[country] = [zone, *(z for z in table[country] if z != zone)]
    monkeypatch.setattr(pytz, "country_timezones", table)
    monkeypatch.delitem(timezones._COUNTRY_MAIN_ZONE, country, raising=False)
    monkeypatch.setitem(timezones._COUNTRY_ZONE, country, zone)


# Appended to a fresh import: the country's zone read again from (patched) pytz.
_COUNTRY_ZONE_FROM_PYTZ = """
_COUNTRY_MAIN_ZONE.pop({country!r}, None)
_COUNTRY_ZONE = {{
    code: zones[0] for code, zones in pytz.country_timezones.items() if zones
}} | _COUNTRY_MAIN_ZONE
"""


def _zone_moved(
    monkeypatch: pytest.MonkeyPatch, finder: _EditedTimezonesFinder, facts: Recorded
) -> None:
    """The region's row now names another zone (and pytz gives the country that zone too)."""
    country, region, zone = facts.country, facts.region, facts.other_zone
    _pytz_country_zone(monkeypatch, country, zone)
    name = timezones._REGIONS[country][region][0]
    monkeypatch.setitem(timezones._REGIONS[country], region, (name, zone))
    finder.edit = _COUNTRY_ZONE_FROM_PYTZ.format(country=country) + (
        f"\n_REGIONS[{country!r}][{region!r}] = ({name!r}, {zone!r})\n"
    )


def _region_dropped(
    monkeypatch: pytest.MonkeyPatch, finder: _EditedTimezonesFinder, facts: Recorded
) -> None:
    """The region's row is gone: the zone falls back to the country's, which pytz now gives as
    another zone, and the send-window region is unknown."""
    country, region, zone = facts.country, facts.region, facts.other_zone
    _pytz_country_zone(monkeypatch, country, zone)
    monkeypatch.delitem(timezones._REGIONS[country], region)
    for key, code in list(timezones._NAMES.items()):
        if key[0] == country and code == region:
            monkeypatch.delitem(timezones._NAMES, key)
    finder.edit = _COUNTRY_ZONE_FROM_PYTZ.format(country=country) + (
        f"\ndel _REGIONS[{country!r}][{region!r}]\n"
        f"_NAMES = {{k: v for k, v in _NAMES.items() if (k[0], v) != ({country!r}, {region!r})}}\n"
    )


EDITS = {"zone_moved": _zone_moved, "region_dropped": _region_dropped}


class LookedUpAgain(AssertionError):
    pass


_LOOKUPS_RAISE = """

class LookedUpAgain(AssertionError):
    pass


def _refuse(name):
    def refused(*args, **kwargs):
        raise LookedUpAgain(f"{name} called: a pinned fact was looked up again")

    return refused


resolve_timezone = _refuse("resolve_timezone")
region_code = _refuse("region_code")
"""


# --- Running workflow code in the sandbox ---------------------------------------------------


@workflow.defn(name="PinProbe")
class _PinProbeWorkflow:
    """What `pin` gives, computed by the sandbox's own import of trackflow.pinning."""

    @workflow.run
    async def run(self, shipment: Shipment) -> PinnedFacts:
        pinned = pinning.pin(shipment, TrackingPolicy()).pinned
        assert pinned is not None
        return pinned


async def _pin_in_the_sandbox(client: Client, shipment: Shipment) -> PinnedFacts:
    task_queue = f"pin-probe-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[_PinProbeWorkflow],
        workflow_runner=sandbox_runner(),
        workflow_failure_exception_types=[Exception],
    ):
        return await client.execute_workflow(
            _PinProbeWorkflow.run,
            shipment,
            id=f"pin-probe-{task_queue}",
            task_queue=task_queue,
        )


_replayed_results: list[Any] = []


class _Inbound(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        result = await super().execute_workflow(input)
        _replayed_results.append(result)
        return result


class _KeepResult(Interceptor):
    """Keeps what the replayed run returns (the workflow code computes it again)."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _Inbound


async def _replayed_result(facts: Recorded) -> ShipmentView:
    _replayed_results.clear()
    replay = await replayer(interceptors=[_KeepResult()]).replay_workflow(
        facts.history, raise_on_replay_failure=False
    )
    assert replay.replay_failure is None, f"{FIXTURE} no longer replays: {replay.replay_failure!r}"
    assert len(_replayed_results) == 1, _replayed_results
    result = _replayed_results[0]
    assert isinstance(result, ShipmentView), result
    return result


def _same(view: ShipmentView, recorded: ShipmentView) -> None:
    assert view.model_dump(mode="json") == recorded.model_dump(mode="json")


# --- The tests ------------------------------------------------------------------------------


async def test_the_recorded_shipment_replays_to_its_recorded_result(recorded: Recorded) -> None:
    _same(await _replayed_result(recorded), recorded.result)
    assert recorded.result.timezone == recorded.pinned.timezone
    fresh = pinning.pin(recorded.unpinned(), TrackingPolicy()).pinned
    assert fresh is not None
    # Recorded before the carrier's reason and number warnings were pinned: it replays with the
    # fields' defaults; the zone and region are what this replay is about.
    assert recorded.pinned.carrier_reason is None
    assert fresh.model_copy(update={"carrier_reason": None, "warnings": []}) == recorded.pinned


@pytest.mark.parametrize("edit", EDITS)
async def test_after_a_table_change_the_history_replays_with_the_pinned_zone(
    edit: str,
    recorded: Recorded,
    edited_timezones: _EditedTimezonesFinder,
    monkeypatch: pytest.MonkeyPatch,
    client: Client,
) -> None:
    EDITS[edit](monkeypatch, edited_timezones, recorded)
    other = recorded.other_zone
    expected_region = recorded.pinned.region if edit == "zone_moved" else None
    # The change is real: a fresh pin, on the host and in the workflow sandbox, differs.
    on_host = pinning.pin(recorded.unpinned(), TrackingPolicy()).pinned
    in_sandbox = await _pin_in_the_sandbox(client, recorded.unpinned())
    for fresh in (on_host, in_sandbox):
        assert fresh is not None
        assert (fresh.timezone, fresh.region) == (other, expected_region), fresh
        assert fresh.timezone != recorded.pinned.timezone
    assert edited_timezones.loads, "the probe's sandbox imported the edited module"

    loads_before = len(edited_timezones.loads)
    view = await _replayed_result(recorded)
    assert len(edited_timezones.loads) > loads_before, "the replay imported the edited module"
    _same(view, recorded.result)
    assert view.timezone == recorded.pinned.timezone != other


async def test_nothing_is_looked_up_again_on_replay(
    recorded: Recorded,
    edited_timezones: _EditedTimezonesFinder,
    monkeypatch: pytest.MonkeyPatch,
    client: Client,
) -> None:
    edited_timezones.edit = _LOOKUPS_RAISE

    def refused(*args: object, **kwargs: object) -> Any:
        raise LookedUpAgain("a pinned fact was looked up again")

    monkeypatch.setattr(pinning, "resolve_timezone", refused)
    monkeypatch.setattr(pinning, "region_code", refused)
    with pytest.raises(LookedUpAgain):
        pinning.pin(recorded.unpinned(), TrackingPolicy())
    with pytest.raises(WorkflowFailureError) as failure:
        await _pin_in_the_sandbox(client, recorded.unpinned())
    assert "a pinned fact was looked up again" in str(failure.value.cause)

    loads_before = len(edited_timezones.loads)
    view = await _replayed_result(recorded)
    assert len(edited_timezones.loads) > loads_before, "the replay imported the edited module"
    _same(view, recorded.result)
    assert view.timezone == recorded.pinned.timezone
