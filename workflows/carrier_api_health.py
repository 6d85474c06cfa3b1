"""CarrierApiHealthWorkflow: one per carrier API, fed by every poll's outcome."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from datetime import timedelta

from temporalio import workflow

from trackflow import api_health, policy_table
from trackflow.api_health import ApiHealth
from trackflow.contracts import (
    API_HEALTH_WORKFLOW_NAME,
    QUERY_STATE,
    SIGNAL_API_OUTCOME,
    STATUS,
    ApiHealthInput,
    ApiOutcome,
)
from workflows import effects

MAX_OUTCOMES_PER_RUN = 2000


@workflow.defn(name=API_HEALTH_WORKFLOW_NAME)
class CarrierApiHealthWorkflow:
    @workflow.init
    def __init__(self, input: ApiHealthInput) -> None:
        self._health = input.health or ApiHealth(provider=input.provider)
        self._policy = policy_table.resolve(input.policy)
        self._outcomes: list[ApiOutcome] = []
        self._received = 0
        self._published = ""
        self._alerts: set[asyncio.Task[None]] = set()

    @workflow.run
    async def run(self, input: ApiHealthInput) -> None:
        while self._received < MAX_OUTCOMES_PER_RUN or self._outcomes:
            due = api_health.outage_due(self._health, self._policy)
            timeout = None if due is None else max(due - workflow.now(), timedelta(0))
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(lambda: bool(self._outcomes), timeout=timeout)
            while self._outcomes:
                outcome = self._outcomes.pop(0)
                await self._apply(
                    api_health.on_outcome(self._health, outcome.ok, outcome.detail, workflow.now())
                )
            await self._apply(api_health.on_time(self._health, self._policy, workflow.now()))
        await workflow.wait_condition(lambda: workflow.all_handlers_finished() and not self._alerts)
        workflow.continue_as_new(
            ApiHealthInput(provider=input.provider, policy=input.policy, health=self._health)
        )

    @staticmethod
    async def _settle(call: Awaitable[str | None]) -> None:
        if gave_up := await call:
            workflow.logger.warning("alert not delivered: %s", gave_up)

    @workflow.signal(name=SIGNAL_API_OUTCOME)
    def outcome(self, outcome: ApiOutcome) -> None:
        self._received += 1
        self._outcomes.append(outcome)

    @workflow.query(name=QUERY_STATE)
    def state(self) -> ApiHealth:
        return self._health

    async def _apply(self, decision: api_health.HealthDecision) -> None:
        self._health = decision.health
        if not decision.alerts:
            pass
        elif workflow.patched(effects.INTEGRATIONS_PATCH):
            # In the background, on the integrations queue: a Slack outage never holds the
            # count. An alert about Slack itself goes to the ledger and the worker's log.
            activity = "record_alert" if self._health.provider == "slack" else "raise_alert"
            for alert in decision.alerts:
                call = effects.integrate(activity, alert, f"alert {alert.alert.value}")
                task = asyncio.create_task(self._settle(call))
                self._alerts.add(task)
                task.add_done_callback(self._alerts.discard)
        else:
            for alert in decision.alerts:
                await effects.raise_alert(alert)
        if self._health.status != self._published:
            self._published = self._health.status
            workflow.upsert_search_attributes([STATUS.value_set(self._health.status)])
            workflow.set_current_details(f"**{self._health.provider} API: {self._health.status}**")
