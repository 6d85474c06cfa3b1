"""Delivery modes per channel: the outbox, shadow (recorded, never sent) and live."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.channels import transports_for
from starters.shipments import register_shipment
from storage import open_ledger
from tests.factories import ANY_TIME_POLICY, at, make_event, make_shipment
from tests.harness import clean_env, eventually, free_port, outbox, running_worker, trackflow_cli
from trackflow.carriers.samples import random_tracking_number
from trackflow.models import CarrierStatus, Channel
from trackflow.settings import Settings

SENDGRID = {"sendgrid_api_key": "SG.x", "email_from": "shop@example.com"}
TWILIO = {"twilio_account_sid": "AC" + "0" * 32, "twilio_auth_token": "t", "twilio_from": "+1500"}


def test_unset_means_live_with_credentials_and_the_outbox_without() -> None:
    assert Settings().delivery_mode_for(Channel.EMAIL) == "outbox"
    assert Settings(**SENDGRID).delivery_mode_for(Channel.EMAIL) == "live"
    assert Settings(**SENDGRID).delivery_mode_for(Channel.SMS) == "outbox"
    assert Settings(**TWILIO).delivery_mode_for(Channel.SMS) == "live"


def test_one_mode_for_both_channels_or_one_per_channel() -> None:
    both = Settings(delivery_mode="shadow", **SENDGRID, **TWILIO)
    assert [both.delivery_mode_for(c) for c in Channel] == ["shadow", "shadow"]
    mixed = Settings(delivery_mode="shadow", sms_delivery_mode="live", **TWILIO)
    assert [mixed.delivery_mode_for(c) for c in Channel] == ["shadow", "live"]
    assert Settings(email_delivery_mode="outbox", **SENDGRID).delivery_mode_for(Channel.EMAIL) == (
        "outbox"
    )


def test_live_without_the_providers_credentials_is_a_clear_setting_error() -> None:
    with pytest.raises(ValueError, match="email delivery mode 'live' needs TRACKFLOW_SENDGRID"):
        Settings(delivery_mode="live").delivery_mode_for(Channel.EMAIL)
    with pytest.raises(ValueError, match="sms delivery mode 'live' needs TRACKFLOW_TWILIO"):
        Settings(sms_delivery_mode="live").delivery_mode_for(Channel.SMS)


async def test_the_transports_follow_the_modes(tmp_path: Path) -> None:
    ledger = open_ledger(str(tmp_path / "ledger.sqlite3"))
    try:
        shadow = transports_for(Settings(delivery_mode="shadow", **SENDGRID, **TWILIO), ledger)
        live = transports_for(Settings(sms_delivery_mode="shadow", **SENDGRID), ledger)
    finally:
        await ledger.close()
    assert {c: t.name for c, t in shadow.items()} == {
        Channel.EMAIL: "shadow",
        Channel.SMS: "shadow",
    }
    assert {c: t.name for c, t in live.items()} == {
        Channel.EMAIL: "sendgrid",
        Channel.SMS: "shadow",
    }


async def test_shadow_mode_records_what_would_have_gone_out_and_calls_no_provider(
    temporal_env: WorkflowEnvironment, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """SendGrid and Twilio are configured, but at an address where nothing listens: a
    provider call would fail; in shadow mode every message is recorded all the same."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    shipment = make_shipment(tracking_number=random_tracking_number("ups"), order_value="300.00")
    providers = SENDGRID | TWILIO | {"sendgrid_base_url": nowhere, "twilio_base_url": nowhere}
    async with running_worker(client, task_queue, tmp_path, delivery_mode="shadow", **providers):
        with temporal_env.with_time_skipping_disabled():
            label = make_event(
                CarrierStatus.LABEL_CREATED, at(0), tracking_number=shipment.tracking_number
            )
            await register_shipment(
                client, shipment, ANY_TIME_POLICY, task_queue=task_queue, events=[label]
            )
        records = await eventually(
            lambda: outbox(tmp_path, shipment.tracking_number),
            lambda r: len(r) >= 2,
            what="both channels recorded",
        )
    assert {(r.channel, r.transport, r.provider_message_id) for r in records} == {
        ("email", "shadow", None),
        ("sms", "shadow", None),
    }

    env = clean_env() | {"TRACKFLOW_DATA_DIR": str(tmp_path)}
    exported = trackflow_cli("outbox", "--mode", "shadow", "--csv", env=env)
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert {(row["channel"], row["transport"], row["to"]) for row in rows} == {
        ("email", "shadow", "ada@example.com"),
        ("sms", "shadow", "+15025550123"),
    }
    live = trackflow_cli("outbox", "--mode", "live", "--json", env=env)
    assert (live.returncode, live.stdout.strip()) == (0, "[]")
