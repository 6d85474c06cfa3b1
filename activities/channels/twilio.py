"""SMS through Twilio's Messages API, with the official SDK (``twilio``, async client).

The idempotency key travels in the status callback URL
(``{public_url}/webhooks/twilio/status?key=<key>``). Twilio has no idempotency key either,
but it lists messages: :meth:`TwilioTransport.find` looks for the message the key names
among those sent to the same number since the claim (same sender, same body), after the
status callbacks already received for the key.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from activities.channels.base import (
    OutgoingMessage,
    PermanentFailure,
    ProviderReceipt,
    ProviderUnavailable,
)
from activities.channels.sendgrid import retry_after

# key -> the MessageSid a status callback for that key carried, if any.
FeedbackLookup = Callable[[str], Awaitable[str | None]]
# MessageSid -> the key whose ledger row holds it, if any.
OwnerLookup = Callable[[str], Awaitable[str | None]]
# A clock skew allowance when comparing Twilio's date_created with the claim's time.
SKEW = timedelta(minutes=2)
TOO_MANY_REQUESTS = 20429


class _HttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """The SDK's aiohttp client, raising ProviderUnavailable for 429 and 5xx itself so the
    answer's Retry-After is not lost (TwilioRestException keeps no headers), and applying its
    timeout to every request."""

    async def request(self, *args: Any, **kwargs: Any) -> Response:
        if kwargs.get("timeout") is None:  # the SDK passes None, ignoring the client's own
            kwargs["timeout"] = self.timeout
        auth = kwargs.pop("auth", None)
        if auth is not None:  # as a header: aiohttp deprecates the SDK's BasicAuth
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Authorization": f"Basic {token}"}
        response: Response = await super().request(*args, **kwargs)
        status = response.status_code
        if status == 429 or status >= 500:
            raise ProviderUnavailable(
                f"Twilio {status}: {response.text[:200]}",
                retry_after(response.headers),
                may_have_sent=False,  # it answered: it did not create the message
            )
        return response


class TwilioTransport:
    name = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_: str | None = None,
        messaging_service_sid: str | None = None,
        base_url: str = "https://api.twilio.com",
        public_url: str | None = None,
        timeout_s: float = 10.0,
        feedback: FeedbackLookup | None = None,
        owner_of: OwnerLookup | None = None,
    ) -> None:
        if not from_ and not messaging_service_sid:
            raise ValueError("Twilio needs a sender: a From number or a MessagingServiceSid")
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._from = from_
        self._service = messaging_service_sid
        self._base_url = base_url.rstrip("/")
        self._public_url = public_url.rstrip("/") if public_url else None
        self._timeout_s = timeout_s
        self._feedback = feedback
        self._owner_of = owner_of

    def status_callback(self, key: str) -> str | None:
        if not self._public_url:
            return None
        return f"{self._public_url}/webhooks/twilio/status?key={quote(key, safe='')}"

    async def _call(self, operation: Callable[[Client], Awaitable[Any]]) -> Any:
        http = _HttpClient(timeout=self._timeout_s)
        client = Client(self._account_sid, self._auth_token, http_client=http)
        client.api.base_url = self._base_url  # the SDK's own way to another host (a double)
        try:
            return await operation(client)
        except TwilioRestException as error:
            if error.status == 429 or error.status >= 500:
                raise ProviderUnavailable(
                    f"Twilio {error.status}: {error.msg}", may_have_sent=False
                ) from error
            raise PermanentFailure(str(error.code or error.status), str(error.msg)) from error
        except aiohttp.ClientConnectorError as error:  # refused, host not found: never sent
            raise ProviderUnavailable(
                f"Twilio unreachable: {error!r}", may_have_sent=False
            ) from error
        except (TimeoutError, aiohttp.ClientError, OSError) as error:  # may have reached it
            raise ProviderUnavailable(f"Twilio unreachable: {error!r}") from error
        finally:
            await http.close()

    async def send(self, message: OutgoingMessage) -> ProviderReceipt:
        sender: dict[str, Any] = (
            {"messaging_service_sid": self._service} if self._service else {"from_": self._from}
        )
        callback = self.status_callback(message.idempotency_key)
        if callback:
            sender["status_callback"] = callback
        created = await self._call(
            lambda client: client.messages.create_async(to=message.to, body=message.body, **sender)
        )
        return ProviderReceipt(
            transport=self.name,
            provider_message_id=created.sid,
            accepted_at=datetime.now(UTC),
        )

    async def find(self, message: OutgoingMessage, since: datetime) -> ProviderReceipt | None:
        """The message Twilio created for this key since `since`, or None if it has none: to
        the same number, from the same sender, with the same text, and not a message the
        ledger already holds under another key."""
        if self._feedback is not None:
            sid = await self._feedback(message.idempotency_key)
            if sid:
                return ProviderReceipt(
                    transport=self.name, provider_message_id=sid, accepted_at=datetime.now(UTC)
                )
        cutoff = since - SKEW

        async def lookup(client: Client) -> ProviderReceipt | None:
            # Newest first; no DateSent filter, which would miss a message still queued.
            async for found in await client.messages.stream_async(to=message.to, page_size=50):
                created = found.date_created
                if created is not None and created < cutoff:
                    return None
                if found.body != message.body or found.direction != "outbound-api":
                    continue
                if self._service and found.messaging_service_sid != self._service:
                    continue
                if not self._service and found.from_ != self._from:
                    continue
                if self._owner_of is not None:
                    owner = await self._owner_of(found.sid)
                    if owner is not None and owner != message.idempotency_key:
                        continue  # the same text of another message (another episode)
                return ProviderReceipt(
                    transport=self.name,
                    provider_message_id=found.sid,
                    accepted_at=created or datetime.now(UTC),
                )
            return None

        result: ProviderReceipt | None = await self._call(lookup)
        return result
