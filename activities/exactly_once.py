"""The exactly-once step every ledger-recorded activity shares.

An activity (send a message, raise an alert, tag a helpdesk customer) looks up its
idempotency key first: when the ledger already holds it, an earlier attempt (a retry, a
replayed workflow, a restarted worker) got through, and the transport is not called again.
Otherwise the transport carries out the effect and records it with `Ledger.record_once`,
which keeps a single row even when two attempts race past the lookup.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.ledger import Ledger, LedgerRecord


@dataclass(frozen=True)
class Once:
    """The ledger record for the key and whether it was there before this attempt."""

    record: LedgerRecord
    already_recorded: bool


async def perform_once(
    ledger: Ledger,
    idempotency_key: str,
    kind: str,
    perform: Callable[[], Awaitable[LedgerRecord]],
) -> Once:
    """Return the stored record for `idempotency_key`, or call `perform` (which must record
    under that key) when there is none. A record of another kind under the same key is a
    key collision between effects: a bug that no retry can fix, so it fails the activity."""
    existing = await ledger.get(idempotency_key)
    if existing is not None:
        _check(existing, idempotency_key, kind)
        activity.logger.info("already recorded, not doing it again: %s", idempotency_key)
        return Once(existing, already_recorded=True)
    record = await perform()
    _check(record, idempotency_key, kind)
    return Once(record, already_recorded=False)


def _check(record: LedgerRecord, idempotency_key: str, kind: str) -> None:
    if record.idempotency_key != idempotency_key or record.kind != kind:
        raise ApplicationError(
            f"ledger key {idempotency_key!r} expected a {kind!r} record, "
            f"found {record.kind!r} under {record.idempotency_key!r}",
            type="LedgerKeyCollision",
            non_retryable=True,
        )
