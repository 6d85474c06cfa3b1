"""The read model and page visits: one row per shipment lifecycle (trackflow.projection),
written by the workflow, whose scalar columns are what lookups and analytics filter on; and
the views of tracking pages (`message_key` when a message's link led there)."""

from __future__ import annotations

import builtins
from datetime import UTC, datetime

from sqlalchemy import case, delete, func, select

from storage.engine import Database
from storage.models import PageVisit
from storage.tables import Tables
from trackflow.limits import MAX_VISITS_PER_PAGE
from trackflow.shipment_state import ShipmentProjection

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FAR = datetime(9999, 1, 1, tzinfo=UTC)
_REPLACED_BY_NEWER = (
    "workflow_id",
    "page_token",
    "version",
    "updated_at",
    "status",
    "carrier",
    "open_problem",
    "registered_at",
    "delivered_at",
    "projection",
)


def visit_hour(at: datetime) -> int:
    """The UTC hour `at` falls in, counted from the epoch: a page visit's dedupe bucket."""
    return int(at.timestamp()) // 3600


class ReadModel:
    """The one owner of the shipments (read model) and page-visit tables."""

    def __init__(self, db: Database, tables: Tables) -> None:
        self.db = db
        self.shipments = t = tables.shipments
        self.visits = tables.page_visits
        insert = db.insert(t)
        self._insert_if_absent = insert.on_conflict_do_nothing(
            index_elements=[t.c.shipment_key]
        ).returning(t.c.version)
        self._upsert_newer = insert.on_conflict_do_update(
            index_elements=[t.c.shipment_key],
            set_={name: insert.excluded[name] for name in _REPLACED_BY_NEWER},
            where=t.c.version <= insert.excluded.version,
        ).returning(t.c.version)

    async def save_projection(
        self,
        projection: ShipmentProjection,
        page_token: str | None = None,
        *,
        only_if_absent: bool = False,
    ) -> bool:
        """Store the shipment's row unless a newer version is there (the same version again
        replaces it: the send activity's retry knows more), or with `only_if_absent` unless
        any row is; whether it was stored."""
        self.db.writing()
        document = projection.document
        row = {
            "shipment_key": projection.shipment_key,
            "workflow_id": document.workflow_id,
            "tracking_number": document.tracking_number,
            "page_token": page_token,
            "version": projection.version,
            "updated_at": projection.updated_at,
            "status": document.status.value,
            "carrier": document.carrier,
            "open_problem": projection.open_problem,
            "registered_at": projection.registered_at,
            "delivered_at": projection.delivered_at,
            "projection": projection.model_dump_json(),
        }
        statement = self._insert_if_absent if only_if_absent else self._upsert_newer
        return bool(await self.db.rows(statement, row))

    async def projection(self, tracking_number: str) -> ShipmentProjection | None:
        """The latest lifecycle's row for a tracking number."""
        t = self.shipments
        rows = await self.db.rows(
            select(t.c.projection)
            .where(t.c.tracking_number == tracking_number)
            .order_by(t.c.updated_at.desc())
            .limit(1)
        )
        return ShipmentProjection.model_validate_json(rows[0]["projection"]) if rows else None

    async def projection_by_page(self, page_token: str) -> ShipmentProjection | None:
        t = self.shipments
        rows = await self.db.rows(select(t.c.projection).where(t.c.page_token == page_token))
        return ShipmentProjection.model_validate_json(rows[0]["projection"]) if rows else None

    async def projections(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> builtins.list[ShipmentProjection]:
        """Rows of shipments registered in [since, until), oldest first."""
        t = self.shipments
        registered = func.coalesce(t.c.registered_at, t.c.updated_at)
        rows = await self.db.rows(
            select(t.c.projection)
            .where(registered >= (since or _EPOCH), registered < (until or _FAR))
            .order_by(registered, t.c.shipment_key)
        )
        return [ShipmentProjection.model_validate_json(row["projection"]) for row in rows]

    async def open_problems(self) -> int:
        """Shipments whose row has an open problem (exception, lost)."""
        t = self.shipments
        rows = await self.db.rows(select(func.count().label("n")).where(t.c.open_problem))
        return int(rows[0]["n"]) if rows else 0

    async def record_page_visit(
        self, page_token: str, message_key: str | None, at: datetime
    ) -> bool:
        """Record a view of the page (from message `message_key`'s link, else None) at `at`,
        unless this (token, message key) was recorded in the same UTC hour already, or the
        token has `MAX_VISITS_PER_PAGE` rows and this is not a message's first click;
        whether it was recorded."""
        self.db.writing()
        t = self.visits
        # The cap is checked apart from the insert: racing views may pass it by a few rows.
        kept = await self.db.rows(
            select(
                func.count().label("n"),
                func.count(case((t.c.message_key == (message_key or ""), 1))).label("clicks"),
            ).where(t.c.page_token == page_token)
        )
        first_click = message_key is not None and not kept[0]["clicks"]
        if kept[0]["n"] >= MAX_VISITS_PER_PAGE and not first_click:
            return False
        stored = await self.db.rows(
            self.db.insert(t)
            .values(
                page_token=page_token, message_key=message_key, at=at, visit_hour=visit_hour(at)
            )
            .on_conflict_do_nothing()
            .returning(t.c.page_token)
        )
        return bool(stored)

    async def page_visits(self, since: datetime | None = None) -> builtins.list[PageVisit]:
        t = self.visits
        rows = await self.db.rows(
            select(t).where(t.c.at >= (since or _EPOCH)).order_by(t.c.at, t.c.page_token)
        )
        return [
            PageVisit(page_token=row["page_token"], message_key=row["message_key"], at=row["at"])
            for row in rows
        ]

    async def purge_before(self, cutoff: datetime) -> tuple[int, int]:
        """Delete rows not updated since `cutoff` and visits older than it: (rows, visits)."""
        self.db.writing()
        s, v = self.shipments, self.visits
        shipments = await self.db.rows(
            delete(s).where(s.c.updated_at < cutoff).returning(s.c.shipment_key)
        )
        visits = await self.db.rows(delete(v).where(v.c.at < cutoff).returning(v.c.page_token))
        return len(shipments), len(visits)
