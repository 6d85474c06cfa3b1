"""Shipments in flight on their timers: `make bench-in-flight` (python -m bench.in_flight).

Starts its own `temporal server start-dev` (as bench/e2e.py: SQLite file in a temp dir,
trackflow's search attributes registered), one trackflow worker and one trackflow API
(TRACKFLOW_MAX_CACHED_WORKFLOWS and every other setting at its default; a policy that sends
at any hour), then, `--concurrency` requests in flight, registers `--shipments` shipments
(`POST /v1/shipments`), each followed by one `in_transit` event (`POST /v1/events`; the
event's email + SMS go out). It waits until every shipment's read-model row (the ledger's
shipments table) shows `in_transit`: each workflow then sits on its stale/lost timers (days
away), which is what a live deployment mostly holds. Then it measures:

- worker RSS and peak RSS (VmHWM), API RSS, server RSS, all with every shipment in flight;
- server db bytes per shipment (growth of the dev server's SQLite files since before the
  first registration) and app data dir bytes per shipment (the ledger: message rows and
  read model);
- `GET /v1/shipments/{n}` latency p50/p99 over `--gets` GETs of random shipments in flight,
  `--concurrency` in flight (the read model, no Temporal call);
- registration throughput (each shipment's registration and its event, as driven) and how
  long from the first registration until every shipment was in flight.

Prints a summary, writes bench/results/in-flight-<timestamp>.json and (not with --quick or
--no-markdown) replaces or appends the section `## In flight: N shipments on their timers` at
the end of bench/RESULTS.md, leaving the rest of that file as it was. A measurement, not a
test: nothing fails on a slow machine; if not every shipment got in flight before
`--deadline`, it reports how many did.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.e2e import (
    API_TOKEN,
    IN_FLIGHT_HEADING,
    LEDGER,
    RESULTS_MD,
    Load,
    TrackflowBodies,
    _bytes_under,
    _cpu_s,
    _fmt,
    _machine_busy_s,
    _pct,
    _proc_status,
    _process,
    _wait_http,
    _wait_pollers,
    cpu_spent,
    dev_server,
    free_port,
    in_flight_span,
    machine,
    memory,
    temporal_cli,
    timed_post,
    trackflow_processes,
    write_json,
)
from trackflow.carriers.samples import random_tracking_number

STATUS = "in_transit"
READ_MODEL = "notification_ledger_shipments"  # the ledger's read-model table (one row/shipment)


async def _register(base: str, load: Load, until: float) -> tuple[float, list[str]]:
    """Each shipment registered, then its `in_transit` event posted once the registration was
    answered; `load.concurrency` shipments at a time; no new shipment after `until`
    (monotonic). Returns the seconds it took and the shipments registered."""
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    limits = httpx.Limits(max_connections=load.concurrency * 2)
    bodies = TrackflowBodies()
    queue: asyncio.Queue[str] = asyncio.Queue()
    registered: list[str] = []
    for number in load.numbers:
        queue.put_nowait(number)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=120, limits=limits
    ) as http:

        async def post(route: str, body: dict[str, Any]) -> bool:
            return await timed_post(http, load, route, body)

        async def shipper() -> None:
            while not queue.empty() and time.monotonic() < until:
                number = queue.get_nowait()
                if await post("/v1/shipments", bodies.shipment(number)):
                    registered.append(number)
                    await post("/v1/events", bodies.event(number, STATUS, 0))

        started = time.perf_counter()
        await asyncio.gather(*(shipper() for _ in range(load.concurrency)))
        return time.perf_counter() - started, registered


def _read_model(data_dir: Path, query: str) -> list[tuple[Any, ...]]:
    """Rows of `query` on the ledger (its read-model table: READ_MODEL), [] before it exists."""
    db = data_dir / LEDGER
    if not db.exists():
        return []
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return list(connection.execute(query))
    except sqlite3.OperationalError:
        return []
    finally:
        connection.close()


def _by_status(data_dir: Path) -> dict[str, int]:
    query = f"SELECT status, COUNT(DISTINCT tracking_number) FROM {READ_MODEL} GROUP BY status"
    return {str(status): int(n) for status, n in _read_model(data_dir, query)}


def _in_flight_numbers(data_dir: Path) -> list[str]:
    query = f"SELECT DISTINCT tracking_number FROM {READ_MODEL} WHERE status = '{STATUS}'"
    return [str(number) for (number,) in _read_model(data_dir, query)]


async def _wait_in_flight(data_dir: Path, shipments: int, until: float) -> dict[str, int]:
    """Polls the read model until `shipments` rows show `in_transit` or `until` (monotonic)."""
    said = time.monotonic()
    while True:
        rows = _by_status(data_dir)
        if rows.get(STATUS, 0) >= shipments or time.monotonic() > until:
            return rows
        if time.monotonic() - said >= 15:
            said = time.monotonic()
            print(f"  read model by status: {rows} (of {shipments})", flush=True)
        await asyncio.sleep(1.0)


async def _gets(base: str, numbers: Sequence[str], count: int, concurrency: int) -> dict[str, Any]:
    """`count` GETs of random shipments, `concurrency` in flight: latency p50/p99 (ms)."""
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    limits = httpx.Limits(max_connections=concurrency * 2)
    picks = [random.choice(numbers) for _ in range(count)]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=limits) as http:

        async def getter() -> None:
            while picks:
                number = picks.pop()
                started = time.perf_counter()
                try:
                    answer = await http.get(f"/v1/shipments/{number}")
                except httpx.HTTPError as error:
                    kind = f"GET {type(error).__name__}"
                    errors[kind] = errors.get(kind, 0) + 1
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
                if answer.status_code != 200:
                    kind = f"GET {answer.status_code}"
                    errors[kind] = errors.get(kind, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(getter() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "n": len(latencies),
        "p50": _pct(latencies, 0.5),
        "p99": _pct(latencies, 0.99),
        "max": max(latencies, default=None),
        "per_s": len(latencies) / elapsed if elapsed else None,
        "errors": errors,
    }


async def probe(args: argparse.Namespace) -> dict[str, Any]:
    from trackflow.settings import Settings

    started_at = datetime.now(UTC)
    clock = time.monotonic()
    shipments: int = args.shipments
    with tempfile.TemporaryDirectory(prefix="bench-in-flight-") as tmp:
        work = Path(tmp)
        log = work / "processes.log"
        async with dev_server(work, log) as stack:
            tag = f"in-flight-{uuid.uuid4().hex[:6]}"
            data_dir = work / tag
            data_dir.mkdir()
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            env, worker_args, api_args = trackflow_processes(stack, f"bench-{tag}", data_dir, port)
            cached = Settings.from_env(env).max_cached_workflows
            with (
                _process(worker_args, env, log) as worker,
                _process(api_args, env, log) as api,
            ):
                await _wait_pollers(stack.client, f"bench-{tag}")
                await _wait_http(f"{base}/healthz")
                db_before = _bytes_under(stack.server_db.parent)
                server_cpu_before = _cpu_s(stack.server_pid)
                worker_cpu_before, api_cpu_before = _cpu_s(worker.pid), _cpu_s(api.pid)
                busy_before = _machine_busy_s()
                load_before = os.getloadavg()
                driver_before = time.process_time()
                load = Load(shipments=shipments, concurrency=args.concurrency)
                load.numbers = [random_tracking_number("ups") for _ in range(shipments)]
                print(f"registering {shipments} shipments (+ one {STATUS} event each)…", flush=True)
                first = time.monotonic()
                until = clock + args.deadline
                driven_s, registered = await _register(base, load, until)
                print(
                    f"  {len(registered)} registered in {driven_s:.1f} s; "
                    f"errors {dict(load.errors) or 'none'}",
                    flush=True,
                )
                rows = await _wait_in_flight(data_dir, len(registered), until)
                in_flight = rows.get(STATUS, 0)
                in_flight_s = time.monotonic() - first
                print(f"  {in_flight}/{shipments} in flight after {in_flight_s:.1f} s", flush=True)
                cpu = cpu_spent(
                    {
                        "worker_cpu_s": _cpu_s(worker.pid) - worker_cpu_before,
                        "api_cpu_s": _cpu_s(api.pid) - api_cpu_before,
                        "server_cpu_s": _cpu_s(stack.server_pid) - server_cpu_before,
                        "driver_cpu_s": time.process_time() - driver_before,
                    },
                    busy_before,
                )
                rss = memory(worker.pid, api.pid, stack.server_pid)
                disk = {
                    "server_db_bytes_per_shipment": (
                        _bytes_under(stack.server_db.parent) - db_before
                    )
                    / max(1, len(registered)),
                    "app_data_bytes_per_shipment": _bytes_under(data_dir) / max(1, len(registered)),
                }
                print(f"GET /v1/shipments/{{n}} x {args.gets}…", flush=True)
                # Only shipments the read model has: the others would be asked of their
                # workflows (a query through the backlogged worker), not what is measured here.
                targets = _in_flight_numbers(data_dir) or registered
                gets = await _gets(base, targets, args.gets, args.concurrency)
                rss["api_rss_after_gets_mb"] = _proc_status(api.pid, "VmRSS") / 1e6
                rss["api_peak_rss_mb"] = _proc_status(api.pid, "VmHWM") / 1e6
                rss["worker_rss_after_gets_mb"] = _proc_status(worker.pid, "VmRSS") / 1e6
        if args.keep_log:
            Path(args.keep_log).write_bytes(log.read_bytes())
    routes = {
        route: {"n": len(v), "p50": _pct(v, 0.5), "p99": _pct(v, 0.99)}
        for route, v in load.route_ms.items()
    }
    return {
        "started_at": started_at.isoformat(timespec="seconds"),
        "machine": machine(temporal_cli()),
        "args": vars(args),
        "shipments": shipments,
        "max_cached_workflows": cached,
        "registration_s": driven_s,
        "registered": len(registered),
        "registrations_per_s": len(registered) / driven_s,
        "route_ms": routes,
        "errors": dict(load.errors),
        "in_flight": in_flight,
        "read_model_by_status": rows,
        "all_in_flight_s": in_flight_s if in_flight >= shipments else None,
        "waited_s": in_flight_s,
        "load_before": list(load_before),
        **cpu,
        **rss,
        **disk,
        "get_ms": gets,
        "elapsed_s": time.monotonic() - clock,
    }


def _ms(value: float | None) -> str:
    return "n/a" if value is None else _fmt(value)


def section(report: dict[str, Any]) -> str:
    """The markdown section (its heading starts with IN_FLIGHT_HEADING; no `## ` inside)."""
    m = report["machine"]
    n = report["shipments"]
    gets = report["get_ms"]
    register = report["route_ms"].get("/v1/shipments", {})
    event = report["route_ms"].get("/v1/events", {})
    reached = (
        f"all {n} in flight {report['all_in_flight_s']:.0f} s after the first registration"
        if report["all_in_flight_s"] is not None
        else f"only {report['in_flight']} of {n} in flight after {report['waited_s']:.0f} s "
        f"(the --deadline; read model by status: {report['read_model_by_status']})"
    )
    rows = [
        ("shipments registered / in flight / asked for",
         f"{report['registered']:,} / {report['in_flight']:,} / {n:,}"),
        ("registrations/s (each with its event)", _fmt(report["registrations_per_s"])),
        ("p50 / p99 register (ms)", f"{_ms(register.get('p50'))} / {_ms(register.get('p99'))}"),
        ("p50 / p99 event POST (ms)", f"{_ms(event.get('p50'))} / {_ms(event.get('p99'))}"),
        ("until all in flight (s)", _ms(report["all_in_flight_s"])),
        ("worker RSS / peak (MB)", f"{_fmt(report['worker_rss_mb'])} / "
         f"{_fmt(report['worker_peak_rss_mb'])}"),
        ("API RSS (MB), after the GETs", f"{_fmt(report['api_rss_mb'])}, "
         f"{_fmt(report['api_rss_after_gets_mb'])}"),
        ("server RSS (MB)", _fmt(report["server_rss_mb"])),
        ("CPU s until measured: worker / API / server",
         f"{_fmt(report['worker_cpu_s'])} / {_fmt(report['api_cpu_s'])} / "
         f"{_fmt(report['server_cpu_s'])}"),
        ("worker CPU ms / shipment in flight",
         _fmt(1000 * report["worker_cpu_s"] / max(1, report["in_flight"]))),
        ("CPU s of other processes (not ours) / machine busy",
         f"{_fmt(report['other_processes_cpu_s'])} / {_fmt(report['machine_busy_s'])}"),
        ("load avg 1m before", _fmt(report["load_before"][0])),
        ("server db bytes / shipment", _fmt(report["server_db_bytes_per_shipment"])),
        ("app data bytes / shipment", _fmt(report["app_data_bytes_per_shipment"])),
        (f"p50 / p99 GET /v1/shipments/{{n}} (ms), {gets['n']:,} GETs",
         f"{_ms(gets['p50'])} / {_ms(gets['p99'])}"),
        ("GETs/s", _ms(gets["per_s"])),
    ]  # fmt: skip
    table = ["|  | trackflow |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)]
    errors = {k: v for k, v in (report["errors"] | gets["errors"]).items() if v}
    return f"""{IN_FLIGHT_HEADING}{n:,} shipments on their timers

Produced by `make bench-in-flight` (`python -m bench.in_flight`, see its docstring for the
method) on {report["started_at"]}; raw numbers in `{report["json"]}`.

- Machine: {m["nproc"]} CPUs, {m["ram_gb"]} GB RAM, `{m["temporal_cli"]}`, a fresh dev server.
- One trackflow worker (TRACKFLOW_MAX_CACHED_WORKFLOWS {report["max_cached_workflows"]}, the
  default) and one API; each shipment registered, then given one `in_transit` event (email +
  SMS), {report["args"]["concurrency"]} in flight, so that each workflow waits on its
  stale/lost timers.
- Reached: {reached}.
- RSS, CPU and disk are measured then (CPU: from the first registration). Per shipment = per
  shipment registered. Server db bytes: the dev
  server's SQLite growth from the first registration; app data: the ledger (message rows and
  read model). GETs: random shipments the read model has.
- Errors: {errors or "none"}.

{chr(10).join(table)}
"""


def write_section(text: str) -> None:
    """Replaces the in-flight section of RESULTS.md (or appends it at the end)."""
    current = RESULTS_MD.read_text() if RESULTS_MD.exists() else ""
    span = in_flight_span(current)
    if span is not None:
        current = current[: span[0]] + current[span[1] :]
    current = current.rstrip()
    RESULTS_MD.write_text((current + "\n\n" if current else "") + text)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--shipments", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--gets", type=int, default=2_000, help="GET /v1/shipments/{n} to time")
    parser.add_argument(
        "--deadline",
        type=float,
        default=480,
        help="seconds from the start after which the probe registers no more shipments and "
        "stops waiting for them to be in flight (then measures what it has)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 500 shipments; writes the JSON, not RESULTS.md",
    )
    parser.add_argument("--no-markdown", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--keep-log", help="copy the processes' output to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.shipments = min(args.shipments, 500)
    report = asyncio.run(probe(args))
    out = write_json(report, "in-flight")
    text = section(report)
    print()
    print(text)
    print(f"written: {out}")
    if not (args.quick or args.no_markdown):
        write_section(text)
        print(f"written: {RESULTS_MD}")
    print(f"elapsed: {report['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
