"""The daily digest: the ``post_digest`` activity and the Temporal Schedule that runs it.

``post_digest`` lists the running shipment workflows of this task queue that may be open
problems from Temporal visibility (search attributes only, no personal data), keeps the open
problems (`trackflow.digest`), and posts one Slack message per local day: the ledger key
``digest:<local date>`` (kind ``alert``, trigger ``digest``) goes through `perform_once`, so a
retried activity, a second run the same day or a manual trigger posts nothing more. Without
Slack configured the digest is recorded in the ledger only.

`ensure_digest_schedule` creates or updates the Schedule ``trackflow-daily-digest``: at
``TRACKFLOW_DIGEST_HOUR`` in ``TRACKFLOW_DIGEST_TIMEZONE`` every day, one run at a time
(overlap SKIP); with no digest hour it deletes the schedule. The worker calls it at start-up;
it is visible (and can be triggered by hand) in the Web UI's Schedules page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowExecution,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.alerts import ALERT_CHANNEL, ALERT_KIND
from activities.exactly_once import perform_once
from activities.slack import SLACK, SLACK_REFUSED, SlackPoster, context, key_line
from storage import Ledger, LedgerRecord
from trackflow.contracts import CARRIER, NEXT_ACTION, NEXT_ACTION_AT, ORDER_ID, STATUS
from trackflow.contracts import TRACKING_NUMBER as TRACKING_NUMBER_KEY
from trackflow.digest import (
    DIGEST_SCHEDULE_ID,
    DIGEST_TRIGGER,
    DIGEST_WORKFLOW_NAME,
    POST_DIGEST,
    DigestJob,
    DigestReceipt,
    DigestRequest,
    OpenShipment,
    ProblemShipment,
    digest_blocks,
    digest_key,
    digest_text,
    local_date,
    open_problems,
    visibility_query,
)
from trackflow.settings import Settings
from trackflow.tracking_policy import TrackingPolicy

LEDGER_TRANSPORT = "ledger"
MAX_LISTED = 2000
"""Visibility pages read at most: a digest is a summary, not an export."""
DIGEST_RUN_TIMEOUT = timedelta(hours=12)

_log = logging.getLogger("trackflow.digest")


def stale_margin(policy: TrackingPolicy) -> tuple[timedelta, timedelta]:
    """(lost_after, margin): a parcel whose ``declare_lost`` is due within the margin has had
    no scan for the stale period. The shorter speed's gap, so no stale parcel is missed."""
    timings = (policy.standard, policy.express)
    lost_after = max(t.lost_after for t in timings)
    margin = min(t.lost_after - t.stale_after for t in timings)
    return lost_after, max(margin, timedelta(0))


class DigestActivities:
    def __init__(
        self,
        client: Client,
        ledger: Ledger,
        poster: SlackPoster | None,
        *,
        task_queue: str,
        policy: TrackingPolicy,
        temporal_ui_url: str | None = None,
        namespace: str = "default",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._ledger = ledger
        self._poster = poster
        self._task_queue = task_queue
        self._lost_after, self._stale_margin = stale_margin(policy)
        self._temporal_ui_url = temporal_ui_url
        self._namespace = namespace
        self._clock = clock

    @activity.defn(name=POST_DIGEST)
    async def post_digest(self, job: DigestJob) -> DigestReceipt:
        key = digest_key(job.fired_at, job.timezone)
        listed = 0

        async def post() -> LedgerRecord:
            nonlocal listed
            problems = await self.open_problems()
            listed = len(problems)
            return await self._post(key, job, problems)

        done = await perform_once(self._ledger, key, ALERT_KIND, post)
        return DigestReceipt(
            idempotency_key=key,
            listed=listed,
            transport=done.record.transport,
            already_posted=done.already_recorded,
        )

    async def open_problems(self) -> list[ProblemShipment]:
        query = visibility_query(self._task_queue)
        shipments: list[OpenShipment] = []
        async for execution in self._client.list_workflows(query, limit=MAX_LISTED):
            shipments.append(_open_shipment(execution))
        return open_problems(
            shipments,
            now=self._clock(),
            lost_after=self._lost_after,
            stale_margin=self._stale_margin,
        )

    async def _post(
        self, key: str, job: DigestJob, problems: list[ProblemShipment]
    ) -> LedgerRecord:
        day = local_date(job.fired_at, job.timezone)
        text = digest_text(problems, day)
        transport, message_id, note = LEDGER_TRANSPORT, None, ""
        if self._poster is not None:
            blocks = digest_blocks(
                problems,
                day,
                temporal_ui_url=self._temporal_ui_url,
                namespace=self._namespace,
                task_queue=self._task_queue,
            )
            # The key rides in the message, so a retry after a crash finds it in the channel.
            blocks.append(context(key_line(key)))
            retrying = activity.in_activity() and activity.info().attempt > 1
            look_for = key if retrying and self._poster.can_look else None
            posted = await self._poster.post(text, blocks, look_for=look_for)
            if posted.ok:
                transport, message_id = SLACK, posted.message_id
            else:
                _log.warning("Slack refused the digest %s: %s", key, posted.error)
                transport, note = SLACK_REFUSED, f"\n[Slack refused it: {posted.error}]"
        lines = [
            f"{p.problem.value}: {p.shipment.order_id} {p.shipment.tracking_number}"
            for p in problems
        ]
        record, _created = await self._ledger.record_once(
            LedgerRecord(
                idempotency_key=key,
                kind=ALERT_KIND,
                tracking_number=DIGEST_TRIGGER,
                order_id="-",
                trigger=DIGEST_TRIGGER,
                channel=ALERT_CHANNEL,
                to=self._poster.destination if self._poster else "ops",
                subject=text,
                body="\n".join(lines) + note,
                transport=transport,
                provider_message_id=message_id,
                sent_at=self._clock(),
            )
        )
        return record


def _open_shipment(execution: WorkflowExecution) -> OpenShipment:
    attributes = execution.typed_search_attributes
    return OpenShipment(
        workflow_id=execution.id,
        order_id=attributes.get(ORDER_ID),
        tracking_number=attributes.get(TRACKING_NUMBER_KEY),
        carrier=attributes.get(CARRIER),
        status=attributes.get(STATUS),
        next_action=attributes.get(NEXT_ACTION),
        next_action_at=attributes.get(NEXT_ACTION_AT),
        started_at=execution.start_time,
    )


# --- the schedule ----------------------------------------------------------------------------


def digest_schedule(settings: Settings) -> Schedule:
    hour = settings.digest_hour if settings.digest_hour is not None else 0
    return Schedule(
        action=ScheduleActionStartWorkflow(
            DIGEST_WORKFLOW_NAME,
            DigestRequest(timezone=settings.digest_timezone),
            id=DIGEST_SCHEDULE_ID,  # Temporal appends the scheduled time
            task_queue=settings.task_queue,
            execution_timeout=DIGEST_RUN_TIMEOUT,
            static_summary="daily digest of open problem shipments",
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    hour=[ScheduleRange(hour)],
                    minute=[ScheduleRange(0)],
                    second=[ScheduleRange(0)],
                    comment="daily digest",
                )
            ],
            time_zone_name=settings.digest_timezone,
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note=f"trackflow digest at {hour:02d}:00 {settings.digest_timezone}"),
    )


async def ensure_digest_schedule(client: Client, settings: Settings) -> str | None:
    """Create or update the digest schedule to match the settings (delete it when
    ``digest_hour`` is None). Returns the schedule id, or None when there is none."""
    handle = client.get_schedule_handle(DIGEST_SCHEDULE_ID)
    if settings.digest_hour is None:
        try:
            await handle.delete()
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
        return None
    wanted = digest_schedule(settings)
    try:
        await client.create_schedule(DIGEST_SCHEDULE_ID, wanted)
        return DIGEST_SCHEDULE_ID
    except ScheduleAlreadyRunningError:
        pass

    def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        state = current.description.schedule.state
        # A pause set by hand in the Web UI stays; the rest follows the settings.
        kept = ScheduleState(note=wanted.state.note, paused=state.paused)
        return ScheduleUpdate(
            schedule=Schedule(
                action=wanted.action, spec=wanted.spec, policy=wanted.policy, state=kept
            )
        )

    await handle.update(update)
    return DIGEST_SCHEDULE_ID
