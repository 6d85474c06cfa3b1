"""How one customer message ended up, as a typed value: `SendOutcome`.

The send activity puts it on the workflow's receipt; the workflow's state, the read model and
the views keep it; the policy (SMS fallback), ticket triage and the report read its `status`.
`display` is the one line for people ("sendgrid:failed:400", "suppressed:sms_stop"), derived
from the value and never read back.
"""

from __future__ import annotations

from enum import StrEnum

from trackflow.models import Model

SHADOW_PROVIDER = "shadow"
"""The transport of shadow mode: the message is recorded as it would have gone, never sent."""


class SendStatus(StrEnum):
    SENT = "sent"  # handed to the outbox or a provider
    FAILED = "failed"  # the provider refused it for good (`code` says why)
    SUPPRESSED = "suppressed"  # consent ruled it out (`code`: the suppression's reason)
    UNCERTAIN = "uncertain"  # nobody can tell whether it went: not sent again, ops alerted
    SHADOW = "shadow"  # shadow mode: recorded as it would have gone, not sent


class SendOutcome(Model):
    status: SendStatus
    provider: str
    """The transport that carried it or refused it: outbox, shadow, sendgrid, twilio..."""
    code: str | None = None
    """The provider's error code (failed), or the suppression's reason (suppressed)."""
    detail: str | None = None

    @classmethod
    def of(
        cls, status: str, provider: str, code: str | None = None, detail: str | None = None
    ) -> SendOutcome:
        """From a settled message's status as the ledger spells it (sent, failed, suppressed,
        uncertain): a message sent in shadow mode is `SHADOW`."""
        kind = SendStatus(status)
        if kind is SendStatus.SENT and provider == SHADOW_PROVIDER:
            kind = SendStatus.SHADOW
        return cls(status=kind, provider=provider, code=code, detail=detail)

    @property
    def went_out(self) -> bool:
        """Handed to its channel: not refused, suppressed, uncertain or shadow-only."""
        return self.status is SendStatus.SENT

    @property
    def display(self) -> str:
        """For people: the provider when it went (or shadow), else what became of it."""
        match self.status:
            case SendStatus.FAILED:
                return f"{self.provider}:failed:{self.code}"
            case SendStatus.SUPPRESSED:
                return f"suppressed:{self.code}"
            case SendStatus.UNCERTAIN:
                return f"{self.provider}:uncertain"
            case _:
                return self.provider


def ledger_status(status: str | None, transport: str | None) -> SendStatus | None:
    """A message row's status and transport columns as a `SendStatus` (None while it is still
    claimed or pending). The ledger keeps strings; this is where they become the domain's."""
    if (transport or "").startswith("suppressed:"):
        return SendStatus.SUPPRESSED
    if status not in {s.value for s in SendStatus}:
        return None
    return SendOutcome.of(str(status), transport or "").status
