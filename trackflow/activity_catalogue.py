"""Every activity, declared once: its name, its input and its output.

Workflows call an activity by reference to its declaration here
(`workflow.execute_activity_method(AlertActivities.raise_alert, alert, ...)`), never by a
string. The implementations in `activities/` subclass these classes (mypy holds their
signatures to the declared ones) and take the declared name with `@implements(...)`; the worker
registers, per task queue, what `MAIN_QUEUE`, `INTEGRATIONS_QUEUE` and `POLL_QUEUE` list
(`bind`).

Pure on purpose: the workflow sandbox shares this module with the host
(`workers.worker.BOUNDARY_MODULES`), so declaring an activity imports no I/O, and its input
and output are the host's classes on both sides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from temporalio import activity

from trackflow.contracts import PollResult, SendBatch, SendReport
from trackflow.digest import DigestJob, DigestReceipt
from trackflow.effects import (
    IntegrationReceipt,
    PollCarrier,
    RaiseAlert,
    SyncDelayedList,
    TagHelpdesk,
)
from trackflow.shipment_state import ShipmentProjection
from trackflow.tickets import InboundTicket, TicketTriage

F = TypeVar("F", bound=Callable[..., Any])


class NotificationActivities:
    """Customer messages (`activities.notify`): a local activity on the main queue."""

    @activity.defn(name="send_notifications")
    async def send_notifications(self, batch: SendBatch) -> SendReport:
        raise NotImplementedError


class ReadModelActivities:
    """The shipment's read-model row (`activities.read_model`): a local activity."""

    @activity.defn(name="project_shipment")
    async def project_shipment(self, projection: ShipmentProjection) -> None:
        raise NotImplementedError


class AlertActivities:
    """Ops alerts (`activities.alerts`), on the integrations queue."""

    @activity.defn(name="raise_alert")
    async def raise_alert(self, alert: RaiseAlert) -> IntegrationReceipt:
        raise NotImplementedError

    @activity.defn(name="record_alert")
    async def record_alert(self, alert: RaiseAlert) -> IntegrationReceipt:
        """The ledger and the worker's log only: for alerts about the alert channel itself."""
        raise NotImplementedError


class HelpdeskActivities:
    """Helpdesk tags (`activities.helpdesk`), on the integrations queue."""

    @activity.defn(name="tag_helpdesk")
    async def tag_helpdesk(self, tag: TagHelpdesk) -> IntegrationReceipt:
        raise NotImplementedError


class DelayedListActivities:
    """The merchant's delayed-shipments list (`activities.klaviyo`), integrations queue."""

    @activity.defn(name="sync_delayed_list")
    async def sync_delayed_list(self, sync: SyncDelayedList) -> IntegrationReceipt:
        raise NotImplementedError


class DigestActivities:
    """The daily digest (`activities.digest`), on the integrations queue."""

    @activity.defn(name="post_digest")
    async def post_digest(self, job: DigestJob) -> DigestReceipt:
        raise NotImplementedError


class TicketActivities:
    """Inbound helpdesk tickets (`activities.tickets`), on the integrations queue."""

    @activity.defn(name="triage_ticket")
    async def triage_ticket(self, ticket: InboundTicket) -> TicketTriage:
        raise NotImplementedError


class PollingActivities:
    """Carrier APIs without webhooks (`activities.polling`), on each API's poll queue."""

    @activity.defn(name="poll_carrier")
    async def poll_carrier(self, poll: PollCarrier) -> PollResult:
        raise NotImplementedError


MAIN_QUEUE: tuple[Callable[..., Any], ...] = (
    NotificationActivities.send_notifications,
    ReadModelActivities.project_shipment,
)
INTEGRATIONS_QUEUE: tuple[Callable[..., Any], ...] = (
    AlertActivities.raise_alert,
    AlertActivities.record_alert,
    HelpdeskActivities.tag_helpdesk,
    DelayedListActivities.sync_delayed_list,
    DigestActivities.post_digest,
    TicketActivities.triage_ticket,
)
POLL_QUEUE: tuple[Callable[..., Any], ...] = (PollingActivities.poll_carrier,)
EVERY_ACTIVITY = (*MAIN_QUEUE, *INTEGRATIONS_QUEUE, *POLL_QUEUE)


def activity_name(declared: Callable[..., Any]) -> str:
    """The name an activity runs under (in histories, task queues, metrics)."""
    name = activity._Definition.must_from_callable(declared).name
    if name is None:
        raise TypeError(f"{declared!r} is a dynamic activity: it has no name of its own")
    return name


def implements(declared: Callable[..., Any]) -> Callable[[F], F]:
    """Make a method the implementation of a declared activity: it runs under its name (the
    implementing class subclasses the declaring one, so mypy checks the signature)."""
    name = activity_name(declared)

    def apply(method: F) -> F:
        return activity.defn(name=name)(method)

    return apply


def bind(
    declared: Sequence[Callable[..., Any]], *implementations: object
) -> list[Callable[..., Any]]:
    """The implementations' bound methods for the declared activities, in order: what a
    worker registers. Each must be implemented by exactly one of `implementations`."""
    bound: list[Callable[..., Any]] = []
    for method in declared:
        name = activity_name(method)
        found = [
            candidate
            for implementation in implementations
            if (candidate := getattr(implementation, method.__name__, None)) is not None
            and getattr(candidate, "__func__", candidate) is not method  # not the stub
            and activity._Definition.from_callable(candidate) is not None
            and activity_name(candidate) == name
        ]
        if len(found) != 1:
            raise TypeError(f"activity {name}: {len(found)} implementations among those given")
        bound.append(found[0])
    return bound
