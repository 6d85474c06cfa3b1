"""An email refused for good becomes a text, when the policy says so."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from devstack.doubles.providers import ProviderDoubles, Rule, create_providers_app
from devstack.doubles.providers.server import serving
from starters.shipments import register_shipment, shipment_view
from tests.factories import ANY_TIME_POLICY, at, make_event, make_shipment
from tests.harness import eventually, outbox, running_worker
from trackflow.carriers.samples import random_tracking_number
from trackflow.effects import SendNotification
from trackflow.models import CarrierStatus, Channel, Trigger
from trackflow.policy import on_send_outcome, record_sent
from trackflow.shipment_state import ShipmentState

FALLBACK = ANY_TIME_POLICY.model_copy(update={"sms_fallback_on_email_failure": True})
KEY = "1Z999AA10123456784/1001:in_transit:1"
EMAIL = SendNotification(
    idempotency_key=f"{KEY}:email",
    trigger=Trigger.IN_TRANSIT,
    channel=Channel.EMAIL,
    to="ada@example.com",
)


def test_a_bounced_email_goes_out_as_a_text_to_a_consenting_phone() -> None:
    shipment = make_shipment(order_value="20")  # below the SMS threshold: email only
    state = record_sent(ShipmentState(), EMAIL, at(0), "sendgrid:failed:400")
    [text] = on_send_outcome(state, EMAIL, "sendgrid:failed:400", shipment, FALLBACK).sends
    assert (text.idempotency_key, text.channel, text.to, text.trigger) == (
        f"{KEY}:sms",
        Channel.SMS,
        "+15025550123",
        Trigger.IN_TRANSIT,
    )


def test_no_text_without_the_policy_consent_or_when_one_went_already() -> None:
    shipment = make_shipment()
    failed = "sendgrid:failed:400"
    assert on_send_outcome(ShipmentState(), EMAIL, failed, shipment, ANY_TIME_POLICY).sends == []
    no_consent = make_shipment(sms_consent=False)
    assert on_send_outcome(ShipmentState(), EMAIL, failed, no_consent, FALLBACK).sends == []
    texted = SendNotification(
        idempotency_key=f"{KEY}:sms", trigger=Trigger.IN_TRANSIT, channel=Channel.SMS, to="+1"
    )
    state = record_sent(ShipmentState(), texted, at(0), "twilio")
    assert on_send_outcome(state, EMAIL, failed, shipment, FALLBACK).sends == []


def test_only_a_permanent_failure_of_an_email_falls_back() -> None:
    shipment = make_shipment()
    for outcome in ("sendgrid", "outbox", "suppressed:unsubscribed", "sendgrid:uncertain"):
        assert on_send_outcome(ShipmentState(), EMAIL, outcome, shipment, FALLBACK).sends == []
    sms = EMAIL.model_copy(update={"channel": Channel.SMS, "idempotency_key": f"{KEY}:sms"})
    assert (
        on_send_outcome(ShipmentState(), sms, "twilio:failed:21211", shipment, FALLBACK).sends == []
    )


async def test_a_workflows_refused_email_is_texted_instead_end_to_end(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """SendGrid (the double) refuses the email for good (400); the policy says fall back: the
    same message goes out as a text (here through the outbox), once."""
    state = ProviderDoubles(sendgrid_api_key="SG.key", auto_events=False)
    shipment = make_shipment(
        tracking_number=random_tracking_number("ups"), order_value="20"
    )  # below the SMS threshold: the decision is email only
    state.script(Rule("sendgrid", "error", code=400))
    label = make_event(CarrierStatus.LABEL_CREATED, at(0), tracking_number=shipment.tracking_number)
    with serving(create_providers_app(state)) as base_url:
        async with running_worker(
            client,
            task_queue,
            tmp_path,
            sendgrid_api_key="SG.key",
            email_from="Acme <shop@example.com>",
            sendgrid_base_url=base_url,
        ):
            with temporal_env.with_time_skipping_disabled():
                registered = await register_shipment(
                    client, shipment, FALLBACK, task_queue=task_queue, events=[label]
                )
            records = await eventually(
                lambda: outbox(tmp_path, shipment.tracking_number),
                lambda r: len(r) >= 1,
                what="the text",
            )
            view = await eventually(
                lambda: shipment_view(client, shipment.tracking_number),
                lambda v: len(v.notifications) == 2,
                what="both outcomes in the view",
            )
    assert [(r.channel, r.trigger, r.transport) for r in records] == [
        ("sms", "label_created", "outbox")
    ]
    assert [(n.channel.value, n.outcome) for n in view.notifications] == [
        ("email", "sendgrid:failed:400"),
        ("sms", "outbox"),
    ]
    assert registered.outcome == "accepted"
