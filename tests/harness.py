"""Shared helpers for tests that run workflows on the real dev server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from temporalio.client import Client

from starters.embedded import free_port as free_port  # shared with `trackflow up`
from storage import Ledger, LedgerRecord, open_ledger
from trackflow.settings import Settings
from workers.worker import running_workers

T = TypeVar("T")
DEADLINE_S = 30.0


@asynccontextmanager
async def running_worker(
    client: Client, task_queue: str, data_dir: Path, **settings: Any
) -> AsyncIterator[None]:
    config = Settings(task_queue=task_queue, data_dir=data_dir, **settings)
    async with running_workers(client, config):
        yield


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    deadline_s: float = DEADLINE_S,
    what: str = "condition",
) -> T:
    """Poll `probe` until `accept` holds, or fail with the last value seen."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while True:
        value = await probe()
        if accept(value):
            return value
        if loop.time() > end:
            shown = repr(value)
            shown = shown if len(shown) < 600 else shown[:600] + "…"
            raise AssertionError(f"{what} not reached within {deadline_s}s; last value: {shown}")
        await asyncio.sleep(0.1)


async def outbox(
    data_dir: Path, tracking_number: str | None = None, *, ledger_url: str | None = None
) -> list[LedgerRecord]:
    ledger: Ledger = open_ledger(ledger_url or str(data_dir / "ledger.sqlite3"))
    try:
        return await ledger.list(tracking_number=tracking_number)
    finally:
        await ledger.close()


def sent(records: list[LedgerRecord]) -> list[tuple[str, str]]:
    """(trigger, channel) of customer messages; alerts and helpdesk tags are left out."""
    return [(r.trigger, r.channel) for r in records if r.kind == "message"]


def zone_at_local_hour(hour: int, now: datetime | None = None) -> str:
    """A fixed-offset IANA zone whose local time right now is `hour`:MM, so tests about send
    windows (quiet hours) do not depend on when they run."""
    utc = (now or datetime.now(UTC)).astimezone(UTC)
    offset = (hour - utc.hour) % 24
    if offset > 14:
        offset -= 24
    # POSIX-style names: Etc/GMT+5 is five hours *behind* UTC.
    return "Etc/UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"


def up_ports() -> dict[str, int]:
    return {"api": free_port(), "temporal": free_port(), "ui": free_port()}


def up_command(data_dir: Path, ports: dict[str, int]) -> list[str]:
    """`trackflow up` on the given ports, with state in `data_dir`."""
    return [
        sys.executable, "-m", "starters.cli", "up",
        "--data-dir", str(data_dir),
        "--port", str(ports["api"]),
        "--temporal-port", str(ports["temporal"]),
        "--ui-port", str(ports["ui"]),
    ]  # fmt: skip


def clean_env() -> dict[str, str]:
    """The test process's environment without any TRACKFLOW_* setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TRACKFLOW_")}


def trackflow_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starters.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def wait_until_healthy(
    port: int, data_dir: Path, process: subprocess.Popen[str], deadline_s: float = 60.0
) -> str:
    """Wait for `trackflow up`'s API to answer /healthz; return the API token."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "trackflow up exited early"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return (data_dir / "api_token").read_text().strip()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"trackflow up did not become healthy within {deadline_s}s")


def poll_json(
    http: httpx.Client, path: str, accept: Callable[[Any], bool], deadline_s: float = 30.0
) -> dict[str, Any]:
    """GET `path` until `accept` holds for its JSON body; return the last body seen."""
    deadline = time.monotonic() + deadline_s
    while True:
        body: dict[str, Any] = http.get(path).json()
        if accept(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


async def drop_ledger_tables(dsn: str, table: str) -> None:
    """Drop a PostgreSQL test ledger: its table and every side table (`<table>_*`)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        side = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename LIKE $1",
            table.replace("_", "\\_") + "\\_%",
        )
        for name in [table, *(row["tablename"] for row in side)]:
            await conn.execute(f'DROP TABLE IF EXISTS "{name}"')
    finally:
        await conn.close()
