"""`IdempotencyKey`: the business key every effect is carried out once under, as a value.

A key is `<shipment key>:<part>[:<part>...]`. The shipment key is
`<tracking number>/<order>[/<fulfillment>]` with any `:` of the order escaped
(`policy.shipment_key`), so the first `:` ends it. A customer message's key is
`<shipment key>:<trigger>:<episode>:<channel>`; without its channel it is the message's
episode, shared by its channels. Keys travel as plain strings (models, histories, the ledger);
code that takes one apart or builds one from another goes through this type, which alone
knows the grammar.
"""

from __future__ import annotations

from dataclasses import dataclass

SEPARATOR = ":"


@dataclass(frozen=True)
class IdempotencyKey:
    shipment: str
    """The shipment key (or another scope, e.g. `provider` for an API's health alert)."""
    parts: tuple[str, ...] = ()

    @classmethod
    def parse(cls, key: str) -> IdempotencyKey:
        shipment, separated, rest = key.partition(SEPARATOR)
        return cls(shipment, tuple(rest.split(SEPARATOR)) if separated else ())

    @classmethod
    def message(cls, shipment: str, trigger: str, episode: str, channel: str) -> IdempotencyKey:
        return cls(shipment, (trigger, episode, channel))

    def __str__(self) -> str:
        return SEPARATOR.join((self.shipment, *self.parts))

    @property
    def tracking_number(self) -> str:
        return self.shipment.split("/", 1)[0]

    @property
    def effect(self) -> str:
        """What the key is about within its shipment (`in_transit:1:email`)."""
        return SEPARATOR.join(self.parts)

    @property
    def episode(self) -> IdempotencyKey:
        """A message's key without its channel: the episode its channels share."""
        return IdempotencyKey(self.shipment, self.parts[:-1])

    def child(self, *parts: str) -> IdempotencyKey:
        """A key for an effect that follows from this one (`<message>:uncertain`)."""
        return IdempotencyKey(self.shipment, (*self.parts, *parts))

    def is_under(self, ancestor: IdempotencyKey) -> bool:
        """This key is `ancestor` or follows from it (a message of an episode)."""
        size = len(ancestor.parts)
        return self.shipment == ancestor.shipment and self.parts[:size] == ancestor.parts
