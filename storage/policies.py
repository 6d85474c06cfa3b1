"""Stored tracking policies: each policy a worker was given, by digest, so that workers
started later (after the file changed) still hold the rules of shipments started before."""

from __future__ import annotations

from sqlalchemy import select

from storage.engine import Database
from storage.tables import Tables


class Policies:
    """The one owner of the policies table."""

    def __init__(self, db: Database, tables: Tables) -> None:
        self.db = db
        self.table = tables.policies

    async def save(self, digest: str, body: str) -> None:
        self.db.writing()
        t = self.table
        await self.db.rows(
            self.db.insert(t)
            .values(digest=digest, body=body)
            .on_conflict_do_nothing(index_elements=[t.c.digest])
        )

    async def stored(self) -> dict[str, str]:
        t = self.table
        rows = await self.db.rows(select(t.c.digest, t.c.body))
        return {row["digest"]: row["body"] for row in rows}
