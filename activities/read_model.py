"""The read model's writes: the shipment row the workflow hands over (trackflow.projection),
stored with its tracking-page token (trackflow.page_token)."""

from __future__ import annotations

from temporalio import activity

from storage import Ledger
from trackflow.page_token import page_token
from trackflow.shipment_state import ShipmentProjection


class ReadModel:
    def __init__(self, ledger: Ledger, page_key: bytes | None = None) -> None:
        self._ledger = ledger
        self.page_key = page_key  # the rows' tracking-page tokens (and messages' links)

    def token(self, projection: ShipmentProjection) -> str | None:
        if self.page_key is None:
            return None
        return page_token(self.page_key, projection.shipment_key)

    async def save_first(self, projection: ShipmentProjection) -> None:
        """The row the API foresaw at registration (`trackflow.outlook`), only where the
        workflow has written none yet."""
        await self._ledger.save_projection(projection, self.token(projection), only_if_absent=True)

    async def save(self, projection: ShipmentProjection) -> None:
        """Store the row unless a newer version is there (a late retry of an older write)."""
        await self._ledger.save_projection(projection, self.token(projection))

    @activity.defn(name="project_shipment")
    async def project_shipment(self, projection: ShipmentProjection) -> None:
        await self.save(projection)
