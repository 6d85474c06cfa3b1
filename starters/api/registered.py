"""What the registration routes record once `register_shipment` has answered."""

from __future__ import annotations

import logging

from activities.read_model import ReadModel
from activities.tickets import index_shipment
from starters.shipments import Registered
from storage import Ledger
from trackflow.models import Shipment
from trackflow.page_token import page_key
from trackflow.settings import Settings

log = logging.getLogger(__name__)


async def record_registration(
    ledger: Ledger, settings: Settings, shipment: Shipment, registered: Registered
) -> None:
    """Index the customer for inbound tickets and, for a new lifecycle, write its first
    read-model row (GET answers from the ledger at once, before any worker ran it). The row
    is a head start the workflow's first write replaces: failing to write it fails nothing."""
    await index_shipment(ledger, settings, shipment, registered.handle.id)
    if registered.first_row is None:
        return
    try:
        await ReadModel(ledger, page_key(settings)).save_first(registered.first_row)
    except Exception:
        log.warning(
            "first read-model row of %s not written", shipment.tracking_number, exc_info=True
        )
