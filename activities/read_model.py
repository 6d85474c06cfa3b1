"""The read model's writes: the shipment row the workflow hands over (trackflow.projection),
stored with its tracking-page token (trackflow.page_token)."""

from __future__ import annotations

from activities.ledger import Ledger
from trackflow import activity_catalogue as catalogue
from trackflow.activity_catalogue import implements
from trackflow.page_token import page_token
from trackflow.shipment_state import ShipmentProjection


class ReadModel(catalogue.ReadModelActivities):
    def __init__(self, ledger: Ledger, page_key: bytes | None = None) -> None:
        self._ledger = ledger
        self.page_key = page_key  # the rows' tracking-page tokens (and messages' links)

    def token(self, projection: ShipmentProjection) -> str | None:
        if self.page_key is None:
            return None
        return page_token(self.page_key, projection.shipment_key)

    async def save_first(self, projection: ShipmentProjection) -> None:
        """The registration's row (`trackflow.projection.registered`), only where no row is:
        it never replaces one the workflow wrote, and the workflow's first write replaces it."""
        await self._ledger.save_projection(projection, self.token(projection), only_if_absent=True)

    async def save(self, projection: ShipmentProjection) -> None:
        """Store the row unless a newer version is there (a late retry of an older write)."""
        await self._ledger.save_projection(projection, self.token(projection))

    @implements(catalogue.ReadModelActivities.project_shipment)
    async def project_shipment(self, projection: ShipmentProjection) -> None:
        await self.save(projection)
