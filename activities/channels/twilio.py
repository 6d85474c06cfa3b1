"""SMS through Twilio's Messages API, with the official SDK (``twilio``, async client).

The idempotency key travels in the status callback URL
(``{public_url}/webhooks/twilio/status?key=<key>``). Twilio has no idempotency key either,
but it lists messages: :meth:`TwilioTransport.find` looks for the message the key names
among those sent to the same number since the claim (same sender, same body), after the
status callbacks already received for the key.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
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
from storage import LedgerUnavailable
from storage.turns import PostgresTurns

# key -> the MessageSid a status callback for that key carried, if any.
FeedbackLookup = Callable[[str], Awaitable[str | None]]
# MessageSid -> the key whose ledger row holds it, if any.
OwnerLookup = Callable[[str], Awaitable[str | None]]
# A clock skew allowance when comparing Twilio's date_created with the claim's time.
SKEW = timedelta(minutes=2)


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


class LocalPacing:
    """At most `per_second` message creations per sender in this process (a single worker,
    as on the SQLite ledger): each turn starts 1/per_second after the one before."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second
        self._lock = asyncio.Lock()
        self._next = 0.0

    async def wait_turn(self) -> None:
        async with self._lock:
            loop = asyncio.get_running_loop()
            wait = self._next - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next = loop.time() + self._interval


class PostgresPacing:
    """At most `per_second` message creations per sender across every worker on one
    PostgreSQL ledger: a turn (storage.turns) lasts 1/per_second and is taken before the
    call goes out (never during it), so turns start at least that far apart."""

    def __init__(self, dsn: str, name: str, per_second: float) -> None:
        self._turns = PostgresTurns(dsn, name, 1.0 / per_second)

    async def wait_turn(self) -> None:
        try:
            await self._turns.take()
        except LedgerUnavailable as error:
            raise ProviderUnavailable(
                f"cannot take a Twilio sending turn: {error}", may_have_sent=False
            ) from error


class Pacing(Protocol):
    async def wait_turn(self) -> None: ...


def pacing_for(ledger_url: str, sender: str, per_second: float) -> Pacing:
    """Across workers on a PostgreSQL ledger, else within this process."""
    if ledger_url.startswith(("postgresql://", "postgres://")):
        return PostgresPacing(ledger_url, f"trackflow:twilio:{sender}", per_second)
    return LocalPacing(per_second)


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
        pacing: Pacing | None = None,
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
        self._pacing = pacing

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
        if self._pacing is not None:  # the sender's messages per second, across workers
            await self._pacing.wait_turn()
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
