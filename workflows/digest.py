"""DailyDigestWorkflow: what the daily digest schedule starts (``activities.digest``).

One activity, ``post_digest``, on the integrations task queue (Slack's outage retries there,
never on a customer message's worker slots). The workflow's own start time (workflow time,
deterministic) names the local day the digest is for, so a retry or a replay posts the same
digest under the same key.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from trackflow.contracts import integrations_queue
from trackflow.digest import (
    DIGEST_WORKFLOW_NAME,
    POST_DIGEST,
    DigestJob,
    DigestReceipt,
    DigestRequest,
)

DIGEST_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=["LedgerKeyCollision"],
)
GIVE_UP_AFTER = timedelta(hours=6)
"""A digest six hours late is not worth posting: the next day's will say it all."""


@workflow.defn(name=DIGEST_WORKFLOW_NAME)
class DailyDigestWorkflow:
    @workflow.run
    async def run(self, request: DigestRequest) -> DigestReceipt:
        job = DigestJob(fired_at=workflow.now(), timezone=request.timezone)
        receipt: DigestReceipt = await workflow.execute_activity(
            POST_DIGEST,
            job,
            result_type=DigestReceipt,
            task_queue=integrations_queue(workflow.info().task_queue),
            start_to_close_timeout=timedelta(minutes=2),
            schedule_to_close_timeout=GIVE_UP_AFTER,
            retry_policy=DIGEST_RETRY,
            summary="post the daily digest",
        )
        return receipt
