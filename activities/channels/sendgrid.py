"""Email through SendGrid's v3 mail send, with the official SDK (``sendgrid``).

The idempotency key travels as ``custom_args={"trackflow_key": key}``: every Event Webhook
event about the message carries it back. SendGrid has no idempotency key and no way to look
a message up without the Email Activity add-on, so :meth:`SendGridTransport.find` knows a
message only from the events already received for its key, and otherwise cannot tell.
"""

from __future__ import annotations

import asyncio
import email.utils
import http.client
import json
import socket
import time
import urllib.error
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    CustomArg,
    From,
    Header,
    HtmlContent,
    Mail,
    PlainTextContent,
    Subject,
    To,
)

from activities.channels.base import (
    CannotTell,
    OutgoingMessage,
    PermanentFailure,
    ProviderReceipt,
    ProviderUnavailable,
)
from trackflow.email_address import canonical_email

KEY_ARG = "trackflow_key"
INVALID_ADDRESS = "invalid_address"
INVALID_REQUEST = "invalid_request"

# key -> the SendGrid message id an Event Webhook event for that key carried, if any.
FeedbackLookup = Callable[[str], Awaitable[str | None]]


def retry_after(headers: Mapping[str, str] | Any, now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date), else SendGrid's
    ``X-RateLimit-Reset`` (epoch seconds)."""
    if headers is None:
        return None
    current = time.time() if now is None else now
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - current)
            except (TypeError, ValueError):
                pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - current)
        except ValueError:
            return None
    return None


def _error_detail(error: HTTPError) -> str:
    try:
        errors = json.loads(error.body or b"{}").get("errors") or []
        first = errors[0]
        field = f" ({first['field']})" if first.get("field") else ""
        return f"{first.get('message', '')}{field}"
    except (ValueError, AttributeError, IndexError, KeyError, TypeError):
        return f"HTTP {error.status_code}"


def _never_connected(error: BaseException) -> bool:
    """The request surely never left: the connection was refused or the host not found."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    return isinstance(reason, ConnectionRefusedError | socket.gaierror)


def sendgrid_message_id(sg_message_id: str) -> str:
    """An Event Webhook's ``sg_message_id`` starts with the mail send's X-Message-Id."""
    return sg_message_id.split(".", 1)[0]


class SendGridTransport:
    name = "sendgrid"

    def __init__(
        self,
        *,
        api_key: str,
        sender: str,
        base_url: str = "https://api.sendgrid.com",
        timeout_s: float = 10.0,
        feedback: FeedbackLookup | None = None,
    ) -> None:
        self._api_key = api_key
        self._sender_name, self._sender_email = email.utils.parseaddr(sender)
        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._feedback = feedback

    def mail(self, message: OutgoingMessage) -> Mail:
        """The SDK's Mail: text and HTML parts, the key as a custom arg, the message's headers."""
        mail = Mail(
            from_email=From(self._sender_email, self._sender_name or None),
            to_emails=To(message.to),
            subject=Subject(message.subject or message.tracking_number),
            plain_text_content=PlainTextContent(message.body),
            html_content=HtmlContent(message.html) if message.html else None,
        )
        mail.custom_arg = CustomArg(KEY_ARG, message.idempotency_key)
        for name, value in message.headers.items():
            mail.header = Header(name, value)
        return mail

    def _request_body(self, message: OutgoingMessage) -> dict[str, Any]:
        """The mail send's JSON, or a permanent refusal: nothing has reached SendGrid yet,
        so an error here can never leave the message uncertain. The recipient must be one
        canonical address (``trackflow.email_address``), which the helper reads unchanged;
        anything else (a shipment registered before that check) is refused, never handed to a helper
        that would pick another address out of it."""
        try:
            to = canonical_email(message.to)
        except ValueError as error:
            raise PermanentFailure(INVALID_ADDRESS, str(error)) from error
        try:
            body: dict[str, Any] = self.mail(message.model_copy(update={"to": to})).get()
        except Exception as error:  # the SDK's helpers raise KeyError, ValueError...
            raise PermanentFailure(
                INVALID_REQUEST, f"the SDK refused the message: {error!r}"
            ) from error
        return body

    def _post(self, body: dict[str, Any]) -> Any:
        # A client per call: the SDK's client keeps request headers as mutable state.
        client = SendGridAPIClient(api_key=self._api_key, host=self._base_url)
        return client.client.mail.send.post(request_body=body, timeout=self._timeout_s)

    async def send(self, message: OutgoingMessage) -> ProviderReceipt:
        body = self._request_body(message)
        try:
            response = await asyncio.to_thread(self._post, body)
        except HTTPError as error:
            status = int(error.status_code)
            if status == 429 or status >= 500:
                raise ProviderUnavailable(
                    f"SendGrid {status}: {_error_detail(error)}",
                    retry_after(error.headers),
                    may_have_sent=False,  # it answered: it did not take the message
                ) from error
            raise PermanentFailure(str(status), _error_detail(error)) from error
        except (
            urllib.error.URLError,
            http.client.HTTPException,
            TimeoutError,
            ConnectionError,
        ) as error:
            raise ProviderUnavailable(
                f"SendGrid unreachable: {error!r}", may_have_sent=not _never_connected(error)
            ) from error
        message_id = response.headers.get("X-Message-Id")
        return ProviderReceipt(
            transport=self.name,
            provider_message_id=str(message_id) if message_id else None,
            accepted_at=datetime.now(UTC),
        )

    async def find(self, message: OutgoingMessage, since: datetime) -> ProviderReceipt | None:
        """SendGrid's record of this message is only the events its webhook already sent."""
        if self._feedback is not None:
            found = await self._feedback(message.idempotency_key)
            if found:
                return ProviderReceipt(
                    transport=self.name,
                    provider_message_id=sendgrid_message_id(found),
                    accepted_at=datetime.now(UTC),
                )
        raise CannotTell(
            "SendGrid offers no lookup by custom_args (Email Activity is an add-on) and no "
            f"Event Webhook event names {message.idempotency_key!r}"
        )
