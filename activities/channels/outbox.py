"""The local outbox: the default transport, where the ledger row is the delivery itself.

`trackflow outbox` lists what it holds. Nothing leaves the machine, so nothing can be
delivered without the ledger knowing: a message is in the outbox exactly when its row says
'sent', and a crashed attempt's message was never delivered (`find` answers None).
"""

from __future__ import annotations

from datetime import UTC, datetime

from activities.channels.base import OutgoingMessage, ProviderReceipt

OUTBOX = "outbox"


class OutboxTransport:
    name = OUTBOX

    async def send(self, message: OutgoingMessage) -> ProviderReceipt:
        return ProviderReceipt(
            transport=self.name, provider_message_id=None, accepted_at=datetime.now(UTC)
        )

    async def find(self, message: OutgoingMessage, since: datetime) -> ProviderReceipt | None:
        return None


SHADOW = "shadow"


class ShadowTransport(OutboxTransport):
    """Shadow mode: everything before the provider call runs (rendering, timing, consent) and
    the ledger records what would have gone out; no provider is called. A merchant runs it
    beside its current tool on real orders before going live (`trackflow outbox --mode
    shadow`)."""

    name = SHADOW
