"""The helpdesks trackflow tags: Gorgias, Zendesk, both, or neither (the ledger only).

`helpdesk_for` picks from the settings: whichever of Gorgias and Zendesk is configured is
active, both when both are (`Helpdesks` tags in each, then writes one ledger row), else
`LedgerHelpdesk`. `annotator_for` gives the inbound webhook a `TicketAnnotator` for the
helpdesk a ticket came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from activities.helpdesk import (
    Helpdesk,
    LedgerHelpdesk,
    TaggingHelpdesk,
    record_tagged,
)
from activities.helpdesks.gorgias import GORGIAS, GorgiasHelpdesk
from activities.helpdesks.zendesk import ZENDESK, ZendeskHelpdesk
from storage import Ledger, LedgerRecord
from trackflow.effects import TagHelpdesk
from trackflow.settings import Settings

__all__ = [
    "GORGIAS",
    "ZENDESK",
    "GorgiasHelpdesk",
    "Helpdesks",
    "TicketAnnotator",
    "ZendeskHelpdesk",
    "annotator_for",
    "gorgias_for",
    "helpdesk_for",
    "zendesk_for",
]


class TicketAnnotator(Protocol):
    """Tags one ticket and adds a private note to it (the inbound webhook's answer to a new
    ticket). Idempotent per note: a note carrying a ``trackflow:<key>`` line is posted once
    per key, any other note once per text. Raises a retryable ``ApplicationError``
    (``HelpdeskUnavailable``, with the helpdesk's Retry-After on 429) when the helpdesk is
    unavailable, a non-retryable one (``HelpdeskRefused``) when it refuses."""

    name: str

    async def annotate_ticket(self, ticket_id: str, tags: list[str], note: str) -> None: ...


class Helpdesks:
    """Tags the customer in every configured helpdesk, then records one ledger row.

    A helpdesk that is unavailable fails the attempt; the retry tags the others again, which
    is harmless (tags are a set union, and each note carries its marker line)."""

    def __init__(self, ledger: Ledger, members: Sequence[TaggingHelpdesk]) -> None:
        if not members:
            raise ValueError("Helpdesks needs at least one helpdesk")
        self._ledger = ledger
        self._members = list(members)
        self.name = "+".join(member.name for member in members)

    async def tag_customer(self, tag: TagHelpdesk) -> LedgerRecord:
        results = [await member.apply(tag) for member in self._members]
        return await record_tagged(self._ledger, tag, results)


def gorgias_for(settings: Settings, ledger: Ledger | None) -> GorgiasHelpdesk | None:
    if not settings.gorgias_configured:
        return None
    assert settings.gorgias_base_url and settings.gorgias_username and settings.gorgias_api_key
    return GorgiasHelpdesk(
        ledger,
        base_url=settings.gorgias_base_url,
        username=settings.gorgias_username,
        api_key=settings.gorgias_api_key,
        timeout_s=settings.provider_timeout_s,
    )


def zendesk_for(settings: Settings, ledger: Ledger | None) -> ZendeskHelpdesk | None:
    if not settings.zendesk_configured:
        return None
    assert settings.zendesk_base_url and settings.zendesk_email and settings.zendesk_api_token
    return ZendeskHelpdesk(
        ledger,
        base_url=settings.zendesk_base_url,
        email=settings.zendesk_email,
        api_token=settings.zendesk_api_token,
        timeout_s=settings.provider_timeout_s,
    )


def helpdesk_for(settings: Settings, ledger: Ledger) -> Helpdesk:
    """Gorgias and/or Zendesk, whichever the settings configure; else the ledger only."""
    members: list[GorgiasHelpdesk | ZendeskHelpdesk] = [
        member
        for member in (gorgias_for(settings, ledger), zendesk_for(settings, ledger))
        if member is not None
    ]
    if not members:
        return LedgerHelpdesk(ledger)
    if len(members) == 1:
        return members[0]
    return Helpdesks(ledger, members)


def annotator_for(settings: Settings, provider: str) -> TicketAnnotator | None:
    """The annotator for `provider` ("gorgias" or "zendesk") when it is configured, else
    None. Annotating writes nothing to the ledger (the caller records what it needs)."""
    if provider == GORGIAS:
        return gorgias_for(settings, None)
    if provider == ZENDESK:
        return zendesk_for(settings, None)
    return None
