"""Slow or stalled clients (issue 18, item 10) against the API served as `trackflow api`
serves it (starters.api.serving), on a loopback port, over raw sockets: a request whose
headers or body do not arrive in time is closed, and beyond the concurrency limit a new
request is a 503. Deadlines are tiny here (settings); every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from starters.api import create_app
from starters.api.serving import server_config
from tests.api_support import TOKEN
from tests.factories import ANY_TIME_POLICY
from tests.harness import eventually, free_port
from trackflow.settings import Settings

DEADLINE_S = 0.5
CLOSED_WITHIN_S = 10.0  # generous: a stalled connection is closed long before this
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _no_temporal() -> Any:
    raise AssertionError("no route used here asks Temporal")


@contextlib.asynccontextmanager
async def _serving(tmp_path: Path, **settings: Any) -> AsyncIterator[int]:
    config = Settings(data_dir=tmp_path, api_token=TOKEN, **settings)
    app = create_app(config, _no_temporal, ANY_TIME_POLICY)
    port = free_port()
    server = uvicorn.Server(server_config(app, config, host="127.0.0.1", port=port))
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await eventually(started, bool, what="listening", deadline_s=10)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def _connections(port: int, count: int) -> AsyncIterator[list[Connection]]:
    opened = [await asyncio.open_connection("127.0.0.1", port) for _ in range(count)]
    try:
        yield opened
    finally:
        for _, writer in opened:
            writer.transport.abort()


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent before it closed the connection; fails when it is still
    open after CLOSED_WITHIN_S."""
    received = b""
    try:
        async with asyncio.timeout(CLOSED_WITHIN_S):
            while chunk := await reader.read(65536):
                received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"still open after {CLOSED_WITHIN_S}s; received {received[:200]!r}")
    return received


async def test_requests_whose_headers_never_end_are_closed(tmp_path: Path) -> None:
    async with (
        _serving(tmp_path, api_header_timeout_s=DEADLINE_S) as port,
        _connections(port, 20) as stalled,
        _connections(port, 5) as silent,
    ):
        for _, writer in stalled:
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nX-Half: ")
        for reader, _ in stalled + silent:
            assert await _until_closed(reader) == b""
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/")).status_code == 200  # the others are served


async def test_headers_dripped_a_byte_at_a_time_are_closed(tmp_path: Path) -> None:
    request = b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-Drip: " + b"a" * 400 + b"\r\n\r\n"
    async with (
        _serving(tmp_path, api_header_timeout_s=DEADLINE_S) as port,
        _connections(port, 1) as [(reader, writer)],
    ):
        for byte in request[:-4]:  # never complete: bounded by the request's length
            writer.write(bytes([byte]))
            try:
                assert await asyncio.wait_for(reader.read(1), 0.02) == b""
            except TimeoutError:
                continue  # still open: the next byte
            except ConnectionResetError:
                pass
            break
        else:
            pytest.fail("a request dripping its headers was never closed")


async def test_a_partial_request_after_a_served_one_is_closed(tmp_path: Path) -> None:
    """uvicorn's keep-alive timer stops at the next request's first byte: the header
    deadline covers that request too."""
    async with (
        _serving(tmp_path, api_header_timeout_s=DEADLINE_S) as port,
        _connections(port, 1) as [(reader, writer)],
    ):
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        async with asyncio.timeout(CLOSED_WITHIN_S):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        assert head.startswith(b"HTTP/1.1 200 ")
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nX-Half: ")
        assert await _until_closed(reader) == b""


async def test_a_body_that_never_ends_is_a_408_and_closed(tmp_path: Path) -> None:
    head = (
        "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    async with (
        _serving(tmp_path, api_body_timeout_s=DEADLINE_S) as port,
        _connections(port, 10) as stalled,
    ):
        for _, writer in stalled:
            writer.write(head + b'{"tracking_number": ')
        for reader, _ in stalled:
            assert (await _until_closed(reader)).startswith(b"HTTP/1.1 408 ")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            # a body that does arrive in time is read and answered (here: no token, 401)
            assert (await http.post("/v1/events", json={})).status_code == 401


async def test_beyond_the_concurrency_limit_a_new_request_is_503(tmp_path: Path) -> None:
    limit = 4
    async with _serving(tmp_path, api_max_concurrency=limit) as port:
        async with (
            _connections(port, limit) as held,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
        ):
            for _, writer in held:
                writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nX-Half: ")
            refused = await http.get("/")
            assert refused.status_code == 503
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def status() -> int:
                return (await http.get("/")).status_code

            # the held connections are gone: served again
            await eventually(status, lambda code: code == 200, what="served", deadline_s=10)
