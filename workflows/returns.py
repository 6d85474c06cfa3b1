"""ReturnsWorkflow: acknowledge a refund or return request and tell the helpdesk."""

from __future__ import annotations

import asyncio

from temporalio import workflow

from trackflow import policy_table
from trackflow.contracts import RETURNS_WORKFLOW_NAME, ReturnsWorkflowInput
from trackflow.messages import MessageContext
from trackflow.returns import plan_return
from workflows import effects


@workflow.defn(name=RETURNS_WORKFLOW_NAME)
class ReturnsWorkflow:
    @workflow.run
    async def run(self, input: ReturnsWorkflowInput) -> list[str]:
        policy = policy_table.resolve(input.policy)
        plan = plan_return(input.shipment, policy, input.request, workflow.now())
        if workflow.patched(effects.INTEGRATIONS_PATCH):
            # Not awaited: a helpdesk or Slack outage never holds the acknowledgement.
            integrations = [
                asyncio.create_task(effects.integrate("tag_helpdesk", plan.tag, "helpdesk tag")),
                asyncio.create_task(effects.integrate("raise_alert", plan.alert, "alert")),
            ]
        else:
            await effects.tag_helpdesk(plan.tag)
            integrations = []
        sent = []
        for timed in sorted(plan.acknowledgements, key=lambda t: t.due_at):
            wait = timed.due_at - workflow.now()
            if wait.total_seconds() > 0:
                await workflow.sleep(wait, summary="held for the customer's send window")
            await effects.send(MessageContext.of(input.shipment), [timed.send])
            sent.append(timed.send.idempotency_key)
        await asyncio.gather(*integrations)
        return sent
