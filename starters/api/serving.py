"""`trackflow api` under uvicorn, protected from slow and stalled clients.

uvicorn bounds the idle time between requests (`timeout_keep_alive`) and, with
`limit_concurrency`, answers 503 to a request that arrives while that many connections or
requests are open; it has no deadline for a request still arriving, so a client that sends
half its headers, or half its body, holds its connection (and its buffers) for ever.
`ReadDeadlines` adds both: a request's headers must be complete within
`TRACKFLOW_API_HEADER_TIMEOUT_S` of its first byte (of the connection, for the first one) and
its body within `TRACKFLOW_API_BODY_TIMEOUT_S` of its headers. A request late with its
headers is closed (there is no request to answer yet), one late with its body gets a 408
first when no answer has started. A body the app has not read yet (uvicorn stops reading
after 64 KiB) does not count against the client.

Behind a reverse proxy, the proxy's own limits come first (docs/operations.md, "Production").
"""

from __future__ import annotations

import asyncio
from typing import ClassVar, Literal

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from trackflow.settings import Settings

Awaiting = Literal["headers", "body"]
_LATE_BODY = b"request body not received in time\n"


class ReadDeadlines(H11Protocol):
    header_timeout_s: ClassVar[float]
    body_timeout_s: ClassVar[float]
    _awaiting: Awaiting | None = None
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect("headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._expect(None)
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        state = self.conn.their_state
        if state is h11.IDLE:
            # Between requests: uvicorn's keep-alive timer, until the next one's first byte.
            if self._awaiting is None and self.conn.trailing_data[0]:
                self._expect("headers")
        elif state is h11.SEND_BODY:
            if self._awaiting != "body":
                self._expect("body")
        else:  # the request is complete, or the connection is over
            self._expect(None)

    def _expect(self, what: Awaiting | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._awaiting = what
        if what is not None:
            seconds = self.header_timeout_s if what == "headers" else self.body_timeout_s
            self._deadline = self.loop.call_later(seconds, self._late)

    def _late(self) -> None:
        awaiting = self._awaiting
        self._deadline = self._awaiting = None
        if self.transport.is_closing():
            return
        if awaiting == "body" and self.flow.read_paused:  # the app is behind, not the client
            self._expect("body")
            return
        cycle = self.cycle
        if awaiting == "body" and cycle is not None and not cycle.response_started:
            # The app's receive() now says the client left, and its answer is dropped.
            cycle.response_started = cycle.disconnected = True
            cycle.message_event.set()
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(_LATE_BODY)).encode()),
                (b"connection", b"close"),
            ]
            for event in (
                h11.Response(status_code=408, headers=headers, reason=b"Request Timeout"),
                h11.Data(data=_LATE_BODY),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def read_deadlines(settings: Settings) -> type[ReadDeadlines]:
    """`ReadDeadlines` with the settings' deadlines (uvicorn makes one per connection)."""
    return type(
        "ReadDeadlines",
        (ReadDeadlines,),
        {
            "header_timeout_s": settings.api_header_timeout_s,
            "body_timeout_s": settings.api_body_timeout_s,
        },
    )


def server_config(app: FastAPI, settings: Settings, *, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        http=read_deadlines(settings),
        ws="none",  # no WebSocket route: an upgrade request is served as plain HTTP
        limit_concurrency=settings.api_max_concurrency,
    )


def serve(app: FastAPI, settings: Settings, *, host: str, port: int) -> None:
    uvicorn.Server(server_config(app, settings, host=host, port=port)).run()
