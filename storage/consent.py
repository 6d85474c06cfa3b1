"""Feedback and consent: the provider events already applied (deduplicated by their own id),
and per merchant the addresses not to contact again, why, since when (`at`) and the time of
the newest event that asked for it (`event_at`), which a lift must be newer than."""

from __future__ import annotations

import builtins
import re
from datetime import datetime

from sqlalchemy import bindparam, delete, func, select, update

from storage.engine import Database
from storage.messages import utc_now
from storage.models import Suppression
from storage.tables import Tables

# The strongest reason first, when an address is suppressed for several.
_REASON_RANK = ("bounced", "spam_report", "sms_stop", "unsubscribed")


def normalize_address(channel: str, address: str) -> str:
    """One spelling per address: emails compare case-insensitively, numbers without blanks."""
    address = address.strip()
    return address.lower() if channel == "email" else re.sub(r"[\s\-().]", "", address)


class Consent:
    """The one owner of the feedback-seen and suppression tables."""

    def __init__(self, db: Database, tables: Tables) -> None:
        self.db = db
        self.seen = tables.feedback_seen
        self.suppressions_table = t = tables.suppressions
        # Asked before every customer message: built once, run with its parameters.
        self._reasons = select(t.c.reason).where(
            t.c.merchant == bindparam("b_merchant"),
            t.c.channel == bindparam("b_channel"),
            t.c.address == bindparam("b_address"),
        )

    async def feedback_seen(self, dedupe_id: str) -> bool:
        t = self.seen
        return bool(await self.db.rows(select(t.c.dedupe_id).where(t.c.dedupe_id == dedupe_id)))

    async def remember_feedback(self, dedupe_id: str) -> bool:
        """Note a feedback event as applied; False when it was noted before."""
        self.db.writing()
        t = self.seen
        inserted = await self.db.rows(
            self.db.insert(t)
            .values(dedupe_id=dedupe_id, seen_at=utc_now())
            .on_conflict_do_nothing(index_elements=[t.c.dedupe_id])
            .returning(t.c.dedupe_id)
        )
        return bool(inserted)

    async def suppress(
        self, merchant: str, channel: str, address: str, reason: str, at: datetime | None = None
    ) -> bool:
        self.db.writing()
        t = self.suppressions_table
        key = {
            "merchant": merchant,
            "channel": channel,
            "address": normalize_address(channel, address),
            "reason": reason,
        }
        event_at = at or utc_now()
        inserted = await self.db.rows(
            self.db.insert(t)
            .values(**key, at=event_at, event_at=event_at)
            .on_conflict_do_nothing(
                index_elements=[t.c.merchant, t.c.channel, t.c.address, t.c.reason]
            )
            .returning(t.c.reason)
        )
        if inserted:
            return True
        await self.db.rows(
            update(t)
            .where(*(t.c[name] == value for name, value in key.items()))
            # Rows from before `event_at` count from `at`, when they were recorded.
            .where(func.coalesce(t.c.event_at, t.c.at) < event_at)
            .values(event_at=event_at)
        )
        return False

    async def unsuppress(
        self,
        merchant: str,
        channel: str,
        address: str,
        reason: str | None = None,
        at: datetime | None = None,
    ) -> bool:
        self.db.writing()
        t = self.suppressions_table
        query = delete(t).where(
            t.c.merchant == merchant,
            t.c.channel == channel,
            t.c.address == normalize_address(channel, address),
        )
        if reason is not None:
            query = query.where(t.c.reason == reason)
        if at is not None:
            query = query.where(func.coalesce(t.c.event_at, t.c.at) < at)
        return bool(await self.db.rows(query.returning(t.c.reason)))

    async def suppressions(self, merchant: str) -> builtins.list[Suppression]:
        t = self.suppressions_table
        rows = await self.db.rows(
            select(t.c.channel, t.c.address, t.c.reason, t.c.at)
            .where(t.c.merchant == merchant)
            .order_by(t.c.at, t.c.channel, t.c.address)
        )
        return [
            Suppression(
                channel=row["channel"], address=row["address"], reason=row["reason"], at=row["at"]
            )
            for row in rows
        ]

    async def suppressed(self, merchant: str, channel: str, address: str) -> str | None:
        rows = await self.db.rows(
            self._reasons,
            {
                "b_merchant": merchant,
                "b_channel": channel,
                "b_address": normalize_address(channel, address),
            },
        )
        reasons = [str(row["reason"]) for row in rows]
        if not reasons:
            return None
        # An unknown reason is the strongest: it is some refusal we do not know how to lift.
        return min(
            reasons,
            key=lambda r: (_REASON_RANK.index(r) if r in _REASON_RANK else -1, r),
        )
