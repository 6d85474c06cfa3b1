"""A poll returns only the events the shipment does not have yet (history stays lean)."""

from __future__ import annotations

import uuid
from datetime import datetime

from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.polling import HealthReporter, PollingActivities
from tests.factories import ANY_TIME_POLICY, at, make_event
from trackflow.effects import PollCarrier
from trackflow.models import CarrierEvent, CarrierStatus

NUMBER = "1Z999AA10123456784"
TRACKER = [
    make_event(CarrierStatus.LABEL_CREATED, at(0), tracking_number=NUMBER),
    make_event(CarrierStatus.IN_TRANSIT, at(1), tracking_number=NUMBER),
    make_event(CarrierStatus.OUT_FOR_DELIVERY, at(2), tracking_number=NUMBER),
]


class WholeHistoryApi:
    """Like EasyPost and ShipEngine: every fetch answers the tracker's whole history."""

    provider = "easypost"

    async def fetch(self, tracking_number: str, carrier: str | None) -> list[CarrierEvent]:
        return TRACKER


async def test_a_poll_returns_only_events_at_or_after_the_newest_known(
    client: Client, task_queue: str
) -> None:
    health = HealthReporter(client, f"{task_queue}-{uuid.uuid4().hex[:6]}", ANY_TIME_POLICY)
    polling = PollingActivities({"easypost": WholeHistoryApi()}, health)
    env = ActivityEnvironment()

    def poll(newest_known: datetime | None) -> PollCarrier:
        return PollCarrier(
            provider="easypost",
            tracking_number=NUMBER,
            carrier="ups",
            attempt=1,
            newest_known=newest_known,
        )

    first = await env.run(polling.poll_carrier, poll(None))
    later = await env.run(polling.poll_carrier, poll(at(1)))
    assert [e.status for e in first.events] == [e.status for e in TRACKER]
    assert [e.status for e in later.events] == ["in_transit", "out_for_delivery"]
    assert all(e.polled for e in later.events)
