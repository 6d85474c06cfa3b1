"""The seam between the send activity and a customer channel's provider.

A transport carries one rendered message to one provider and answers with the provider's
receipt. Providers have no idempotency keys, so the send activity claims the message's key in
the ledger first and, after a crash, asks the transport to ``find`` what the provider already
has before sending again (see activities/exactly_once.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from trackflow.models import Channel


class OutgoingMessage(BaseModel):
    """One rendered message for one channel, with the business key it is sent under."""

    model_config = ConfigDict(frozen=True)

    idempotency_key: str  # <number>/<order>:<trigger>:<episode>:<channel>
    channel: Channel
    to: str  # email address or E.164 phone
    subject: str | None = None
    body: str  # text part / SMS text
    html: str | None = None
    tracking_number: str
    order_id: str
    headers: dict[str, str] = Field(default_factory=dict)  # e.g. List-Unsubscribe
    # What the message is about, for transports that hand the facts on rather than the text
    # (Klaviyo: an event whose properties its flows render): trigger, exception, carrier,
    # tracking_url, estimated_delivery, order_name, first_name; absent keys are unknown.
    facts: dict[str, str] = Field(default_factory=dict)


class ProviderReceipt(BaseModel):
    """The provider took the message: its own id for it (None for the outbox) and when."""

    model_config = ConfigDict(frozen=True)

    transport: str  # "outbox" | "shadow" | "sendgrid" | "twilio" | "klaviyo"
    provider_message_id: str | None
    accepted_at: datetime


class PermanentFailure(Exception):
    """The provider refused this message for good (e.g. Twilio 21610, an HTTP 400)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class ProviderUnavailable(Exception):
    """Try again later (429, 5xx, timeout, connection refused); `retry_after` in seconds.

    `may_have_sent`: False when the provider answered and so surely did not take the message
    (a 429 or a 5xx response, a refused connection): the next attempt sends at once. True
    (the default) when the request may have reached it (a timeout, a connection dropped after
    the request went out): the next attempt reconciles with ``Transport.find`` first.
    """

    def __init__(
        self, detail: str, retry_after: float | None = None, *, may_have_sent: bool = True
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after
        self.may_have_sent = may_have_sent


class CannotTell(Exception):
    """The provider offers no way to know whether it got a message."""


class Transport(Protocol):
    name: str

    async def send(self, message: OutgoingMessage) -> ProviderReceipt: ...

    async def find(self, message: OutgoingMessage, since: datetime) -> ProviderReceipt | None:
        """The provider's record of `message` since `since` (the claim's time), None when the
        provider surely never got it; raises CannotTell when the provider cannot say."""
        ...
