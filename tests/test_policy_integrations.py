"""What the policy asks of the integrations: one helpdesk tag (with its private note) per delay
told, the delayed-shipments list joined and left, and alerts an agent can act on."""

from __future__ import annotations

from datetime import timedelta

from tests.factories import ANY_TIME_POLICY, at, exception_event, make_event, make_shipment
from tests.test_policy import Run
from trackflow.effects import (
    AUTO_DELAY_NOTIFIED,
    LOST_PACKAGE_TAG,
    SendNotification,
    SyncDelayedList,
)
from trackflow.models import CarrierStatus as S
from trackflow.models import ExceptionKind as X
from trackflow.shipment_state import Decision


class SegmentRun(Run):
    def __init__(self) -> None:
        super().__init__(make_shipment(carrier="ups"), ANY_TIME_POLICY)
        self.segments: list[SyncDelayedList] = []

    def _apply(self, decision: Decision) -> list[SendNotification]:
        self.segments.extend(decision.segments)
        return super()._apply(decision)


def test_a_delay_told_tags_once_with_every_tag_and_a_note_saying_what_was_sent() -> None:
    run = SegmentRun()
    run.feed(make_event(S.IN_TRANSIT, at(0)), exception_event(X.WEATHER_DELAY, at(1)))
    [tag] = run.tags
    assert tag.all_tags == [AUTO_DELAY_NOTIFIED]
    assert tag.idempotency_key.endswith(
        f":exception:1-weather_delay:helpdesk:{AUTO_DELAY_NOTIFIED}"
    )
    assert "exception (weather delay), by email, at 2026-11-20 12:02 UTC" in tag.note
    assert "Live status: exception with ups" in tag.note
    assert "Tracking: https://" in tag.note and "1Z999AA10123456784" in tag.note
    assert "Ada" not in tag.note  # no personal data the agent does not need in a note


def test_lost_adds_the_lost_package_tag_to_the_same_note() -> None:
    run = SegmentRun()
    run.feed(make_event(S.IN_TRANSIT, at(0)))
    run.tick(run.now + ANY_TIME_POLICY.standard.lost_after + timedelta(minutes=1))
    lost = [t for t in run.tags if LOST_PACKAGE_TAG in t.all_tags]
    assert [t.all_tags for t in lost] == [[AUTO_DELAY_NOTIFIED, LOST_PACKAGE_TAG]]
    [alert] = run.alerts
    assert alert.carrier == "ups" and alert.first_name == "Ada"
    assert alert.carrier_url and "1Z999AA10123456784" in alert.carrier_url
    assert alert.workflow_id == "shipment-1Z999AA10123456784"
    assert alert.already_sent == ["in transit email 2026-11-20 12:01 UTC"]


def test_the_delayed_list_is_joined_once_per_delay_and_left_when_it_resolves() -> None:
    run = SegmentRun()
    run.feed(make_event(S.IN_TRANSIT, at(0)), exception_event(X.WEATHER_DELAY, at(1)))
    assert [(s.member, s.idempotency_key.rsplit(":", 2)[1:]) for s in run.segments] == [
        (True, ["1", "add"])
    ]
    run.feed(exception_event(X.WEATHER_DELAY, at(2)))  # still delayed: no change
    assert len(run.segments) == 1
    run.feed(make_event(S.IN_TRANSIT, at(3)))  # moving again: the delay is over
    assert [s.member for s in run.segments] == [True, False]
    assert run.segments[1].idempotency_key.endswith(":delayed-list:2:remove")
    assert not run.state.delayed_list_member
    run.feed(make_event(S.DELIVERED, at(30)))
    assert len(run.segments) == 2


def test_a_lost_parcel_stays_on_the_list_until_delivered() -> None:
    run = SegmentRun()
    run.feed(make_event(S.IN_TRANSIT, at(0)))
    run.tick(run.now + ANY_TIME_POLICY.standard.lost_after + timedelta(minutes=1))
    assert [s.member for s in run.segments] == [True]
    run.tick(run.now + timedelta(days=1))
    assert [s.member for s in run.segments] == [True]
    run.feed(make_event(S.DELIVERED, run.now + timedelta(hours=1)))
    assert [s.member for s in run.segments] == [True, False]
