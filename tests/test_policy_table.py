"""Policies travel by digest: the worker holds the table, and keeps earlier policies."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from storage import SqliteLedger
from trackflow import policy_table
from trackflow.policy_table import PolicyRef, UnknownPolicy
from trackflow.tracking_policy import TrackingPolicy
from workers.worker import hold_policies


def _unique_policy() -> TrackingPolicy:
    """A policy no other test has put into this process's table."""
    return TrackingPolicy(sms_value_threshold=Decimal(uuid.uuid4().int % 10_000_000) / 100)


def test_a_digest_names_the_content() -> None:
    policy = _unique_policy()
    same = TrackingPolicy.model_validate_json(policy.model_dump_json())
    assert policy_table.digest_of(policy) == policy_table.digest_of(same)
    other = policy.model_copy(update={"max_exception_messages": 9})
    assert policy_table.digest_of(other) != policy_table.digest_of(policy)


def test_an_unknown_digest_is_a_clear_error_never_another_policy() -> None:
    digest = policy_table.digest_of(_unique_policy())
    with pytest.raises(UnknownPolicy, match=f"no tracking policy {digest}.*TRACKFLOW_POLICY_FILE"):
        policy_table.resolve(PolicyRef(digest=digest))


def test_a_shipment_time_scale_is_applied_to_the_named_policy() -> None:
    policy = _unique_policy()
    ref = policy_table.ref(policy, time_scale=100)
    resolved = policy_table.resolve(ref)
    assert resolved == policy.at_time_scale(100)
    assert resolved.standard.lost_after == policy.standard.lost_after / 100
    assert policy_table.resolve(policy_table.ref(policy)) == policy


async def test_a_worker_holds_the_policies_earlier_workers_of_its_ledger_were_given(
    tmp_path: Path,
) -> None:
    """A merchant edits the policy file and restarts: shipments started under the old file
    keep their rules, because the earlier worker stored it in the ledger."""
    ledger = SqliteLedger(tmp_path / "ledger.sqlite")
    try:
        before_the_edit = _unique_policy()
        digest = policy_table.digest_of(before_the_edit)
        await ledger.save_policy(digest, before_the_edit.model_dump_json())
        with pytest.raises(UnknownPolicy):
            policy_table.lookup(digest)

        after_the_edit = _unique_policy()
        await hold_policies(ledger, after_the_edit)

        assert policy_table.lookup(digest) == before_the_edit
        assert policy_table.lookup(policy_table.digest_of(after_the_edit)) == after_the_edit
        # A stored policy is held under the digest it was stored with, even when today's
        # TrackingPolicy would name the same body otherwise (a field added since).
        await ledger.save_policy("older-digest", before_the_edit.model_dump_json())
        await hold_policies(ledger, after_the_edit)
        assert policy_table.lookup("older-digest") == before_the_edit
        assert set(await ledger.stored_policies()) - {"older-digest"} == {
            digest,
            policy_table.digest_of(after_the_edit),
        }
    finally:
        await ledger.close()
