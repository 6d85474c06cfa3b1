"""The baseline: weeks before trackflow as the merchant imported them (WISMO tickets per
shipments), which the report compares against."""

from __future__ import annotations

import builtins
from datetime import date

from sqlalchemy import select

from storage.engine import Database
from storage.models import BaselineWeek
from storage.tables import Tables


class Baseline:
    """The one owner of the baseline table."""

    def __init__(self, db: Database, tables: Tables) -> None:
        self.db = db
        self.table = tables.baseline

    async def save(self, weeks: builtins.list[BaselineWeek]) -> None:
        """Store the imported weeks (a week imported again is replaced)."""
        self.db.writing()
        t = self.table
        for week in weeks:
            insert = self.db.insert(t).values(
                week_start=week.week_start.isoformat(),
                shipments=week.shipments,
                wismo_tickets=week.wismo_tickets,
            )
            await self.db.rows(
                insert.on_conflict_do_update(
                    index_elements=[t.c.week_start],
                    set_={
                        "shipments": insert.excluded.shipments,
                        "wismo_tickets": insert.excluded.wismo_tickets,
                    },
                )
            )

    async def weeks(self) -> builtins.list[BaselineWeek]:
        t = self.table
        rows = await self.db.rows(select(t).order_by(t.c.week_start))
        return [
            BaselineWeek(
                week_start=date.fromisoformat(row["week_start"]),
                shipments=row["shipments"],
                wismo_tickets=row["wismo_tickets"],
            )
            for row in rows
        ]
