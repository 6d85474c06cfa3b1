"""Payload encryption: the codec alone, and a shipment whose history on the real dev server
holds no personal data in clear."""

from __future__ import annotations

import base64
import json
import subprocess
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DefaultFailureConverterWithEncodedAttributes
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from starters.codec_server import codec_request, create_codec_app, ui_origins
from starters.shipments import register_shipment, shipment_view, signal_event
from tests.conftest import temporal_cli
from tests.factories import ANY_TIME_POLICY, at, make_event, make_shipment
from tests.harness import clean_env, eventually, outbox, running_worker, sent, trackflow_cli
from trackflow.carriers.samples import random_tracking_number
from trackflow.contracts import ALL_KEYS, ShipmentWorkflowInput
from trackflow.encryption import (
    EncryptionCodec,
    EncryptionKeyError,
    generate_key_entry,
    parse_keys,
)
from trackflow.models import Address, CarrierStatus, Customer
from workers.runtime import data_converter

OLD = generate_key_entry("old")
NEW = generate_key_entry("new")


def _payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


async def test_round_trip_names_the_key_and_hides_the_data() -> None:
    codec = EncryptionCodec(parse_keys(NEW))
    original = [_payload("Ada Lovelace"), _payload("ada@example.com")]
    encoded = await codec.encode(original)
    assert [p.metadata["encoding"] for p in encoded] == [b"binary/encrypted"] * 2
    assert [p.metadata["encryption-key-id"] for p in encoded] == [b"new"] * 2
    assert not [p for p in encoded if b"Ada" in p.SerializeToString()]
    assert encoded[0].data != (await codec.encode(original[:1]))[0].data  # a fresh nonce
    assert await codec.decode(encoded) == original


async def test_after_rotation_the_new_key_encrypts_and_the_old_one_still_decrypts() -> None:
    written_before = await EncryptionCodec(parse_keys(OLD)).encode([_payload("before")])
    rotated = EncryptionCodec(parse_keys(f"{NEW},{OLD}"))
    assert await rotated.decode(written_before) == [_payload("before")]
    written_after = await rotated.encode([_payload("after")])
    assert written_after[0].metadata["encryption-key-id"] == b"new"


async def test_a_payload_of_an_unknown_key_is_a_clear_error() -> None:
    written = await EncryptionCodec(parse_keys(OLD)).encode([_payload("x")])
    with pytest.raises(EncryptionKeyError, match=r"key id 'old'.*not among.*new"):
        await EncryptionCodec(parse_keys(NEW)).decode(written)


async def test_a_payload_under_a_different_key_of_the_same_id_is_a_clear_error() -> None:
    written = await EncryptionCodec(parse_keys(generate_key_entry("k"))).encode([_payload("x")])
    with pytest.raises(EncryptionKeyError, match="does not decrypt"):
        await EncryptionCodec(parse_keys(generate_key_entry("k"))).decode(written)


async def test_unencrypted_payloads_pass_through_unchanged() -> None:
    """Histories recorded before encryption was turned on (tests/histories) keep replaying."""
    plain = [_payload("recorded in clear"), Payload(metadata={"encoding": b"binary/null"})]
    assert await EncryptionCodec(parse_keys(NEW)).decode(plain) == plain


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("", "entry 1 is not of the form id:base64key"),
        ("nokey", "entry 1 is not of the form id:base64key"),
        (f"{NEW},:abc", "entry 2 is not of the form"),
        ("k:not base64!", "entry 1 \\(key id 'k'\\): the key is not valid base64"),
        (f"k:{base64.b64encode(b'short').decode()}", "the key is 5 bytes, not 32"),
        (f"{NEW},{NEW}", "key id 'new' appears twice"),
    ],
)
def test_malformed_keys_are_a_clear_error_that_shows_no_key(value: str, complaint: str) -> None:
    with pytest.raises(EncryptionKeyError, match=complaint) as raised:
        parse_keys(value)
    assert "TRACKFLOW_ENCRYPTION_KEYS" in str(raised.value)
    assert NEW.split(":")[1] not in str(raised.value)


def test_without_keys_the_converter_is_the_plain_pydantic_one() -> None:
    assert data_converter(None) is pydantic_data_converter
    assert isinstance(data_converter(NEW).payload_codec, EncryptionCodec)


async def test_history_on_the_server_holds_no_personal_data_in_clear(
    temporal_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    keys = f"{NEW},{OLD}"
    encrypted = Client(
        temporal_env.client.service_client,
        namespace=temporal_env.client.namespace,
        data_converter=data_converter(keys),
    )
    plain = Client(
        temporal_env.client.service_client,
        namespace=temporal_env.client.namespace,
        data_converter=pydantic_data_converter,
    )
    personal = ["Grace Hopper", "grace.hopper@example.org", "+15025550199", "17 Cobol Lane"]
    name, email, phone, street = personal
    shipment = make_shipment(
        tracking_number=random_tracking_number("ups"),
        order_value="212.50",  # above the SMS threshold: the phone is used too
        customer=Customer(
            name=name,
            email=email,
            phone=phone,
            sms_consent=True,
            address=Address(address1=street, province_code="KY", country_code="US"),
        ),
    )
    number = shipment.tracking_number
    # The worker encodes with its client's converter, as `trackflow worker` does via connect().
    async with running_worker(encrypted, task_queue, tmp_path):
        with temporal_env.with_time_skipping_disabled():
            handle = (
                await register_shipment(encrypted, shipment, ANY_TIME_POLICY, task_queue=task_queue)
            ).handle
        await signal_event(
            encrypted, make_event(CarrierStatus.IN_TRANSIT, at(1), tracking_number=number)
        )
        records = await eventually(
            lambda: outbox(tmp_path, number), lambda r: len(sent(r)) >= 2, what="on its way"
        )
        assert sent(records) == [("in_transit", "email"), ("in_transit", "sms")]

        view = await shipment_view(encrypted, number)
        assert [n.trigger for n in view.notifications] == ["in_transit", "in_transit"]

        history = await plain.get_workflow_handle(handle.id).fetch_history()
        address = temporal_env.client.service_client.config.target_host
        show = [temporal_cli(), "workflow", "show", "--workflow-id", handle.id]
        show += ["--output", "json", "--address", address]
        shown = subprocess.run(show, capture_output=True, text=True, timeout=60, check=True).stdout
        description = await plain.get_workflow_handle(handle.id).describe()

    # The registration rides in the start: its input is the encrypted payload.
    [started] = history.events[0].workflow_execution_started_event_attributes.input.payloads
    assert started.metadata["encryption-key-id"] == b"new"
    # Through the codec the same history does carry the customer: the checks below mean it.
    [start] = await encrypted.data_converter.decode([started], [ShipmentWorkflowInput])
    customer = start.shipment.customer
    assert customer.address is not None
    assert [customer.name, customer.email, customer.phone, customer.address.address1] == personal
    assert [item.update.shipment.customer for item in start.inbox if item.update] == [customer]

    serialized = b"".join(e.SerializeToString() for e in history.events)
    for secret in personal:
        assert secret.encode() not in serialized, secret
        assert secret not in shown, secret

    # Search attributes stay in clear for the Web UI: none of them is personal.
    attributes = {key.name: description.typed_search_attributes.get(key) for key in ALL_KEYS}
    assert attributes["TrackflowTrackingNumber"] == number
    assert attributes["TrackflowOrderId"] == shipment.order_id
    assert not [v for v in attributes.values() if any(s in str(v) for s in personal)]


def test_keys_generate_prints_an_entry_that_parses() -> None:
    done = trackflow_cli("keys", "generate", "--id", "2026-12", env=clean_env())
    assert done.returncode == 0, done.stderr
    [key] = parse_keys(done.stdout.strip())
    assert key.key_id == "2026-12" and len(key.key) == 32
    default = trackflow_cli("keys", "generate", env=clean_env())
    assert default.stdout.startswith("key-")
    bad = trackflow_cli("keys", "generate", "--id", "a:b", env=clean_env())
    assert (bad.returncode, bad.stdout) == (2, "")


def test_a_malformed_key_setting_stops_any_command_with_a_clear_message() -> None:
    too_short = base64.b64encode(b"0123456789").decode()
    env = clean_env() | {"TRACKFLOW_ENCRYPTION_KEYS": f"{NEW},old:{too_short}"}
    done = trackflow_cli("worker", env=env)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "trackflow: TRACKFLOW_ENCRYPTION_KEYS: entry 2 (key id 'old'): the key is 10 bytes, not 32"
    )


@activity.defn(name="CheckRecipientProbe")
async def check_recipient(email: str) -> None:
    raise ApplicationError(f"recipient {email} bounced", non_retryable=True)


@workflow.defn(name="FailureEncodingProbe", sandboxed=False)
class FailureEncodingProbe:
    @workflow.run
    async def run(self, email: str) -> None:
        await workflow.execute_activity(
            check_recipient,
            email,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


async def test_failure_messages_are_encrypted_and_decode_through_the_codec(
    temporal_env: WorkflowEnvironment, task_queue: str
) -> None:
    """An exception can quote customer data: with keys, its message and stack trace travel
    as encrypted attributes; clients and the codec server decode them."""
    keys = f"{NEW},{OLD}"
    encrypted = Client(
        temporal_env.client.service_client,
        namespace=temporal_env.client.namespace,
        data_converter=data_converter(keys),
    )
    email = "grace.hopper@example.org"
    async with Worker(
        encrypted,
        task_queue=task_queue,
        workflows=[FailureEncodingProbe],
        activities=[check_recipient],
    ):
        handle = await encrypted.start_workflow(
            FailureEncodingProbe.run, email, id=f"failure-{task_queue}", task_queue=task_queue
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    history = await temporal_env.client.get_workflow_handle(handle.id).fetch_history()

    # The client decodes: the cause says what happened, email included.
    cause = failed.value.cause
    assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
    assert cause.cause.message == f"recipient {email} bounced"

    # The history says only "Encoded failure"; the attributes are encrypted.
    assert email.encode() not in b"".join(e.SerializeToString() for e in history.events)
    [activity_failed] = [
        e.activity_task_failed_event_attributes.failure
        for e in history.events
        if e.HasField("activity_task_failed_event_attributes")
    ]
    assert activity_failed.message == "Encoded failure"
    assert activity_failed.stack_trace == ""
    sealed = activity_failed.encoded_attributes
    assert sealed.metadata["encoding"] == b"binary/encrypted"
    assert sealed.metadata["encryption-key-id"] == b"new"

    # The codec server decodes them, as the Web UI asks it to.
    app = create_codec_app(EncryptionCodec(parse_keys(keys)), origins=ui_origins(), port=8081)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8081") as http:
        answer = await http.post(
            "/decode",
            json=codec_request([sealed]),
            headers={"Content-Type": "application/json", "X-Namespace": "default"},
        )
    assert answer.status_code == 200, answer.text
    [decoded] = [json_format.ParseDict(p, Payload()) for p in answer.json()["payloads"]]
    attributes = json.loads(decoded.data)
    assert attributes["message"] == f"recipient {email} bounced"
    assert "check_recipient" in attributes["stack_trace"]


def test_without_keys_failures_stay_in_clear() -> None:
    """No keys, no codec to decode them with: failure messages are left as they are."""
    assert not isinstance(
        data_converter(None).failure_converter, DefaultFailureConverterWithEncodedAttributes
    )
    assert isinstance(
        data_converter(NEW).failure_converter, DefaultFailureConverterWithEncodedAttributes
    )
