"""`GET /metrics`: what operators watch, in Prometheus' text format (`prometheus-client`).

Two kinds of figures, in one per-app `CollectorRegistry` (not the library's global one, so
several apps in one process, as in the tests, keep their own):

* **In-process counters** of this API process, counted by `CountedRoute` (the route class of
  the webhook and `/v1` routers) around every POST, with its final HTTP status:
  `trackflow_events_received_total{source, outcome, reason}` and
  `trackflow_signature_failures_total{source}`. `source` is the route's provider (`shopify`,
  `easypost`, `aftership`, `shipengine`, `sendgrid`, `twilio`, `gorgias`, `zendesk`) or `api`
  for `/v1`; `outcome` is `accepted`, `duplicate` (a provider's retry, a repeated ticket, a
  shipment already registered), `ignored` (a topic, event or shipment we take no action on),
  `rejected` (4xx) or `failed` (5xx); `reason` names the class of a rejection or failure
  (`signature`, `unauthorized`, `invalid`, `bad_request`, `not_found`, `conflict`,
  `too_large`, `client_error`; `unavailable`, `upstream`, `server_error`), empty otherwise.
  They restart at zero with the process and count that process only: with several replicas
  (or `uvicorn --workers N`) scrape every one and `sum` them. A body whose Content-Length is
  over the cap is refused by the middleware before any route and is not counted.
* **Ledger figures**, computed at scrape time by `LedgerCollector` from the ledger database
  every worker and replica writes to, so they are right whatever process answers and survive
  restarts (the same on every replica: `max`, not `sum`, across them):
  `trackflow_messages{trigger, channel, status}` (customer-message rows by status: sending,
  sent, failed, uncertain, suppressed), `trackflow_provider_errors_total{transport, code}`
  (failed rows by the provider's error code), `trackflow_send_latency_seconds{channel}` (a
  histogram of sent_at - decided_at of sent messages, seconds to days: quiet hours hold
  messages for hours), `trackflow_open_problem_shipments` (read-model rows in exception or
  lost), `trackflow_alerts_raised_total{kind}`, and `trackflow_ledger_scrape_ok` /
  `trackflow_ledger_scrape_seconds` (whether and how fast the ledger was read).

Scrape cost: the ledger figures come from `Ledger.message_figures()`, which aggregates in
SQL (GROUP BY over the message rows, a histogram per channel, a count of open-problem
read-model rows): the database scans the rows once, and the API reads and parses O(groups)
rows, never a body or a read-model document.

Auth: with `TRACKFLOW_METRICS_TOKEN` set, a scrape needs `Authorization: Bearer <token>`
(401 otherwise); unset, `/metrics` is open: keep it on an internal network then.
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies below from
# annotations, so they must be evaluated where they stand.

import asyncio
import hmac
import logging
import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.types import Message, Receive, Scope, Send

from starters.api.dependencies import AppLedger, Context
from starters.api.json_body import StrictJsonRoute
from storage import Ledger, LedgerTotals

logger = logging.getLogger("trackflow.api")

# Seconds from the policy's decision to the provider's receipt: an immediate send takes
# seconds, a send window holds a message for hours (overnight quiet hours: up to ~14 h).
LATENCY_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400)
_BOUNDS = tuple(float(bound) for bound in LATENCY_BUCKETS)
MAX_LABEL = 64  # ledger text used as a label value is cut to this
EventOutcome = Literal["accepted", "duplicate", "ignored"]
_COUNTED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_REJECTED = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    409: "conflict",
    413: "too_large",
    422: "invalid",
}
_FAILED = {502: "upstream", 503: "unavailable"}


# --- in-process counters -----------------------------------------------------------------


@dataclass
class EventMark:
    """What the handling of one request says about it, beyond its HTTP status."""

    outcome: EventOutcome = "accepted"
    signature_failed: bool = False


_current: ContextVar[EventMark | None] = ContextVar("trackflow_event_mark", default=None)


def event_outcome(outcome: EventOutcome) -> None:
    """Marks the request being handled (by a `CountedRoute`) as a duplicate or ignored; a
    no-op anywhere else."""
    if (mark := _current.get()) is not None:
        mark.outcome = outcome


def signature_failed() -> None:
    """Marks the request being handled as refused for its signature (or secret)."""
    if (mark := _current.get()) is not None:
        mark.signature_failed = True


def registrations_outcome(outcomes: Iterable[str]) -> None:
    """A webhook's outcome from its shipments' registration outcomes: a duplicate when every
    shipment was already registered, ignored when none was taken in."""
    seen = set(outcomes)
    if seen and seen <= {"already_registered"}:
        event_outcome("duplicate")
    elif seen and seen <= {"ignored", "refused"}:
        event_outcome("ignored")


def source_of(path: str) -> str:
    """`/webhooks/<provider>/...` -> the provider; `/v1/...` (and anything else) -> `api`."""
    parts = path.strip("/").split("/")
    return parts[1] if len(parts) > 1 and parts[0] == "webhooks" else "api"


def classify(status: int, mark: EventMark) -> tuple[str, str]:
    """(outcome, reason) of a request answered `status`."""
    if status >= 500:
        return "failed", _FAILED.get(status, "server_error")
    if status >= 400:
        if mark.signature_failed:
            return "rejected", "signature"
        return "rejected", _REJECTED.get(status, "client_error")
    return mark.outcome, ""


class ApiMetrics:
    """One app's registry: its in-process counters and the ledger collector."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.events = Counter(
            "trackflow_events_received",
            "Requests received (webhooks and /v1 writes) by source, outcome and reason class",
            ["source", "outcome", "reason"],
            registry=self.registry,
        )
        self.signature_failures = Counter(
            "trackflow_signature_failures",
            "Webhooks refused because their signature or shared secret did not match",
            ["source"],
            registry=self.registry,
        )
        self.ledger = LedgerCollector()
        self.registry.register(self.ledger)

    def count(self, source: str, status: int, mark: EventMark) -> None:
        outcome, reason = classify(status, mark)
        self.events.labels(source, outcome, reason).inc()
        if mark.signature_failed:
            self.signature_failures.labels(source).inc()


def metrics_of(app: FastAPI) -> ApiMetrics:
    """The app's metrics, made on first use."""
    found: ApiMetrics | None = getattr(app.state, "metrics", None)
    if found is None:
        found = ApiMetrics()
        app.state.metrics = found
    return found


class CountedRoute(StrictJsonRoute):
    """A route whose POSTs count in `trackflow_events_received_total` with their final status
    (after the app's exception handlers; an unhandled exception counts as a 500)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _COUNTED_METHODS:
            await super().handle(scope, receive, send)
            return
        mark = EventMark()
        status = 500  # when no response started

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        token = _current.set(mark)
        try:
            await super().handle(scope, receive, sending)
        except asyncio.CancelledError:  # the client went away: no answer to count
            raise
        except BaseException:  # unhandled: the server's error middleware answers 500
            metrics_of(scope["app"]).count(source_of(self.path), 500, mark)
            raise
        else:
            metrics_of(scope["app"]).count(source_of(self.path), status, mark)
        finally:
            _current.reset(token)


# --- ledger figures ----------------------------------------------------------------------


@dataclass
class Latency:
    """One channel's send-latency histogram: per bound of `LATENCY_BUCKETS` the messages at or
    under it, how many in all, and their seconds summed."""

    cumulative: list[int]
    count: int = 0
    sum: float = 0.0


@dataclass
class LedgerFigures:
    """What the ledger says, as the metrics label it (text cut to `MAX_LABEL`)."""

    messages: Tally[tuple[str, str, str]] = field(default_factory=Tally)  # trigger, channel, status
    provider_errors: Tally[tuple[str, str]] = field(default_factory=Tally)  # transport, code
    alerts: Tally[str] = field(default_factory=Tally)  # alert kind
    latency: dict[str, Latency] = field(default_factory=dict)  # channel -> histogram
    open_problems: int = 0


def _label(value: str | None) -> str:
    return (value or "")[:MAX_LABEL]


def figures(totals: LedgerTotals) -> LedgerFigures:
    """The metrics' figures from the ledger's aggregates (pure): customer messages (kind
    'message', or none on the oldest rows) by trigger, channel and status; failed rows of any
    kind by transport and error code; sent alerts by kind."""
    found = LedgerFigures(open_problems=totals.open_problems)
    for group in totals.counts:
        if group.status == "failed":
            found.provider_errors[_label(group.transport), _label(group.error_code)] += group.count
        if group.kind in (None, "message"):
            key = (_label(group.trigger), _label(group.channel), group.status)
            found.messages[key] += group.count
    for kind, count in totals.alerts.items():
        found.alerts[_label(kind)] += count
    for histogram in totals.latency:
        if histogram.buckets != _BOUNDS:
            raise ValueError(f"latency read with other buckets: {histogram.buckets!r}")
        channel = found.latency.setdefault(
            _label(histogram.channel), Latency([0] * len(LATENCY_BUCKETS))
        )
        channel.cumulative = [
            a + b for a, b in zip(channel.cumulative, histogram.cumulative, strict=True)
        ]
        channel.count += histogram.count
        channel.sum += histogram.sum
    return found


async def read_figures(ledger: Ledger) -> LedgerFigures:
    return figures(await ledger.message_figures(_BOUNDS))


class LedgerCollector(Collector):
    """Yields the figures of the latest ledger read (`refresh` before each exposition)."""

    def __init__(self) -> None:
        self.figures: LedgerFigures | None = None
        self.seconds = 0.0

    async def refresh(self, ledger: Ledger) -> None:
        started = time.perf_counter()
        try:
            self.figures = await read_figures(ledger)
        except Exception:
            logger.exception("metrics: the ledger could not be read")
            self.figures = None
        self.seconds = time.perf_counter() - started

    def collect(self) -> Iterator[Metric]:
        ok = GaugeMetricFamily(
            "trackflow_ledger_scrape_ok", "1 if the ledger was read for this scrape, else 0"
        )
        ok.add_metric([], 1 if self.figures is not None else 0)
        yield ok
        took = GaugeMetricFamily(
            "trackflow_ledger_scrape_seconds", "Seconds taken reading the ledger for this scrape"
        )
        took.add_metric([], self.seconds)
        yield took
        if self.figures is not None:
            yield from _families(self.figures)


def _families(found: LedgerFigures) -> Iterator[Metric]:
    messages = GaugeMetricFamily(
        "trackflow_messages",
        "Customer-message rows in the ledger by trigger, channel and status",
        labels=["trigger", "channel", "status"],
    )
    for (trigger, channel, status), count in sorted(found.messages.items()):
        messages.add_metric([trigger, channel, status], count)
    yield messages
    errors = CounterMetricFamily(
        "trackflow_provider_errors",
        "Messages a provider refused (failed rows) by transport and the provider's error code",
        labels=["transport", "code"],
    )
    for (transport, code), count in sorted(found.provider_errors.items()):
        errors.add_metric([transport, code], count)
    yield errors
    latency = HistogramMetricFamily(
        "trackflow_send_latency_seconds",
        "Seconds from the policy's decision to the provider's receipt of sent messages "
        "(includes time held by send windows)",
        labels=["channel"],
    )
    for channel, histogram in sorted(found.latency.items()):
        cumulative = [
            (_bound(bound), float(count))
            for bound, count in zip(LATENCY_BUCKETS, histogram.cumulative, strict=True)
        ]
        cumulative.append(("+Inf", float(histogram.count)))
        latency.add_metric([channel], cumulative, histogram.sum)
    yield latency
    problems = GaugeMetricFamily(
        "trackflow_open_problem_shipments", "Shipments in the read model in exception or lost"
    )
    problems.add_metric([], found.open_problems)
    yield problems
    alerts = CounterMetricFamily(
        "trackflow_alerts_raised", "Alerts raised to ops (ledger rows) by kind", labels=["kind"]
    )
    for kind, count in sorted(found.alerts.items()):
        alerts.add_metric([kind], count)
    yield alerts


def _bound(bound: float) -> str:
    return str(float(bound))


# --- the route ---------------------------------------------------------------------------

router = APIRouter()
METRICS_BEARER = HTTPBearer(
    scheme_name="metricsBearer",
    description="TRACKFLOW_METRICS_TOKEN (when it is set)",
    auto_error=False,
)


def _metrics_token(
    context: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(METRICS_BEARER)],
) -> None:
    expected = context.settings.metrics_token
    if not expected:
        return
    given = credentials.credentials.encode() if credentials else b""
    if not hmac.compare_digest(given, expected.encode()):
        raise HTTPException(
            401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(_metrics_token)],
    summary="Prometheus metrics",
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "text format"}},
)
async def prometheus_metrics(request: Request, ledger: AppLedger) -> Response:
    """The in-process counters and the ledger figures, read now (see the module's doc)."""
    metrics = metrics_of(request.app)
    await metrics.ledger.refresh(ledger)
    # the format the scraper asks for: Prometheus' text format, or OpenMetrics
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(metrics.registry), headers={"Content-Type": content_type})
