"""The runs behind the replay fixtures: one scenario per workflow shape that ships.

Each scenario drives the real worker through the public starters (`starters.shipments`) and
signals, as a shop and the carriers would, and moves time with the dev server's time skipping.
After every step it waits until the run has nothing in flight (`settle`), so each run issues its
commands in the same workflow tasks and its fingerprint does not depend on timing.

`make record-histories` saves what a scenario returns; tests/test_replay.py runs every scenario
again and compares the command sequences with the saved ones.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from activities.polling import HealthReporter
from starters.shipments import (
    AnotherOrder,
    Registered,
    cancel_shipment,
    register_shipment,
    request_return,
    signal_event,
    signal_or_keep_event,
)
from tests.doubles.shipengine_api import create_shipengine_double
from tests.factories import ANY_TIME_POLICY, make_address, make_event, make_shipment
from tests.harness import eventually, free_port, outbox, running_worker, sent, zone_at_local_hour
from trackflow.carriers.samples import random_tracking_number
from trackflow.contracts import QUERY_STATE
from trackflow.digest import DIGEST_WORKFLOW_NAME, DigestReceipt, DigestRequest
from trackflow.models import Address, CarrierEvent, CarrierStatus, ReturnRequest, Shipment
from trackflow.send_windows import local_time
from trackflow.shipment_state import Outcome, ShipmentView
from trackflow.tickets import InboundTicket, TicketTriage
from trackflow.timezones import resolve_timezone
from trackflow.tracking_policy import SendWindow, TrackingPolicy
from workflows.inbound_ticket import INBOUND_TICKET_WORKFLOW_NAME

# --- Input shapes: the one place to adapt when the starters or the models change ----------

DAYTIME = TrackingPolicy()  # the real send windows (08:00-21:00 local)
ANY_TIME = ANY_TIME_POLICY  # windows always open
OFFICE = SendWindow(start=time(9), end=time(17))
OFFICE_HOURS = TrackingPolicy(email_window=OFFICE, sms_window=OFFICE)  # closed 16 hours a day
SHIPENGINE_KEY = "SE-record"


def shipment(number: str | None = None, **fields: Any) -> Shipment:
    """A valid number: one that does not fit its carrier adds an ops alert (its own shape)."""
    return make_shipment(tracking_number=number or random_tracking_number("ups"), **fields)


def usps_number() -> str:
    return random_tracking_number("usps")


def event(stage: Stage, parcel: Shipment, status: CarrierStatus, minutes: int) -> CarrierEvent:
    """A carrier scan `minutes` after the stage's first scan (an hour before it started)."""
    occurred_at = stage.first_scan + timedelta(minutes=minutes)
    return make_event(status, occurred_at, tracking_number=parcel.tracking_number)


async def registration(
    stage: Stage, parcel: Shipment, policy: TrackingPolicy, update_id: str | None = None
) -> Registered:
    """Register the shipment (update-with-start: the first call starts its workflow, later ones
    update it) and return the workflow's answer; its clock runs in real time until a scenario
    fast-forwards it."""
    with stage.env.with_time_skipping_disabled():
        return await register_shipment(
            stage.client, parcel, policy, task_queue=stage.task_queue, update_id=update_id
        )


async def register(
    stage: Stage, parcel: Shipment, policy: TrackingPolicy
) -> WorkflowHandle[Any, Any]:
    """Start the shipment's workflow: the registration must be accepted."""
    registered = await registration(stage, parcel, policy)
    expect(registered.outcome == "accepted", f"{parcel.tracking_number} registered: {registered}")
    handle: WorkflowHandle[Any, Any] = registered.handle
    return handle


async def keep_unmatched(stage: Stage, scan: CarrierEvent) -> WorkflowHandle[Any, Any]:
    """A scan for a number nobody registered yet: kept by its UnmatchedEventsWorkflow."""
    with stage.env.with_time_skipping_disabled():
        matched = await signal_or_keep_event(stage.client, scan, task_queue=stage.task_queue)
    expect(not matched, f"{scan.tracking_number} is not registered yet")
    return stage.client.get_workflow_handle(f"unmatched-{scan.tracking_number}")


async def ask_for_return(stage: Stage, parcel: Shipment, request_id: str) -> Outcome:
    """The return request update; the answer names the ReturnsWorkflow it started, if any."""
    return await request_return(
        stage.client,
        parcel.tracking_number,
        ReturnRequest(request_id=request_id, kind="refund", order_id=parcel.order_id),
    )


async def report_api_outcome(
    stage: Stage, provider: str, ok: bool, detail: str | None = None
) -> WorkflowHandle[Any, Any]:
    """What every poll does: tell the API's health workflow (signal-with-start)."""
    reporter = HealthReporter(stage.client, stage.task_queue, DAYTIME)
    with stage.env.with_time_skipping_disabled():
        await reporter.report(provider, ok=ok, detail=detail)
    return stage.client.get_workflow_handle(f"carrier-api-{provider}-{stage.task_queue}")


# --- Running a scenario ---------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    env: WorkflowEnvironment
    task_queue: str
    data_dir: Path
    first_scan: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(hours=1))

    @property
    def client(self) -> Client:
        return self.env.client

    @asynccontextmanager
    async def worker(self, **settings: Any) -> AsyncIterator[None]:
        async with running_worker(self.client, self.task_queue, self.data_dir, **settings):
            yield


Runs = dict[str, WorkflowHandle[Any, Any]]  # fixture name -> the run to save


@dataclass(frozen=True)
class Scenario:
    name: str
    shapes: tuple[str, ...]
    run: Callable[[Stage], Awaitable[Runs]]


class ScenarioFailed(AssertionError):
    """The scenario no longer does what its fixture is meant to show."""


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise ScenarioFailed(f"scenario expected: {what}")


async def settle(handle: WorkflowHandle[Any, Any]) -> None:
    """Wait until the run has no workflow task and no activity in flight (or has closed)."""

    async def idle() -> bool:
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            return True
        raw = description.raw_description
        return not raw.pending_activities and not raw.HasField("pending_workflow_task")

    await eventually(idle, bool, what=f"{handle.id} idle")


async def sends(stage: Stage, parcel: Shipment) -> list[tuple[str, str]]:
    return sent(await outbox(stage.data_dir, parcel.tracking_number))


async def run_scenario(
    scenario: Scenario, env: WorkflowEnvironment, data_dir: Path
) -> dict[str, WorkflowHistory]:
    stage = Stage(
        env=env, task_queue=f"replay-{scenario.name}-{uuid.uuid4().hex[:8]}", data_dir=data_dir
    )
    runs = await scenario.run(stage)
    expect(set(runs) == set(scenario.shapes), f"{scenario.name} records {scenario.shapes}")
    return {shape: await runs[shape].fetch_history() for shape in scenario.shapes}


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """An ASGI app on a local port, spoken to over real HTTP like the real API."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    )
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await eventually(started, bool, what="double listening", deadline_s=10)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        await task


# --- The scenarios --------------------------------------------------------------------------

MILESTONES = (
    CarrierStatus.IN_TRANSIT,
    CarrierStatus.OUT_FOR_DELIVERY,
    CarrierStatus.DELIVERED,
)


async def quiet_hours(stage: Stage) -> Runs:
    """Happy path whose first message waits for the morning: the label at 05:00 local time is
    held until 08:00; in transit, out for delivery and delivered go out at once; the review
    request a day later; the lifecycle completes after the return window."""
    parcel = shipment(order_value="300", timezone=zone_at_local_hour(5))
    async with stage.worker():
        handle = await register(stage, parcel, DAYTIME)
        await settle(handle)
        await signal_event(stage.client, event(stage, parcel, CarrierStatus.LABEL_CREATED, 0))
        await settle(handle)
        expect(await sends(stage, parcel) == [], "the label message is held before 08:00")
        await stage.env.fast_forward(handle, timedelta(hours=3, minutes=5))
        await settle(handle)
        expect(len(await sends(stage, parcel)) == 2, "the label message (email + SMS) at 08:00")
        for minutes, status in enumerate(MILESTONES, start=1):
            await signal_event(stage.client, event(stage, parcel, status, minutes))
            await settle(handle)
        await stage.env.fast_forward(handle, timedelta(hours=73))
        await handle.result()
    expect(len(await sends(stage, parcel)) == 10, "4 milestones and the review, email + SMS")
    return {"shipment_quiet_hours": handle}


LOST_STORY = ("in_transit", "lost", "in_transit", "delivered")


async def lost_and_revival(stage: Stage) -> Runs:
    """In transit, then no scan for 10 days: declared lost (alert, messages, helpdesk tags);
    a new scan revives it; delivered; complete (no review after trouble)."""
    policy = ANY_TIME.model_copy(update={"stale_message_enabled": False})
    parcel = shipment(order_value="300")
    async with stage.worker():
        handle = await register(stage, parcel, policy)
        await settle(handle)
        await signal_event(stage.client, event(stage, parcel, CarrierStatus.IN_TRANSIT, 0))
        await settle(handle)
        await stage.env.fast_forward(handle, policy.standard.lost_after + timedelta(minutes=5))
        await settle(handle)
        expect(("lost", "email") in await sends(stage, parcel), "declared lost")
        await signal_event(stage.client, event(stage, parcel, CarrierStatus.IN_TRANSIT, 30))
        await settle(handle)
        await signal_event(stage.client, event(stage, parcel, CarrierStatus.DELIVERED, 40))
        await settle(handle)
        await stage.env.fast_forward(handle, timedelta(hours=73))
        await handle.result()
    both = ("email", "sms")
    story = [(trigger, channel) for trigger in LOST_STORY for channel in both]
    expect(await sends(stage, parcel) == story, "lost, revived, delivered")
    return {"shipment_lost_revival": handle}


async def returns(stage: Stage) -> Runs:
    """Delivered at 05:00 local time (held until 08:00), review request; a refund asked 40
    hours later, at 21:00, starts the ReturnsWorkflow child, whose acknowledgement waits for
    the next morning; the parent completes after the return window."""
    parcel = shipment(phone=None, timezone=zone_at_local_hour(5))
    async with stage.worker():
        handle = await register(stage, parcel, DAYTIME)
        await settle(handle)
        await signal_event(stage.client, event(stage, parcel, CarrierStatus.DELIVERED, 0))
        await settle(handle)
        await stage.env.fast_forward(handle, timedelta(hours=40))
        await settle(handle)
        expect(len(await sends(stage, parcel)) == 2, "delivered and review request sent")
        started = await ask_for_return(stage, parcel, "r-1")
        expect(started.outcome == "return_started" and started.detail is not None, "a return")
        child = stage.client.get_workflow_handle(str(started.detail))
        await settle(handle)
        await settle(child)
        if (await child.describe()).status == WorkflowExecutionStatus.RUNNING:
            await stage.env.fast_forward(child, timedelta(hours=12))
        acknowledged = await child.result()
        expect(len(acknowledged) == 1, "the return acknowledged by email")
        await stage.env.fast_forward(handle, timedelta(hours=33))
        await handle.result()
    return {"shipment_return": handle, "returns_child": child}


async def polling(stage: Stage) -> Runs:
    """No webhooks: the workflow polls ShipEngine (a local double) after 2-4 hours, learns
    in transit and delivered from one poll, stops polling, completes."""
    number = usps_number()
    parcel = shipment(number, carrier="usps", poll_via="shipengine", phone=None)
    double = create_shipengine_double(SHIPENGINE_KEY, {number: "usps"})
    async with (
        serving(double) as url,
        stage.worker(shipengine_api_key=SHIPENGINE_KEY, shipengine_base_url=url),
    ):
        handle = await register(stage, parcel, ANY_TIME)
        await settle(handle)
        poll_by = ANY_TIME.standard.poll_every_max + timedelta(minutes=1)
        await stage.env.fast_forward(handle, poll_by)
        await settle(handle)
        expect(("delivered", "email") in await sends(stage, parcel), "delivered, learned by a poll")
        await stage.env.fast_forward(handle, timedelta(hours=73))
        await handle.result()
    return {"shipment_polling": handle}


async def continue_as_new(stage: Stage) -> Runs:
    """A policy that rolls the history over at 10 events: the run continues as new while the
    milestones arrive; the last run completes. Saves the first run and the last."""
    policy = ANY_TIME.model_copy(update={"continue_as_new_after_events": 10})
    parcel = shipment(order_value="212.50")
    async with stage.worker():
        latest = stage.client.get_workflow_handle((await register(stage, parcel, policy)).id)
        first_run = (await latest.describe()).run_id
        await settle(latest)
        for minutes, status in enumerate((CarrierStatus.LABEL_CREATED, *MILESTONES)):
            await signal_event(stage.client, event(stage, parcel, status, minutes))
            await settle(latest)
        await stage.env.fast_forward(latest, timedelta(hours=73))
        await latest.result()
        last_run = (await latest.describe()).run_id
    expect(last_run != first_run, "the history rolled over at least once")
    expect(len(await sends(stage, parcel)) == 10, "every message once across the runs")
    return {
        "shipment_continue_as_new": stage.client.get_workflow_handle(latest.id, run_id=first_run),
        "shipment_continued": stage.client.get_workflow_handle(latest.id, run_id=last_run),
    }


async def unmatched(stage: Stage) -> Runs:
    """Two scans arrive before the shop registers the number: kept by UnmatchedEventsWorkflow,
    handed over (signalled to the shipment) when it starts."""
    parcel = shipment()
    async with stage.worker():
        keeper = await keep_unmatched(stage, event(stage, parcel, CarrierStatus.IN_TRANSIT, 0))
        await settle(keeper)
        await keep_unmatched(stage, event(stage, parcel, CarrierStatus.OUT_FOR_DELIVERY, 1))
        await settle(keeper)
        handle = await register(stage, parcel, ANY_TIME)
        expect(await keeper.result() == 2, "both scans handed over")
        await settle(handle)
    expect(len(await sends(stage, parcel)) == 2, "the handed-over scans reach the customer")
    return {"unmatched_hand_over": keeper}


# Regions of trackflow.timezones' region table, spread over the day: at any hour, the office of
# one of them has been closed for a while and stays closed for at least half an hour more.
TABLE_REGIONS = (
    ("US", "HI"),
    ("US", "AK"),
    ("US", "CA"),
    ("US", "CO"),
    ("US", "TX"),
    ("US", "FL"),
    ("CA", "NS"),
    ("CA", "NL"),
    ("AU", "WA"),
    ("AU", "NT"),
    ("AU", "QLD"),
    ("AU", "NSW"),
)


def address_after_office_hours(now: datetime) -> Address:
    """An address whose zone comes from the region table and whose local time is between
    17:05 and 08:30, so that office hours (09:00-17:00) open at least 30 minutes later."""
    for country, region in TABLE_REGIONS:
        address = make_address(province_code=region, country_code=country)
        zone = resolve_timezone(make_shipment(address=address), DAYTIME.default_timezone)
        expect(zone.source == "address_region", f"{country}-{region} is in the region table")
        wall = local_time(now, zone.name).time()
        if wall >= time(17, 5) or wall < time(8, 30):
            return address
    raise ScenarioFailed(f"no region of {TABLE_REGIONS} is outside office hours at {now}")


async def pinned_region(stage: Stage) -> Runs:
    """A customer without a time zone, whose zone and send-window region come from the address
    (a state or province of the region table), pinned at registration: the label scan after
    office hours is held until 09:00 local, in transit goes out at once, then the order is
    cancelled. tests/test_pinning.py replays it after changing the tables."""
    parcel = shipment(order_value="300", address=address_after_office_hours(datetime.now(UTC)))
    async with stage.worker():
        handle = await register(stage, parcel, OFFICE_HOURS)
        await settle(handle)
        await signal_event(stage.client, event(stage, parcel, CarrierStatus.LABEL_CREATED, 0))
        await settle(handle)
        expect(await sends(stage, parcel) == [], "the label message is held until 09:00")
        held = (await handle.query(QUERY_STATE, result_type=ShipmentView)).waiting
        expect(len(held) == 2, "the label message held for both channels")
        opens = max(message.due_at for message in held) - datetime.now(UTC)
        await stage.env.fast_forward(handle, opens + timedelta(minutes=5))
        await settle(handle)
        expect(len(await sends(stage, parcel)) == 2, "the label message (email + SMS) at 09:00")
        await signal_event(stage.client, event(stage, parcel, CarrierStatus.IN_TRANSIT, 1))
        await settle(handle)
        await cancel_shipment(stage.client, parcel.tracking_number, "order cancelled")
        view = await handle.result()
    expect(len(await sends(stage, parcel)) == 4, "label and in transit, email + SMS")
    expect(view.timezone != DAYTIME.default_timezone, "the zone came from the address")
    return {"shipment_pinned_region": handle}


async def registration_answers(stage: Stage) -> Runs:
    """The updates a caller waits on: registration (update-with-start) accepted, the same
    delivery again (already registered), new facts (updated), another live order on the number
    (rejected by the validator: never in the history); a return request before delivery
    (ignored, with why) and one for another order (rejected). Then the order is cancelled."""
    parcel = shipment()
    async with stage.worker():
        first = await registration(stage, parcel, ANY_TIME, update_id="delivery-1")
        expect(first.outcome == "accepted", f"the first registration starts it: {first}")
        handle: WorkflowHandle[Any, Any] = first.handle
        await settle(handle)
        again = await registration(stage, parcel, ANY_TIME, update_id="delivery-1")
        expect(again.outcome == "already_registered", f"a replayed delivery: {again}")
        await settle(handle)
        customer = parcel.customer.model_copy(update={"phone": "+15025550199"})
        moved = parcel.model_copy(update={"customer": customer})
        updated = await registration(stage, moved, ANY_TIME, update_id="delivery-2")
        expect(updated.outcome == "updated", f"new facts: {updated}")
        await settle(handle)
        another = parcel.model_copy(update={"order_id": "2002", "order_name": "#2002"})
        await rejected(registration(stage, another, ANY_TIME), "another order's registration")
        await settle(handle)
        early = await ask_for_return(stage, parcel, "r-early")
        expect(early == Outcome(outcome="ignored", detail="not delivered yet"), f"{early}")
        await settle(handle)
        elsewhere = ReturnRequest(request_id="r-other", order_id="2002")
        await rejected(
            request_return(stage.client, parcel.tracking_number, elsewhere),
            "another order's return request",
        )
        await settle(handle)
        await cancel_shipment(stage.client, parcel.tracking_number, "order cancelled")
        await handle.result()
    expect(await sends(stage, parcel) == [], "nothing to tell the customer")
    return {"shipment_registration": handle}


async def rejected(call: Awaitable[object], what: str) -> None:
    try:
        await call
    except AnotherOrder:
        return
    raise ScenarioFailed(f"scenario expected: {what} rejected as AnotherOrder")


async def api_health(stage: Stage) -> Runs:
    """A carrier API fails twice, is still failing 4 hours later (one outage alert), then
    answers again (one recovery notice). The health workflow runs on: saved while running."""
    provider = "easypost"
    async with stage.worker():
        handle = await report_api_outcome(stage, provider, ok=False, detail="EasyPost answered 503")
        await settle(handle)
        await report_api_outcome(stage, provider, ok=False, detail="EasyPost answered 502")
        await settle(handle)
        await stage.env.fast_forward(
            handle, DAYTIME.carrier_api_outage_after + timedelta(minutes=1)
        )
        await settle(handle)
        await report_api_outcome(stage, provider, ok=True)
        await settle(handle)
    alerts = [r.trigger for r in await outbox(stage.data_dir, f"api:{provider}")]
    expect(alerts == ["carrier_api_outage", "carrier_api_recovered"], "one outage, one recovery")
    return {"api_health": handle}


async def daily_digest(stage: Stage) -> Runs:
    """The digest schedule's workflow, fired once; no Slack: the digest is a ledger row."""
    async with stage.worker():
        handle = await stage.client.start_workflow(
            DIGEST_WORKFLOW_NAME,
            DigestRequest(timezone="Europe/Paris"),
            id=f"digest-{uuid.uuid4().hex[:8]}",
            task_queue=stage.task_queue,
            result_type=DigestReceipt,
        )
        receipt = await handle.result()
    expect(not receipt.already_posted, "the digest posted once")
    return {"daily_digest": handle}


async def inbound_ticket(stage: Stage) -> Runs:
    """A ticket from a requester trackflow does not know: triaged and recorded, no note."""
    ticket = InboundTicket(
        helpdesk="gorgias",
        ticket_id=uuid.uuid4().hex[:10],
        requester_email="nobody@example.com",
        subject="Where is my order?",
        body="It has been a week and nothing arrived.",
        received_at=datetime.now(UTC),
    )
    async with stage.worker():
        handle = await stage.client.start_workflow(
            INBOUND_TICKET_WORKFLOW_NAME,
            ticket,
            id=f"ticket-gorgias-{ticket.ticket_id}",
            task_queue=stage.task_queue,
            result_type=TicketTriage,
        )
        triage = await handle.result()
    expect(triage.tracking_number is None, "no shipment for an unknown requester")
    return {"inbound_ticket": handle}


SCENARIOS = (
    Scenario("quiet_hours", ("shipment_quiet_hours",), quiet_hours),
    Scenario("lost_and_revival", ("shipment_lost_revival",), lost_and_revival),
    Scenario("returns", ("shipment_return", "returns_child"), returns),
    Scenario("polling", ("shipment_polling",), polling),
    Scenario(
        "continue_as_new", ("shipment_continue_as_new", "shipment_continued"), continue_as_new
    ),
    Scenario("unmatched", ("unmatched_hand_over",), unmatched),
    Scenario("api_health", ("api_health",), api_health),
    Scenario("pinned_region", ("shipment_pinned_region",), pinned_region),
    Scenario("registration_answers", ("shipment_registration",), registration_answers),
    Scenario("daily_digest", ("daily_digest",), daily_digest),
    Scenario("inbound_ticket", ("inbound_ticket",), inbound_ticket),
)
SCENARIO_OF = {shape: scenario for scenario in SCENARIOS for shape in scenario.shapes}
