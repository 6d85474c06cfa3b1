"""The ledger's database down (issue 18, item 7): every route that reads it answers 503 with
`Retry-After` (the shopper's page a small "try again shortly" page), `/healthz` says which
dependency is down, and the service recovers by itself when the database is back.

PostgreSQL is "stopped" by a TCP proxy in front of the test server that the test takes down
(its listener and every open connection) and brings back on the same port; the shared server
itself is never stopped."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from starters.api import create_app
from tests.api_support import TOKEN, api_settings, tracking_number
from tests.factories import ANY_TIME_POLICY
from tests.harness import free_port
from tests.tcp_proxy import TcpProxy
from tests.test_worker_crash import POSTGRES
from trackflow.settings import Settings
from workers.runtime import connect

PAGE_TOKEN = "A" * 22  # the shape of a page token: the page looks it up in the ledger


@asynccontextmanager
async def _service(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process, its lifespan included (which closes the ledger's pool)."""
    app = create_app(settings, lambda: connect(settings), ANY_TIME_POLICY)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://trackflow", headers=headers
        ) as http,
    ):
        yield http


@pytest.fixture
async def postgres_schema() -> AsyncIterator[str]:
    """A schema of its own on the test server, dropped afterwards."""
    schema = f"outage_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        yield schema
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


def _through(port: int, schema: str) -> str:
    """POSTGRES's DSN, reached through 127.0.0.1:`port`, tables in `schema`."""
    parts = urlsplit(POSTGRES)
    user = f"{parts.username}@" if parts.username else ""
    query = f"{parts.query}&" if parts.query else ""
    return f"postgresql://{user}127.0.0.1:{port}{parts.path}?{query}search_path={schema}"


async def _assert_ledger_down(http: httpx.AsyncClient) -> None:
    number = tracking_number()
    for path in (
        f"/v1/shipments/{number}",
        "/v1/metrics/summary",
        "/v1/metrics/report.csv",
    ):
        response = await http.get(path)
        assert response.status_code == 503, (path, response.status_code, response.text)
        assert response.headers["retry-after"].isdigit(), path
        assert "ledger" in response.json()["detail"], path

    report = await http.get("/v1/metrics/report", headers={"Accept": "text/html"})
    assert report.status_code == 503
    assert report.headers["retry-after"].isdigit()
    assert report.headers["content-type"].startswith("text/html")

    page = await http.get(f"/t/{PAGE_TOKEN}")
    assert page.status_code == 503
    assert page.headers["retry-after"].isdigit()
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert "try again" in page.text.lower()
    assert "traceback" not in page.text.lower() and "postgres" not in page.text.lower()

    health = await http.get("/healthz")
    assert health.status_code == 503
    assert health.json()["ledger"] == "unavailable"
    assert health.json()["temporal"] == "ok"


async def test_a_postgresql_ledger_that_stops_and_comes_back(
    temporal_address: str, task_queue: str, tmp_path: Path, postgres_schema: str
) -> None:
    target = urlsplit(POSTGRES)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432, free_port())
    await proxy.start()
    ledger_url = _through(proxy.port, postgres_schema)
    settings = api_settings(temporal_address, task_queue, tmp_path, ledger_url=ledger_url)
    try:
        async with _service(settings) as http:
            # Up: the pool is open (and the tables made) before the database goes away.
            assert (await http.get(f"/v1/shipments/{tracking_number()}")).status_code == 404
            assert (await http.get(f"/t/{PAGE_TOKEN}")).status_code == 404
            up = await http.get("/healthz")
            assert (up.status_code, up.json()) == (
                200,
                {"status": "ok", "temporal": "ok", "ledger": "ok"},
            )

            await proxy.stop()
            await _assert_ledger_down(http)

            await proxy.start()  # the database is back: no restart of the service needed
            assert (await http.get(f"/v1/shipments/{tracking_number()}")).status_code == 404
            assert (await http.get("/v1/metrics/summary")).status_code == 200
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await proxy.stop()


async def test_a_postgresql_ledger_never_reached(
    temporal_address: str, task_queue: str, tmp_path: Path
) -> None:
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    settings = api_settings(temporal_address, task_queue, tmp_path, ledger_url=closed)
    async with _service(settings) as http:
        await _assert_ledger_down(http)


async def test_a_sqlite_ledger_that_cannot_be_opened(
    temporal_address: str, task_queue: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings = api_settings(
        temporal_address, task_queue, tmp_path, ledger_url=str(blocker / "ledger.sqlite3")
    )
    async with _service(settings) as http:
        await _assert_ledger_down(http)
