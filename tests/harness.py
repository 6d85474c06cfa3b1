"""Shared helpers for tests that run workflows on the real dev server."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from temporalio.client import Client

from activities.ledger import Ledger, LedgerRecord, open_ledger
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


def free_port() -> int:
    """A port nothing listens on right now, for a local server started by a test."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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
