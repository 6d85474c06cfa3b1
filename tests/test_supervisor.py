"""The data dir stays private: secrets created atomically 0600, the worker tightens its dir."""

from __future__ import annotations

import asyncio
import stat
import threading
from pathlib import Path

from starters.embedded import _local_secret
from tests.harness import eventually
from trackflow.settings import Settings
from workers.worker import run_worker


def _create_concurrently(data_dir: Path, name: str, creators: int) -> list[str]:
    start = threading.Barrier(creators)
    seen: list[str] = []

    def create() -> None:
        start.wait()
        seen.append(_local_secret(data_dir, name))

    threads = [threading.Thread(target=create) for _ in range(creators)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seen


def test_local_secret_is_private_and_one_value_when_created_concurrently(tmp_path: Path) -> None:
    for attempt in range(30):
        data_dir = tmp_path / str(attempt)
        data_dir.mkdir()
        seen = _create_concurrently(data_dir, "api_token", 8)

        assert len(seen) == 8 and len(set(seen)) == 1 and seen[0], seen
        assert [p.name for p in data_dir.iterdir()] == ["api_token"]
        assert stat.S_IMODE((data_dir / "api_token").stat().st_mode) == 0o600


async def test_worker_makes_its_data_dir_private(temporal_address: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    (data_dir / "ledger.sqlite3").write_bytes(b"")
    (data_dir / "ledger.sqlite3").chmod(0o644)
    stop = asyncio.Event()
    settings = Settings(temporal_address=temporal_address, task_queue="data-dir", data_dir=data_dir)
    worker = asyncio.create_task(run_worker(settings, stop))
    try:
        await eventually(
            lambda: asyncio.to_thread(lambda: stat.S_IMODE(data_dir.stat().st_mode)),
            lambda mode: mode == 0o700,
            what="data dir 0700",
        )
        assert stat.S_IMODE((data_dir / "ledger.sqlite3").stat().st_mode) == 0o600
    finally:
        stop.set()
        await worker
