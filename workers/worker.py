"""The worker process: hosts ShipmentTrackingWorkflow and the notification activities."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.alerts import AlertActivities, LedgerAlerts
from activities.helpdesk import HelpdeskActivities, LedgerHelpdesk
from activities.ledger import open_ledger
from activities.notify import NotificationActivities, OutboxNotifier
from trackflow.messages import Brand
from trackflow.settings import Settings
from trackflow.timezones import preload_zone_data
from workers.runtime import connect, ensure_search_attributes
from workflows.returns import ReturnsWorkflow
from workflows.shipment import ShipmentTrackingWorkflow
from workflows.unmatched import UnmatchedEventsWorkflow

WORKFLOWS = [ShipmentTrackingWorkflow, ReturnsWorkflow, UnmatchedEventsWorkflow]


def sandbox_runner() -> SandboxedWorkflowRunner:
    preload_zone_data()
    # The pure domain is deterministic and may be shared with the host, which also keeps
    # pydantic and zoneinfo objects out of the sandbox's restricted proxies.
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            "trackflow", "pydantic", "pytz"
        )
    )


@asynccontextmanager
async def build_worker(client: Client, settings: Settings) -> AsyncIterator[Worker]:
    ledger = open_ledger(settings.resolved_ledger_url)
    notifications = NotificationActivities(
        ledger=ledger,
        notifier=OutboxNotifier(ledger),
        brand=Brand(
            store_name=settings.store_name,
            support_email=settings.support_email,
            support_phone=settings.support_phone,
            resolution_url=settings.resolution_url,
            review_url=settings.review_url,
        ),
    )
    alerts = AlertActivities(ledger, LedgerAlerts(ledger))
    helpdesk = HelpdeskActivities(ledger, LedgerHelpdesk(ledger))
    try:
        yield Worker(
            client,
            task_queue=settings.task_queue,
            workflows=WORKFLOWS,
            activities=[
                notifications.send_notification,
                alerts.raise_alert,
                helpdesk.tag_helpdesk,
            ],
            workflow_runner=sandbox_runner(),
        )
    finally:
        await ledger.close()


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    client = await connect(settings)
    await ensure_search_attributes(client)
    async with build_worker(client, settings) as worker, worker:
        await (stop or asyncio.Event()).wait()
