"""InboundTicketWorkflow: one new helpdesk ticket, triaged once.

Started by `POST /webhooks/gorgias` and `/webhooks/zendesk` with the id
`ticket-<helpdesk>-<ticket id>`, which a repeated webhook cannot start again. It runs on the
main task queue and hands the work to one activity, `triage_ticket`, on the integrations
task queue (contracts.integrations_queue): a helpdesk that is down retries there, with
backoff, for up to a day, and never takes a customer message's worker slot.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from trackflow.contracts import integrations_queue

with workflow.unsafe.imports_passed_through():
    # Pure models only (no I/O): shared with the host, one class on both sides.
    from trackflow.tickets import InboundTicket, TicketTriage

INBOUND_TICKET_WORKFLOW_NAME = "InboundTicketWorkflow"
TRIAGE_TICKET = "triage_ticket"
TRIAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=0,  # bounded by the schedule-to-close timeout below
)
TRIAGE_START_TO_CLOSE = timedelta(seconds=60)
TRIAGE_SCHEDULE_TO_CLOSE = timedelta(days=1)


@workflow.defn(name=INBOUND_TICKET_WORKFLOW_NAME)
class InboundTicketWorkflow:
    @workflow.run
    async def run(self, ticket: InboundTicket) -> TicketTriage:
        triage: TicketTriage = await workflow.execute_activity(
            TRIAGE_TICKET,
            ticket,
            result_type=TicketTriage,
            task_queue=integrations_queue(workflow.info().task_queue),
            start_to_close_timeout=TRIAGE_START_TO_CLOSE,
            schedule_to_close_timeout=TRIAGE_SCHEDULE_TO_CLOSE,
            retry_policy=TRIAGE_RETRY,
        )
        return triage
