"""The daily digest: which shipments are open problems and how the digest reads (pure), and on
the real dev server the Temporal Schedule (created, updated, deleted) and one digest per local
day posted to the Slack double over HTTP when the schedule fires."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleDescription,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    ScheduleRange,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.digest import DigestActivities, ensure_digest_schedule, stale_margin
from activities.slack import SLACK, SlackPoster
from starters.shipments import register_shipment, signal_event
from starters.simulators.providers.server import serving
from starters.simulators.slack import SlackDouble, blocks_problem, create_slack_app
from storage import Ledger, open_ledger
from tests.factories import at, make_event, make_shipment
from tests.harness import eventually, outbox, running_worker, zone_at_local_hour
from trackflow.carriers.samples import random_tracking_number
from trackflow.contracts import STATUS, integrations_queue
from trackflow.digest import (
    DIGEST_SCHEDULE_ID,
    DIGEST_WORKFLOW_NAME,
    MAX_LISTED_PER_PROBLEM,
    DigestJob,
    DigestReceipt,
    OpenShipment,
    Problem,
    digest_blocks,
    digest_key,
    digest_text,
    open_problems,
    problem_of,
    visibility_query,
)
from trackflow.models import CarrierStatus
from trackflow.settings import Settings
from trackflow.tracking_policy import TrackingPolicy
from workers.worker import sandbox_runner
from workflows.digest import DailyDigestWorkflow

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LOST_AFTER, MARGIN = stale_margin(TrackingPolicy())
UI = "http://localhost:8233"


def shipment(n: int, status: str, **fields: object) -> OpenShipment:
    return OpenShipment.model_validate(
        {
            "workflow_id": f"shipment-1Z{n:04d}",
            "order_id": f"#{1000 + n}",
            "tracking_number": f"1Z{n:04d}",
            "carrier": "ups",
            "status": status,
            **fields,
        }
    )


def quiet(n: int, due_in: timedelta, status: str = "in_transit") -> OpenShipment:
    return shipment(n, status, next_action="declare_lost", next_action_at=NOW + due_in)


# --- pure ------------------------------------------------------------------------------------


def test_the_policy_gives_the_stale_margin_of_its_shorter_speed() -> None:
    policy = TrackingPolicy()
    assert policy.standard.lost_after == LOST_AFTER
    assert (
        min(
            policy.standard.lost_after - policy.standard.stale_after,
            policy.express.lost_after - policy.express.stale_after,
        )
        == MARGIN
    )


@pytest.mark.parametrize(
    ("open_shipment", "expected"),
    [
        (shipment(1, "lost", next_action="complete"), Problem.LOST),
        (shipment(2, "exception", next_action="declare_lost"), Problem.EXCEPTION),
        (quiet(3, MARGIN - timedelta(hours=1)), Problem.STALE),
        (quiet(4, MARGIN), Problem.STALE),
        (quiet(5, MARGIN + timedelta(hours=1)), None),  # quiet, but not for long enough
        (quiet(6, timedelta(hours=-2), status="out_for_delivery"), Problem.STALE),
        (quiet(7, timedelta(hours=1), status="delivered"), None),
        (shipment(8, "in_transit", next_action="stale_check_in", next_action_at=NOW), None),
        (shipment(9, "in_transit", next_action="declare_lost"), None),  # no due time
        (shipment(10, "delivered", next_action="review_request"), None),
    ],
)
def test_which_shipments_are_open_problems(
    open_shipment: OpenShipment, expected: Problem | None
) -> None:
    found = problem_of(open_shipment, now=NOW, lost_after=LOST_AFTER, stale_margin=MARGIN)
    assert (found.problem if found else None) == expected


def test_a_stale_shipment_says_how_long_it_has_been_quiet() -> None:
    found = problem_of(
        quiet(1, timedelta(days=2)), now=NOW, lost_after=LOST_AFTER, stale_margin=MARGIN
    )
    assert found is not None and found.quiet_for == LOST_AFTER - timedelta(days=2)


def test_problems_come_lost_first_then_exceptions_then_the_longest_quiet() -> None:
    problems = open_problems(
        [
            quiet(1, timedelta(days=3)),
            shipment(2, "exception"),
            quiet(3, timedelta(days=1)),
            shipment(4, "lost"),
            shipment(5, "in_transit", next_action="stale_check_in", next_action_at=NOW),
        ],
        now=NOW,
        lost_after=LOST_AFTER,
        stale_margin=MARGIN,
    )
    assert [p.shipment.tracking_number for p in problems] == [
        "1Z0004",
        "1Z0002",
        "1Z0003",
        "1Z0001",
    ]


def test_the_digest_key_is_the_local_date_of_the_firing() -> None:
    late_evening_utc = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
    assert digest_key(late_evening_utc, "UTC") == "digest:2026-12-01"
    assert digest_key(late_evening_utc, "Europe/Berlin") == "digest:2026-12-02"
    assert digest_key(late_evening_utc, "America/Los_Angeles") == "digest:2026-12-01"


def test_the_visibility_query_asks_for_running_problem_shipments_of_one_task_queue() -> None:
    query = visibility_query("shop-a")
    assert "ExecutionStatus = 'Running'" in query
    assert "TrackflowStatus IN ('lost', 'exception')" in query
    assert "TrackflowNextAction = 'declare_lost'" in query
    assert query.endswith("TaskQueue = 'shop-a'")
    assert "TaskQueue" not in visibility_query(None)


def test_the_digest_lists_each_problem_with_its_order_tracking_number_and_workflow() -> None:
    problems = open_problems(
        [shipment(1, "lost"), shipment(2, "exception"), quiet(3, timedelta(days=1))],
        now=NOW,
        lost_after=LOST_AFTER,
        stale_margin=MARGIN,
    )
    day = date(2026, 12, 1)
    blocks = digest_blocks(problems, day, temporal_ui_url=UI, namespace="default")
    text = str(blocks)
    assert blocks_problem(blocks) is None  # Slack would take it
    assert blocks[0]["text"]["text"].endswith("Daily digest 2026-12-01: 3 open problems")
    for n in (1, 2, 3):
        assert f"#100{n}" in text and f"1Z000{n}" in text
        assert f"{UI}/namespaces/default/workflows/shipment-1Z000{n}" in text
    assert "quiet for 9 days" in text and "UPS" in text
    assert digest_text(problems, day) == (
        "Trackflow daily digest 2026-12-01: 3 open problem shipments (1 lost, 1 exception, 1 stale)"
    )


def test_a_long_digest_stays_within_slacks_limits_and_links_to_the_rest() -> None:
    many = [shipment(n, "lost") for n in range(300)] + [
        shipment(n, "exception") for n in range(300, 340)
    ]
    problems = open_problems(many, now=NOW, lost_after=LOST_AFTER, stale_margin=MARGIN)
    blocks = digest_blocks(
        problems, date(2026, 12, 1), temporal_ui_url=UI, namespace="default", task_queue="shop-a"
    )
    assert blocks_problem(blocks) is None
    text = str(blocks)
    assert f"and {300 - MAX_LISTED_PER_PROBLEM} more" in text
    assert f"and {40 - MAX_LISTED_PER_PROBLEM} more" in text
    assert "workflows?query=" in text and "shop-a" in text


def test_an_empty_digest_says_all_clear() -> None:
    blocks = digest_blocks([], date(2026, 12, 1), temporal_ui_url=None, namespace="default")
    assert blocks_problem(blocks) is None
    assert "All clear" in str(blocks)
    assert "0 open problems" in blocks[0]["text"]["text"]


# --- the schedule on the dev server ------------------------------------------------------------


@pytest.fixture
async def schedule_cleanup(client: Client) -> AsyncIterator[None]:
    yield
    try:
        await client.get_schedule_handle(DIGEST_SCHEDULE_ID).delete()
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise


def settings(task_queue: str, tmp_path: Path, **overrides: object) -> Settings:
    return Settings.model_validate(
        {"task_queue": task_queue, "data_dir": tmp_path, "temporal_ui_url": UI, **overrides}
    )


async def test_the_digest_schedule_is_created_updated_and_removed_with_the_settings(
    client: Client, task_queue: str, tmp_path: Path, schedule_cleanup: None
) -> None:
    created = await ensure_digest_schedule(
        client, settings(task_queue, tmp_path, digest_hour=9, digest_timezone="Europe/Paris")
    )
    handle = client.get_schedule_handle(DIGEST_SCHEDULE_ID)
    first = await handle.describe()
    await ensure_digest_schedule(
        client, settings(task_queue, tmp_path, digest_hour=17, digest_timezone="America/Chicago")
    )
    second = await handle.describe()
    removed = await ensure_digest_schedule(client, settings(task_queue, tmp_path, digest_hour=None))
    with pytest.raises(RPCError) as gone:
        await handle.describe()

    assert created == DIGEST_SCHEDULE_ID and removed is None
    assert _calendar(first) == ([ScheduleRange(9)], "Europe/Paris")
    assert _calendar(second) == ([ScheduleRange(17)], "America/Chicago")
    action = first.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.workflow, action.task_queue) == (DIGEST_WORKFLOW_NAME, task_queue)
    assert first.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert gone.value.status == RPCStatusCode.NOT_FOUND


def _calendar(description: ScheduleDescription) -> tuple[list[ScheduleRange], str | None]:
    spec = description.schedule.spec
    (calendar,) = spec.calendars
    assert list(calendar.minute) == [ScheduleRange(0)]
    return list(calendar.hour), spec.time_zone_name


@pytest.fixture
def slack() -> Iterator[tuple[SlackDouble, str]]:
    double = SlackDouble()
    with serving(create_slack_app(double)) as url:
        yield double, url


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    opened = open_ledger(str(tmp_path / "ledger.sqlite3"))
    try:
        yield opened
    finally:
        await opened.close()


@asynccontextmanager
async def digest_workers(
    client: Client, task_queue: str, ledger: Ledger, poster: SlackPoster
) -> AsyncIterator[None]:
    """The digest workflow on the main queue and ``post_digest`` on the integrations queue, as
    the worker process runs them."""
    activities = DigestActivities(
        client,
        ledger,
        poster,
        task_queue=task_queue,
        policy=TrackingPolicy(),
        temporal_ui_url=UI,
    )
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(
            Worker(
                client,
                task_queue=task_queue,
                workflows=[DailyDigestWorkflow],
                workflow_runner=sandbox_runner(),
            )
        )
        await stack.enter_async_context(
            Worker(
                client,
                task_queue=integrations_queue(task_queue),
                activities=[activities.post_digest],
            )
        )
        yield


async def _run_nth_action(handle: ScheduleHandle, client: Client, n: int) -> DigestReceipt:
    """Trigger the schedule and wait for its n-th run's result."""
    await handle.trigger()
    described = await eventually(
        handle.describe,
        lambda d: len(d.info.recent_actions) >= n,
        what=f"schedule action #{n}",
    )
    action = described.info.recent_actions[n - 1].action
    assert isinstance(action, ScheduleActionExecutionStartWorkflow)
    run = client.get_workflow_handle(
        action.workflow_id, run_id=action.first_execution_run_id, result_type=DigestReceipt
    )
    receipt: DigestReceipt = await run.result()
    return receipt


async def test_the_schedule_posts_one_digest_a_day_listing_the_lost_parcel(
    temporal_env: WorkflowEnvironment,
    client: Client,
    task_queue: str,
    tmp_path: Path,
    slack: tuple[SlackDouble, str],
    ledger: Ledger,
    schedule_cleanup: None,
) -> None:
    double, url = slack
    number = random_tracking_number("ups")
    parcel = make_shipment(
        tracking_number=number, order_value="300", timezone=zone_at_local_hour(12)
    )
    policy = TrackingPolicy().model_copy(update={"stale_message_enabled": False})
    async with running_worker(client, task_queue, tmp_path):
        with temporal_env.with_time_skipping_disabled():
            registered = await register_shipment(client, parcel, policy, task_queue=task_queue)
        await signal_event(
            client, make_event(CarrierStatus.IN_TRANSIT, at(0), tracking_number=number)
        )
        await eventually(
            lambda: outbox(tmp_path, number), lambda r: len(r) >= 2, what="in-transit messages"
        )
        await temporal_env.fast_forward(
            registered.handle, policy.standard.lost_after + timedelta(minutes=5)
        )
        await eventually(
            registered.handle.describe,
            lambda d: d.typed_search_attributes.get(STATUS) == "lost",
            what="the parcel declared lost",
        )
    query = visibility_query(task_queue)
    await eventually(  # visibility is eventually consistent
        lambda: _count(client, query), lambda n: n == 1, what="the lost parcel in visibility"
    )

    config = settings(task_queue, tmp_path, digest_hour=9, digest_timezone="Europe/Paris")
    await ensure_digest_schedule(client, config)
    handle = client.get_schedule_handle(DIGEST_SCHEDULE_ID)
    poster = SlackPoster(bot_token="xoxb-test", channel="C0ALERTS", base_url=f"{url}/api/")
    async with digest_workers(client, task_queue, ledger, poster):
        first = await _run_nth_action(handle, client, 1)
        second = await _run_nth_action(handle, client, 2)

    today = datetime.now(ZoneInfo("Europe/Paris")).date()
    assert first.idempotency_key == f"digest:{today.isoformat()}"
    assert (first.transport, first.listed, first.already_posted) == (SLACK, 1, False)
    assert second.idempotency_key == first.idempotency_key and second.already_posted
    assert len(double.messages) == 1
    message = double.messages[0]
    assert message["channel"] == "C0ALERTS"
    text = str(message["blocks"])
    assert number in text and "1001" in text  # the TrackflowOrderId attribute
    assert "Lost" in text and f"{UI}/namespaces/default/workflows/shipment-{number}" in text
    record = await ledger.get(first.idempotency_key)
    assert record is not None and record.provider_message_id == message["ts"]


async def _count(client: Client, query: str) -> int:
    return len([e async for e in client.list_workflows(query)])


async def test_without_slack_the_digest_is_recorded_in_the_ledger_once_a_day(
    client: Client, task_queue: str, ledger: Ledger
) -> None:
    activities = DigestActivities(
        client, ledger, None, task_queue=task_queue, policy=TrackingPolicy()
    )
    env = ActivityEnvironment()
    fired = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    first = await env.run(activities.post_digest, DigestJob(fired_at=fired, timezone="Asia/Tokyo"))
    later = fired + timedelta(hours=6)  # 23:00 in Tokyo: the same local day
    again = await env.run(activities.post_digest, DigestJob(fired_at=later, timezone="Asia/Tokyo"))
    next_day = await env.run(
        activities.post_digest,
        DigestJob(fired_at=later + timedelta(hours=2), timezone="Asia/Tokyo"),
    )

    assert (first.idempotency_key, first.transport, first.listed) == (
        "digest:2026-12-01",
        "ledger",
        0,
    )
    assert again.idempotency_key == first.idempotency_key and again.already_posted
    assert next_day.idempotency_key == "digest:2026-12-02" and not next_day.already_posted
    record = await ledger.get("digest:2026-12-01")
    assert record is not None and record.kind == "alert" and record.trigger == "digest"
    assert record.subject == "Trackflow daily digest 2026-12-01: no open problem shipments"


async def test_a_pause_set_by_hand_survives_the_worker_updating_the_schedule(
    client: Client, task_queue: str, tmp_path: Path, schedule_cleanup: None
) -> None:
    await ensure_digest_schedule(client, settings(task_queue, tmp_path, digest_hour=9))
    handle = client.get_schedule_handle(DIGEST_SCHEDULE_ID)
    await handle.pause(note="paused during the holidays")
    await ensure_digest_schedule(client, settings(task_queue, tmp_path, digest_hour=10))
    described = await handle.describe()
    assert described.schedule.state.paused
    assert _calendar(described) == ([ScheduleRange(10)], "UTC")


@pytest.mark.parametrize("value", ["off", "OFF", "none"])
def test_the_digest_is_turned_off_by_setting_its_hour_to_off(value: str) -> None:
    assert Settings.from_env({"TRACKFLOW_DIGEST_HOUR": value}).digest_hour is None
    assert Settings.from_env({"TRACKFLOW_DIGEST_HOUR": "17"}).digest_hour == 17
    assert Settings.from_env({}).digest_hour == 9
