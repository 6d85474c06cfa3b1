"""IdempotencyKey: one value type knows the grammar of effect keys; nothing splits them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.factories import make_shipment
from trackflow.idempotency import IdempotencyKey
from trackflow.models import Channel, Trigger
from trackflow.policy import idempotency_key, shipment_key

ROOT = Path(__file__).parents[1]


def test_a_message_key_round_trips_and_names_its_parts() -> None:
    shipment = make_shipment(tracking_number="1Z999AA10123456784", order_id="A:1")
    text = idempotency_key(shipment, Trigger.IN_TRANSIT, "1", Channel.EMAIL)
    assert text == "1Z999AA10123456784/A%3A1:in_transit:1:email"
    key = IdempotencyKey.parse(text)
    assert str(key) == text
    assert key.shipment == shipment_key(shipment)
    assert key.tracking_number == "1Z999AA10123456784"
    assert key.effect == "in_transit:1:email"
    assert str(key.episode) == "1Z999AA10123456784/A%3A1:in_transit:1"
    assert str(key.episode.child("sms")) == "1Z999AA10123456784/A%3A1:in_transit:1:sms"
    assert key.is_under(key.episode) and not key.episode.is_under(key)


@pytest.mark.parametrize(
    "text", ["provider:sendgrid:provider_outage:2", "S/1:delayed-list:1:", "S/1"]
)
def test_any_key_round_trips(text: str) -> None:
    assert str(IdempotencyKey.parse(text)) == text


def test_no_module_takes_a_key_apart_by_hand() -> None:
    """`key.split(":")`, `.rsplit(":")` and `.partition(":")` on a key are the type's job."""
    found = []
    for folder in ("trackflow", "activities", "starters/api", "workflows", "workers"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "idempotency.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in {"split", "rsplit", "partition", "rpartition"}
                    and "key" in ast.unparse(node.func.value).lower()
                    and [ast.unparse(a) for a in node.args[:1]] == ["':'"]
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []
