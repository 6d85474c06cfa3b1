"""The worker process: hosts ShipmentTrackingWorkflow and the notification activities."""

from __future__ import annotations

import asyncio
import compileall
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TypedDict

import httpx
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import trackflow
import workflows
from activities.alerts import AlertActivities
from activities.channels import transports_for
from activities.digest import DigestActivities, ensure_digest_schedule
from activities.helpdesk import HelpdeskActivities
from activities.helpdesks import annotator_for, helpdesk_for
from activities.klaviyo import KlaviyoActivities
from activities.notify import NotificationActivities
from activities.polling import (
    EasyPostTrackers,
    HealthReporter,
    PollingActivities,
    ShipEngineTracking,
    TrackerApi,
)
from activities.read_model import ReadModel
from activities.retention import purge_daily
from activities.slack import alert_transport_for, slack_poster_for
from activities.tickets import TicketActivities
from storage import Ledger, open_ledger
from trackflow import policy_table
from trackflow.contracts import POLL_PROVIDERS, integrations_queue, poll_queue
from trackflow.messages import DEFAULT_BRAND_COLOR, Brand
from trackflow.page_token import page_key
from trackflow.settings import Settings
from trackflow.timezones import preload_zone_data
from trackflow.tracking_policy import TrackingPolicy
from workers.integration_health import IntegrationHealth
from workers.policy_file import load_policy
from workers.runtime import connect, ensure_search_attributes, secure_data_dir
from workflows.carrier_api_health import CarrierApiHealthWorkflow
from workflows.digest import DailyDigestWorkflow
from workflows.inbound_ticket import InboundTicketWorkflow
from workflows.returns import ReturnsWorkflow
from workflows.shipment import ShipmentTrackingWorkflow
from workflows.unmatched import UnmatchedEventsWorkflow

log = logging.getLogger("trackflow.worker")

WORKFLOWS = [
    ShipmentTrackingWorkflow,
    ReturnsWorkflow,
    UnmatchedEventsWorkflow,
    CarrierApiHealthWorkflow,
    DailyDigestWorkflow,
    InboundTicketWorkflow,
]


# What the sandbox shares with the host: the modules whose types cross the workflow boundary
# (inputs, signals, activity I/O, query results: one class on both sides, or pydantic refuses
# the other side's instances), pydantic, and pytz, whose zone files the host has read already
# (`preload_zone_data`: the sandbox forbids reading them). Everything else in trackflow (the
# policy, timers, send windows, zones, returns) is imported afresh inside the sandbox, so a
# clock read, a random number or I/O there fails the workflow task instead of passing unseen.
# Workflow modules must import those outside `workflow.unsafe.imports_passed_through()`, which
# shares a module with the host whatever this list says (tests/test_sandbox.py).
BOUNDARY_MODULES = (
    "trackflow.models",
    "trackflow.contracts",
    "trackflow.effects",
    "trackflow.shipment_state",
    "trackflow.tracking_policy",
    "trackflow.api_health",
    "trackflow.messages",  # MessageContext rides in the send activity's input
    "trackflow.policy_table",  # the worker's table, read by workflows: one copy, the host's
)


def sandbox_runner() -> SandboxedWorkflowRunner:
    preload_zone_data()
    compile_sandboxed_packages()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            *BOUNDARY_MODULES, "pydantic", "pytz"
        )
    )


def compile_sandboxed_packages() -> None:
    """Bytecode for the modules every workflow run imports afresh in its sandbox: without it
    (PYTHONDONTWRITEBYTECODE=1, common in containers) each import compiles the source again,
    measured at a third of the worker's CPU per new shipment. Written once, only where stale;
    a read-only install is left as it is."""
    for package in (trackflow, workflows):
        for folder in package.__path__:
            with contextlib.suppress(OSError):
                compileall.compile_dir(folder, quiet=2)


async def hold_policies(ledger: Ledger, configured: TrackingPolicy) -> None:
    """Workflows name their policy by digest: this worker holds the configured one and every
    one a worker of this ledger was configured with before, so shipments started under an
    earlier policy file keep their rules after the file changes."""
    digest = policy_table.register(configured)
    await ledger.save_policy(digest, configured.model_dump_json())
    for stored, body in (await ledger.stored_policies()).items():
        policy_table.hold(stored, TrackingPolicy.model_validate_json(body))


@asynccontextmanager
async def running_workers(client: Client, settings: Settings) -> AsyncIterator[None]:
    """The main worker (workflows, messages, alerts, tags) and the carrier-API poller, whose
    own task queue carries the rate limit shared by every worker polling that queue."""
    if settings.support_contact_warning:
        log.warning("trackflow worker: %s", settings.support_contact_warning)
    ledger = open_ledger(settings.resolved_ledger_url)
    carrier_http = httpx.AsyncClient(base_url=settings.easypost_base_url, timeout=20)
    alert_transport = alert_transport_for(settings, ledger)
    # One health workflow per carrier API and per message provider, shared by every shipment:
    # it keeps the process's time scale (TRACKFLOW_TIME_SCALE), never a shipment's own.
    policy = load_policy(settings)
    await hold_policies(ledger, policy)
    health = HealthReporter(client, settings.task_queue, policy)
    read_model = ReadModel(ledger, page_key(settings))
    notifications = NotificationActivities(
        ledger=ledger,
        read_model=read_model,
        transports=transports_for(settings, ledger),
        alerts=alert_transport,
        provider_timeout=timedelta(seconds=settings.provider_timeout_s),
        health=health,
        brand=message_brand(settings),
    )
    alerts = AlertActivities(ledger, alert_transport)
    helpdesk = HelpdeskActivities(ledger, helpdesk_for(settings, ledger))
    klaviyo = KlaviyoActivities.from_settings(settings, ledger)
    tickets = TicketActivities(
        ledger, client, settings, lambda helpdesk: annotator_for(settings, helpdesk)
    )
    digest = DigestActivities(
        client,
        ledger,
        slack_poster_for(settings),
        task_queue=settings.task_queue,
        policy=policy,
        temporal_ui_url=settings.temporal_ui_url,
        namespace=settings.temporal_namespace,
    )
    shipengine_http = httpx.AsyncClient(base_url=settings.shipengine_base_url, timeout=20)
    apis: dict[str, TrackerApi] = {}
    if settings.easypost_api_key:
        apis["easypost"] = EasyPostTrackers(carrier_http, settings.easypost_api_key)
    if settings.shipengine_api_key:
        apis["shipengine"] = ShipEngineTracking(shipengine_http, settings.shipengine_api_key)
    polling = PollingActivities(apis, health)
    main = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        # raise_alert and tag_helpdesk also here, for runs recorded before INTEGRATIONS_PATCH
        activities=[
            notifications.send_notifications,
            read_model.project_shipment,
            alerts.raise_alert,
            helpdesk.tag_helpdesk,
        ],
        workflow_runner=sandbox_runner(),
        **main_worker_tuning(settings),
    )
    integrations = Worker(
        client,
        task_queue=integrations_queue(settings.task_queue),
        activities=[
            alerts.raise_alert,
            alerts.record_alert,
            helpdesk.tag_helpdesk,
            klaviyo.sync_delayed_list,
            digest.post_digest,
            tickets.triage_ticket,
        ],
        interceptors=[IntegrationHealth(health, integration_providers(settings))],
        max_concurrent_activities=settings.integration_concurrency,
    )
    pollers = [
        Worker(
            client,
            task_queue=poll_queue(settings.task_queue, provider),
            activities=[polling.poll_carrier],
            max_task_queue_activities_per_second=settings.poll_rate_per_second,
        )
        for provider in POLL_PROVIDERS
    ]
    try:
        async with contextlib.AsyncExitStack() as stack:
            for worker in (main, integrations, *pollers):
                await stack.enter_async_context(worker)
            purging = asyncio.create_task(purge_daily(ledger, settings))
            try:
                yield
            finally:
                purging.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purging
    finally:
        await carrier_http.aclose()
        await shipengine_http.aclose()
        await ledger.close()


class MainWorkerTuning(TypedDict, total=False):
    max_cached_workflows: int
    max_concurrent_workflow_tasks: int
    max_concurrent_activities: int
    max_concurrent_local_activities: int


def message_brand(settings: Settings) -> Brand:
    """How the store presents itself in the messages the worker sends."""
    return Brand(
        store_name=settings.store_name,
        support_email=settings.contact_email,
        support_phone=settings.support_phone,
        support_url=settings.support_url,
        resolution_url=settings.resolution_url,
        review_url=settings.review_url,
        logo_url=settings.brand_logo_url,
        primary_color=settings.brand_color or DEFAULT_BRAND_COLOR,
        postal_address=settings.brand_postal_address,
        public_url=settings.public_url,
        unsubscribe_secret=settings.unsubscribe_secret,
        unsubscribe_email=settings.unsubscribe_email,
    )


def main_worker_tuning(settings: Settings) -> MainWorkerTuning:
    """The main worker's cache size (TRACKFLOW_MAX_CACHED_WORKFLOWS) and the slots set by
    TRACKFLOW_MAX_CONCURRENT_{WORKFLOW_TASKS,ACTIVITIES,LOCAL_ACTIVITIES}; unset: the SDK's."""
    tuning = MainWorkerTuning(max_cached_workflows=settings.max_cached_workflows)
    if settings.max_concurrent_workflow_tasks is not None:
        tuning["max_concurrent_workflow_tasks"] = settings.max_concurrent_workflow_tasks
    if settings.max_concurrent_activities is not None:
        tuning["max_concurrent_activities"] = settings.max_concurrent_activities
    if settings.max_concurrent_local_activities is not None:
        tuning["max_concurrent_local_activities"] = settings.max_concurrent_local_activities
    return tuning


def integration_providers(settings: Settings) -> dict[str, str]:
    """Which integration each activity calls, for those configured (their health counted)."""
    providers: dict[str, str] = {}
    if settings.slack_webhook_url or settings.slack_bot_token:
        providers["raise_alert"] = providers["post_digest"] = "slack"
    helpdesk = "gorgias" if settings.gorgias_configured else None
    helpdesk = helpdesk or ("zendesk" if settings.zendesk_configured else None)
    if helpdesk is not None:
        providers["tag_helpdesk"] = providers["triage_ticket"] = helpdesk
    if settings.klaviyo_api_key and settings.klaviyo_delayed_list_id:
        providers["sync_delayed_list"] = "klaviyo"
    return providers


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    secure_data_dir(settings.data_dir)
    client = await connect(settings)
    await ensure_search_attributes(client)
    await ensure_digest_schedule(client, settings)
    async with running_workers(client, settings):
        await (stop or asyncio.Event()).wait()
