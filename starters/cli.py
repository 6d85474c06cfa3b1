"""The `trackflow` console script."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trackflow.settings import SUPERVISOR_FD_ENV, Settings

if TYPE_CHECKING:
    from storage import MessageState

# Set by `trackflow up` for its Python children: the read end of a pipe it never writes to.
SHUTDOWN_TIMEOUT_S = 5.0


def main(argv: Sequence[str] | None = None) -> None:
    _stop_with_supervisor()
    args = _parser().parse_args(argv)
    settings = Settings.from_env(os.environ)
    if getattr(args, "data_dir", None):
        settings = settings.model_copy(update={"data_dir": Path(args.data_dir)})
    if settings.encryption_keys:
        from trackflow.encryption import EncryptionKeyError, parse_keys

        try:
            parse_keys(settings.encryption_keys)
        except EncryptionKeyError as error:
            print(f"trackflow: {error}", file=sys.stderr)
            _exit(2)
    try:
        code = args.run(args, settings)
    except BrokenPipeError:  # e.g. `trackflow outbox --json | head`
        code = 0
    _exit(code)


def _stop_with_supervisor() -> None:
    """Stop (as on SIGTERM) once the supervisor's pipe reads EOF: it has exited, SIGKILL
    included. Complements Linux's parent-death signal, and works where there is none."""
    fd = os.environ.pop(SUPERVISOR_FD_ENV, None)
    if fd is None:
        return

    def watch() -> None:
        try:
            while os.read(int(fd), 1):
                pass
        except (OSError, ValueError):  # not a descriptor we were given: nothing to watch
            return
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor-watchdog", daemon=True).start()


def _exit(code: int) -> None:
    """Leave without interpreter teardown: the Temporal client's runtime can crash there
    after success (sdk-python#300)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _simulator_epilog() -> str:
    from starters.simulator.scenarios import SCENARIOS

    scenarios = "\n".join(f"  {name}\n      {s.description}" for name, s in SCENARIOS.items())
    return (
        "scenarios (chosen per tracking number; see POST /simulator/scenarios):\n"
        f"{scenarios}\n\n"
        "endpoints:\n"
        "  POST /v2/trackers                 create a tracker (EasyPost API, Basic auth key)\n"
        "  GET  /v2/trackers/{id}, /v2/trackers   read trackers (EasyPost API)\n"
        "  GET  /simulator/scenarios          the scenarios above, as JSON\n"
        "  POST /simulator/scenarios          {tracking_code, scenario}: script a number\n"
        "  POST /simulator/outage             {seconds}: the tracker API answers 503 that long\n"
        "  GET  /simulator/webhooks           webhook deliveries and their outcomes\n"
        "  POST /simulator/tick               deliver the webhooks that are due now"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trackflow", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="run the embedded stack: Temporal dev server, worker, API")
    up.add_argument(
        "--demo",
        action="store_true",
        help="also play sample orders end to end; Slack, Gorgias, Zendesk and Klaviyo doubles "
        "stand in for the integrations the environment does not configure (with the outbox, "
        "SMS are Klaviyo events), and the demo ends with what they received",
    )
    up.add_argument("--data-dir", help="state directory (default ./.trackflow)")
    up.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    up.add_argument("--temporal-port", type=int, default=7233)
    up.add_argument("--ui-port", type=int, default=8233)
    up.add_argument(
        "--simulator-port", type=int, default=8765, help="the demo's carrier simulator (8765)"
    )
    up.add_argument(
        "--providers",
        choices=("outbox", "simulated"),
        default="outbox",
        help="where email and SMS go: the local outbox (default), or SendGrid and Twilio "
        "doubles on a free local port, through the official SDKs (with Slack, Gorgias, "
        "Zendesk and Klaviyo doubles for the ops integrations the environment does not "
        "configure)",
    )
    up.set_defaults(run=_run_up)

    worker = commands.add_parser(
        "worker", help="run a worker (Temporal at TRACKFLOW_TEMPORAL_ADDRESS)"
    )
    worker.add_argument("--data-dir")
    worker.set_defaults(run=_run_worker)

    api = commands.add_parser("api", help="run the HTTP webhook/API service")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.set_defaults(run=_run_api)

    shipment = commands.add_parser("shipment", help="inspect shipments")
    shipment_commands = shipment.add_subparsers(required=True, metavar="ACTION")
    show = shipment_commands.add_parser("show", help="a shipment's state, from its workflow")
    show.add_argument("tracking_number")
    show.add_argument("--json", action="store_true", help="the API's JSON document")
    show.add_argument(
        "--debug", action="store_true", help="the workflow's full internal view, as JSON"
    )
    show.set_defaults(run=_run_shipment_show)

    carrier = commands.add_parser("carrier", help="carrier intelligence")
    carrier_commands = carrier.add_subparsers(required=True, metavar="ACTION")
    detect = carrier_commands.add_parser("detect", help="which courier issued a tracking number")
    detect.add_argument("number")
    detect.add_argument("--json", action="store_true")
    detect.set_defaults(run=_run_carrier_detect)

    simulate = commands.add_parser("simulate", help="local test doubles")
    simulate_commands = simulate.add_subparsers(required=True, metavar="WHAT")
    carrier_sim = simulate_commands.add_parser(
        "carrier",
        help="an EasyPost-compatible carrier simulator (tracker API + signed webhooks)",
        description="An EasyPost-compatible carrier simulator: the tracker API subset trackflow "
        "polls, real error shapes, a rate limit, outages, and signed tracker.updated webhooks.",
        epilog=_simulator_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    carrier_sim.add_argument("--host", default="127.0.0.1")
    carrier_sim.add_argument("--port", type=int, default=8765)
    carrier_sim.add_argument("--webhook-url", help="e.g. http://127.0.0.1:8000/webhooks/easypost")
    carrier_sim.add_argument("--webhook-secret", help="default: TRACKFLOW_EASYPOST_WEBHOOK_SECRET")
    carrier_sim.add_argument(
        "--time-scale", type=float, default=86400.0, help="policy seconds per real second"
    )
    carrier_sim.set_defaults(run=_run_simulate_carrier)

    providers_sim = simulate_commands.add_parser(
        "providers",
        help="SendGrid, Twilio, Slack, Gorgias, Zendesk and Klaviyo doubles",
        description="Wire-faithful local doubles of SendGrid v3 mail send (+ signed Event "
        "Webhook) and Twilio's Messages API (+ signed status callbacks and inbound messages), "
        "for the official SDKs: point TRACKFLOW_SENDGRID_BASE_URL and TRACKFLOW_TWILIO_BASE_URL "
        "at it. Knobs: POST /_double/script (429, 5xx, stall, accept-then-drop, permanent "
        "codes); scripted opens, clicks, delivery reports and STOP replies under /_double/*. "
        "The ops integrations' doubles answer under /slack (chat.postMessage, incoming "
        "webhooks), /gorgias (REST API), /zendesk (API v2) and /klaviyo (JSON:API), each with "
        "its own /<name>/_double/ listings, script and reset.",
    )
    providers_sim.add_argument("--host", default="127.0.0.1")
    providers_sim.add_argument("--port", type=int, default=8766, help="default 8766")
    providers_sim.add_argument(
        "--sendgrid-event-webhook-url",
        help="where Event Webhook posts go (default: TRACKFLOW_PUBLIC_URL/webhooks/sendgrid)",
    )
    providers_sim.add_argument(
        "--twilio-inbound-url",
        help="where inbound texts go (default: TRACKFLOW_PUBLIC_URL/webhooks/twilio/inbound)",
    )
    providers_sim.add_argument(
        "--signing-key-file",
        help="PEM P-256 key that signs the Event Webhook (created if missing; default: a new "
        "key each run, its public half printed)",
    )
    providers_sim.set_defaults(run=_run_simulate_providers)

    keys = commands.add_parser("keys", help="payload encryption keys")
    keys_commands = keys.add_subparsers(required=True, metavar="ACTION")
    generate = keys_commands.add_parser(
        "generate", help="print a new id:base64key entry for TRACKFLOW_ENCRYPTION_KEYS"
    )
    generate.add_argument("--id", help="the key id (default: key-<today>)")
    generate.set_defaults(run=_run_keys_generate)

    codec = commands.add_parser(
        "codec-server",
        help="decrypt payloads for the Temporal Web UI and CLI (Temporal's codec protocol)",
        description="Temporal's remote codec protocol (POST /decode, /encode) over trackflow's "
        "payload encryption, for the Web UI's --ui-codec-endpoint and the temporal CLI's "
        "--codec-endpoint. Keys as the worker's (TRACKFLOW_ENCRYPTION_KEYS, else the data "
        "dir's encryption_keys); with TRACKFLOW_CODEC_TOKEN set, requests need "
        "'Authorization: Bearer <token>', and only then may it listen beyond loopback.",
    )
    codec.add_argument("--host", default="127.0.0.1")
    codec.add_argument("--port", type=int, default=8081, help="default 8081")
    codec.add_argument(
        "--ui-origin",
        action="append",
        metavar="ORIGIN",
        help="a Web UI origin browsers may call it from (repeatable; default "
        "http://localhost:8233 and http://127.0.0.1:8233)",
    )
    codec.add_argument("--data-dir")
    codec.set_defaults(run=_run_codec_server)

    outbox = commands.add_parser(
        "outbox", help="messages delivered by the local outbox, oldest first"
    )
    outbox.add_argument("--tracking-number")
    outbox.add_argument(
        "--mode",
        choices=("outbox", "shadow", "live", "all"),
        default="all",
        help="only messages of that delivery mode (shadow: what would have gone out)",
    )
    output = outbox.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true")
    output.add_argument("--csv", action="store_true", help="a CSV export (e.g. of shadow mode)")
    outbox.add_argument("--data-dir")
    outbox.set_defaults(run=_run_outbox)

    report = commands.add_parser(
        "report",
        help="the merchant's report: an HTML page with charts and a CSV alongside",
        description="Messages per trigger and channel, event-to-send latency, WISMO tickets "
        "per 100 shipments by week against the baseline, and carriers, for a period (UTC "
        "days, both included), from the ledger database. Writes OUT (self-contained HTML) "
        "and OUT with a .csv suffix.",
    )
    report.add_argument(
        "--from",
        dest="start",
        metavar="YYYY-MM-DD",
        help="first day (default: the Monday 8 weeks before the week of --to)",
    )
    report.add_argument(
        "--to", dest="end", metavar="YYYY-MM-DD", help="last day, included (default: today, UTC)"
    )
    report.add_argument("--out", default="report.html", help="default report.html")
    report.add_argument("--data-dir")
    report.set_defaults(run=_run_report)

    baseline = commands.add_parser("baseline", help="the WISMO baseline from before trackflow")
    baseline_commands = baseline.add_subparsers(required=True, metavar="ACTION")
    baseline_import = baseline_commands.add_parser(
        "import",
        help="import weeks of WISMO tickets and shipments from a CSV",
        description="CSV with a header naming week_start,shipments,wismo_tickets (week_start: "
        "the ISO date of the week's Monday; whole numbers >= 0). A week imported again is "
        "replaced. A bad row is refused with its line number, and nothing is imported.",
    )
    baseline_import.add_argument("csv_file", metavar="tickets.csv")
    baseline_import.add_argument("--data-dir")
    baseline_import.set_defaults(run=_run_baseline_import)
    return parser


def _run_up(args: argparse.Namespace, settings: Settings) -> int:
    from starters.embedded import EmbeddedStack

    stack = EmbeddedStack(
        settings,
        api_port=args.port,
        temporal_port=args.temporal_port,
        ui_port=args.ui_port,
        demo=args.demo,
        simulator_port=args.simulator_port,
        providers=args.providers,
    )
    return stack.run()


def _run_worker(args: argparse.Namespace, settings: Settings) -> int:
    from workers.worker import run_worker

    return _run_until_signal(run_worker(settings))


def _run_api(args: argparse.Namespace, settings: Settings) -> int:
    from starters.api import create_app
    from starters.api.serving import serve
    from workers.runtime import connect

    serve(create_app(settings, lambda: connect(settings)), settings, host=args.host, port=args.port)
    return 0


def _run_shipment_show(args: argparse.Namespace, settings: Settings) -> int:
    from starters.shipments import ShipmentNotFound, shipment_view
    from workers.runtime import connect

    async def show() -> int:
        client = await connect(settings)
        try:
            view = await shipment_view(client, args.tracking_number)
        except ShipmentNotFound as missing:
            print(missing, file=sys.stderr)
            return 1
        deliveries = await _deliveries(settings, view.tracking_number, view.order_id)
        if args.debug:
            print(view.model_dump_json(indent=2))
        elif args.json:
            document = view.public().model_dump(mode="json")
            document["deliveries"] = [d.model_dump(mode="json") for d in deliveries]
            print(json.dumps(document, indent=2))
        else:
            from starters.render import format_shipment

            print(format_shipment(view.public(), deliveries))
        return 0

    return asyncio.run(show())


async def _deliveries(
    settings: Settings, tracking_number: str, order_id: str
) -> list[MessageState]:
    """What the ledger knows of the shipment's messages: provider, id, delivery feedback."""
    from storage import open_ledger

    ledger = open_ledger(settings.resolved_ledger_url, read_only=True)
    try:
        rows = await ledger.states(tracking_number)
    finally:
        await ledger.close()
    return [row for row in rows if row.kind == "message" and row.order_id == order_id]


def _run_outbox(args: argparse.Namespace, settings: Settings) -> int:
    from storage import open_ledger

    async def show() -> int:
        ledger = open_ledger(settings.resolved_ledger_url, read_only=True)
        try:
            records = await ledger.list(tracking_number=_normalized(args.tracking_number))
        finally:
            await ledger.close()
        records = [r for r in records if _in_mode(r.transport, args.mode)]
        if args.tracking_number is None:  # the demo's simulated weeks feed the report only
            from starters.demo_history import is_history

            records = [r for r in records if not is_history(r.tracking_number)]
        if args.csv:
            _write_csv([r.model_dump(mode="json") for r in records])
        elif args.json:
            print(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        else:
            from starters.render import format_outbox_line

            for record in records:
                print(format_outbox_line(record))
        return 0

    return asyncio.run(show())


def _in_mode(transport: str, mode: str) -> bool:
    """Rows by delivery mode: the outbox and the shadow are transports; live is any provider."""
    if mode == "all":
        return True
    if mode == "live":
        return transport not in ("outbox", "shadow")
    return transport == mode


def _write_csv(rows: list[dict[str, Any]]) -> None:
    from storage import LedgerRecord
    from trackflow import csv_cells

    writer = csv_cells.dict_writer(sys.stdout, fieldnames=list(LedgerRecord.model_fields))
    writer.writeheader()
    writer.writerows(rows)


def _run_report(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from starters.report import load_summary, write_report
    from storage import open_ledger
    from trackflow.insight import PeriodError, period

    now = datetime.now(UTC)
    try:
        window = period(args.start, args.end, now.date())
    except PeriodError as error:
        print(f"trackflow report: {error}", file=sys.stderr)
        return 2

    async def build() -> int:
        ledger = open_ledger(settings.resolved_ledger_url, read_only=True)
        try:
            summary = await load_summary(ledger, settings.store_name, window, now)
        finally:
            await ledger.close()
        html_path, csv_path = write_report(summary, Path(args.out), settings.store_name)
        print(summary.wismo.headline)
        print(f"wrote {html_path} and {csv_path}")
        return 0

    return asyncio.run(build())


def _run_baseline_import(args: argparse.Namespace, settings: Settings) -> int:
    from storage import BaselineWeek, open_ledger
    from trackflow.insight import BaselineCsvError, parse_baseline_csv, per_100

    path = Path(args.csv_file)
    try:
        weeks = parse_baseline_csv(path.read_text(encoding="utf-8-sig"))
    except OSError as error:
        print(f"trackflow baseline import: {path}: {error.strerror or error}", file=sys.stderr)
        return 2
    except (BaselineCsvError, UnicodeDecodeError) as error:
        print(f"trackflow baseline import: {path}: {error}", file=sys.stderr)
        return 2

    async def store() -> None:
        ledger = open_ledger(settings.resolved_ledger_url)
        try:
            await ledger.save_baseline(
                [
                    BaselineWeek(
                        week_start=w.week_start,
                        shipments=w.shipments,
                        wismo_tickets=w.wismo_tickets,
                    )
                    for w in weeks
                ]
            )
        finally:
            await ledger.close()

    asyncio.run(store())
    shipments = sum(w.shipments for w in weeks)
    tickets = sum(w.wismo_tickets for w in weeks)
    rate = per_100(tickets, shipments)
    words = "no shipments" if rate is None else f"{rate:.1f} WISMO tickets per 100 shipments"
    print(
        f"imported {len(weeks)} week(s), {weeks[0].week_start} to {weeks[-1].week_start}: "
        f"{tickets} WISMO tickets for {shipments} shipments ({words})"
    )
    return 0


def _run_keys_generate(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from trackflow.encryption import EncryptionKeyError, generate_key_entry

    try:
        print(generate_key_entry(args.id or f"key-{datetime.now(UTC):%Y%m%d}"))
    except EncryptionKeyError as error:
        print(f"trackflow: {error}", file=sys.stderr)
        return 2
    return 0


def _run_codec_server(args: argparse.Namespace, settings: Settings) -> int:
    from starters.codec_server import TOKEN_ENV, run_codec_server

    return run_codec_server(
        settings,
        host=args.host,
        port=args.port,
        origins=args.ui_origin,
        token=os.environ.get(TOKEN_ENV) or None,
    )


def _run_carrier_detect(args: argparse.Namespace, settings: Settings) -> int:
    from trackflow.carriers import detect

    matches = detect(args.number)
    if args.json:
        print(json.dumps({"matches": [m.model_dump(mode="json") for m in matches]}, indent=2))
        return 0
    if not matches:
        print(f"{args.number}: no known carrier format")
        return 1
    for match in matches:
        verdict = "valid" if match.valid else "check digit does not match"
        service = f", {match.service}" if match.service else ""
        print(f"{match.courier:<12} {match.name} ({verdict}{service})  {match.tracking_url or ''}")
    return 0


def _run_simulate_carrier(args: argparse.Namespace, settings: Settings) -> int:
    from starters.simulator import run_simulator

    run_simulator(
        args.host,
        args.port,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret or settings.easypost_webhook_secret,
        time_scale=args.time_scale,
    )
    return 0


def _run_simulate_providers(args: argparse.Namespace, settings: Settings) -> int:
    from starters.simulators.providers import run_providers

    public = settings.public_url.rstrip("/") if settings.public_url else None
    run_providers(
        args.host,
        args.port,
        sendgrid_event_webhook_url=args.sendgrid_event_webhook_url
        or (f"{public}/webhooks/sendgrid" if public else None),
        twilio_inbound_url=args.twilio_inbound_url
        or (f"{public}/webhooks/twilio/inbound" if public else None),
        sendgrid_api_key=settings.sendgrid_api_key,
        twilio_account_sid=settings.twilio_account_sid,
        twilio_auth_token=settings.twilio_auth_token,
        signing_key_file=Path(args.signing_key_file) if args.signing_key_file else None,
    )
    return 0


def _normalized(tracking_number: str | None) -> str | None:
    from trackflow.models import normalize_tracking_number

    return normalize_tracking_number(tracking_number) if tracking_number else None


def _run_until_signal(coroutine: Coroutine[Any, Any, object]) -> int:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        task = asyncio.ensure_future(coroutine)
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
            return
        task.cancel()
        if not (await asyncio.wait({task}, timeout=SHUTDOWN_TIMEOUT_S))[0]:
            # The SDK's shutdown waits out its retries when Temporal is gone (e.g. it died
            # with `trackflow up`). Leaving is safe: Temporal retries what was in flight.
            print(f"shutdown unfinished after {SHUTDOWN_TIMEOUT_S:g}s, exiting", file=sys.stderr)
            _exit(1)  # not via asyncio.run, which would wait for the task again
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(runner())
    return 0


if __name__ == "__main__":
    main()
