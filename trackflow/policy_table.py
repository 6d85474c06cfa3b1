"""Tracking policies by digest. Workflow inputs carry a policy's digest, not a copy of it: the
worker holds the table (its configured policy, and every policy it has stored before, see
`activities/policy_store.py`), and a workflow looks its policy up by digest.

A digest names the policy's exact content, so a workflow keeps deciding by the rules it was
started with even after the merchant edits the policy file. A digest no worker holds fails the
workflow task (retried) with a message that says so; it never falls back to other rules.
"""

from __future__ import annotations

import hashlib

from pydantic import Field

from trackflow.models import Model
from trackflow.tracking_policy import TrackingPolicy

_TABLE: dict[str, TrackingPolicy] = {}


class UnknownPolicy(LookupError):
    pass


class PolicyRef(Model):
    """A policy as workflow inputs carry it: the digest of the configured policy, and the
    shipment's own time scale when it asked for one (`TrackingPolicy.at_time_scale`)."""

    digest: str
    time_scale: float | None = Field(default=None, gt=0)


def digest_of(policy: TrackingPolicy) -> str:
    return hashlib.sha256(policy.model_dump_json().encode()).hexdigest()[:20]


def register(policy: TrackingPolicy) -> str:
    """Hold `policy` in this process's table; returns its digest."""
    digest = digest_of(policy)
    _TABLE.setdefault(digest, policy)
    return digest


def hold(digest: str, policy: TrackingPolicy) -> None:
    """Hold a stored policy under the digest it was stored with: recomputing it could differ
    once `TrackingPolicy` gains a field, and running shipments name the stored one."""
    _TABLE.setdefault(digest, policy)


def ref(policy: TrackingPolicy, time_scale: float | None = None) -> PolicyRef:
    """Hold `policy` in this process's table and name it, with a shipment's own time scale."""
    return PolicyRef(digest=register(policy), time_scale=time_scale)


def resolve(ref: PolicyRef) -> TrackingPolicy:
    policy = lookup(ref.digest)
    return policy if ref.time_scale is None else policy.at_time_scale(ref.time_scale)


def lookup(digest: str) -> TrackingPolicy:
    try:
        return _TABLE[digest]
    except KeyError:
        raise UnknownPolicy(
            f"no tracking policy {digest} in this worker: start the worker with the policy file "
            "the API uses (TRACKFLOW_POLICY_FILE), or with the ledger database where it is stored"
        ) from None


def known() -> dict[str, TrackingPolicy]:
    return dict(_TABLE)
