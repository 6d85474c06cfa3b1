"""The simulator's state: trackers, their scripted timelines, outages, rate limit, webhooks.

Time comes from an injectable monotonic ``clock`` (seconds); wall-clock timestamps are
``epoch + (clock() - clock at start)``, so a fake clock makes every timestamp deterministic.
A tracker shows the steps whose policy-time offset is <= ``(clock() - created) * time_scale``.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from devstack.carrier_simulator import webhooks
from devstack.carrier_simulator.scenarios import DEFAULT_SCENARIO, HOUR, SCENARIOS, Scenario, Step

log = logging.getLogger("trackflow.simulator")

OUTAGE_MODES = ("5xx", "timeout")
_FINAL_STATUSES = frozenset({"delivered", "return_to_sender", "cancelled"})


class ApiError(Exception):
    """An error answered in EasyPost's shape: ``{"error": {"code", "message", "errors"}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        errors: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or []
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "errors": self.errors}}


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds and ``Z`` (compressed timelines put steps < 1 s apart)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class TrackerRecord:
    id: str
    tracking_code: str
    carrier: str
    scenario: Scenario
    created_mono: float
    created_wall: datetime
    enqueued: int = 0  # how many of the scenario's planned webhooks have been queued
    bodies: dict[int, tuple[str, bytes]] = field(default_factory=dict)  # plan index -> event
    last_announced: str | None = None


@dataclass
class Outgoing:
    event_id: str
    tracker_id: str
    body: bytes
    next_attempt: float
    attempts: int = 0


@dataclass(frozen=True)
class DeliveryLog:
    event_id: str
    tracker_id: str
    attempt: int
    status_code: int | None
    ok: bool
    error: str | None = None


class Simulator:
    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        epoch: datetime | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        api_key: str | None = None,
        rate_limit_rps: float | None = None,
        default_scenario: str = DEFAULT_SCENARIO,
        max_webhook_attempts: int = 5,
        retry_backoff: float = 1.0,
        outage_hang_seconds: float = 30.0,
        webhook_timeout: float = 5.0,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if default_scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {default_scenario!r}")
        self.time_scale = time_scale
        self.clock = clock
        self._start_mono = clock()
        self._start_wall = epoch or datetime.now(UTC)
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.http_client = http_client
        self.api_key = api_key
        self.rate_limit_rps = rate_limit_rps
        self.default_scenario = default_scenario
        self.max_webhook_attempts = max_webhook_attempts
        self.retry_backoff = retry_backoff
        self.outage_hang_seconds = outage_hang_seconds
        self.webhook_timeout = webhook_timeout

        self.trackers: dict[str, TrackerRecord] = {}
        self._by_code: dict[tuple[str, str], str] = {}
        self.assignments: dict[str, str] = {}
        self.outbox: list[Outgoing] = []
        self.deliveries: list[DeliveryLog] = []
        self.dropped: list[Outgoing] = []
        self._requests: deque[float] = deque()
        self._outage_until: float | None = None
        self._outage_mode = "5xx"

    # --- time ----------------------------------------------------------------------------

    def wall_now(self) -> datetime:
        return self._start_wall + timedelta(seconds=self.clock() - self._start_mono)

    def policy_elapsed(self, record: TrackerRecord) -> float:
        return (self.clock() - record.created_mono) * self.time_scale

    def _at(self, record: TrackerRecord, policy_seconds: float) -> datetime:
        return record.created_wall + timedelta(seconds=policy_seconds / self.time_scale)

    # --- guards ----------------------------------------------------------------------------

    def authenticate(self, username: str | None) -> None:
        if not username:
            raise ApiError(
                401,
                "APIKEY.REQUIRED",
                "No API key was provided: use HTTP Basic auth with the API key as the username.",
            )
        if self.api_key is not None and username != self.api_key:
            raise ApiError(401, "APIKEY.INVALID", "The API key provided is not valid.")

    def check_rate_limit(self) -> None:
        if not self.rate_limit_rps:
            return
        now = self.clock()
        while self._requests and self._requests[0] <= now - 1.0:
            self._requests.popleft()
        capacity = max(1, math.floor(self.rate_limit_rps))
        if len(self._requests) >= capacity:
            retry = max(1, math.ceil(self._requests[0] + 1.0 - now))
            raise ApiError(
                429,
                "RATE_LIMITED",
                "You have exceeded the rate limit. Please retry later.",
                headers={"Retry-After": str(retry)},
            )
        self._requests.append(now)

    def start_outage(self, seconds: float, mode: str = "5xx") -> None:
        if mode not in OUTAGE_MODES:
            raise ApiError(
                422, "PARAMETER.INVALID", f"mode must be one of {', '.join(OUTAGE_MODES)}"
            )
        self._outage_mode = mode
        self._outage_until = self.clock() + seconds if seconds > 0 else None

    def outage(self) -> str | None:
        """The active global outage mode, or None."""
        if self._outage_until is not None and self.clock() < self._outage_until:
            return self._outage_mode
        return None

    def outage_remaining(self) -> float:
        return max(0.0, (self._outage_until or 0.0) - self.clock())

    def tracker_in_outage(self, record: TrackerRecord) -> bool:
        window = record.scenario.outage
        if window is None:
            return False
        return window[0] * HOUR <= self.policy_elapsed(record) < window[1] * HOUR

    @staticmethod
    def unavailable() -> ApiError:
        return ApiError(
            503,
            "SERVICE.UNAVAILABLE",
            "The service is temporarily unavailable. Please try again later.",
        )

    # --- trackers ---------------------------------------------------------------------------

    def assign_scenario(self, tracking_code: str, scenario: str) -> None:
        if scenario not in SCENARIOS:
            raise ApiError(
                422,
                "PARAMETER.INVALID",
                f"unknown scenario {scenario!r}",
                [{"field": "scenario", "message": f"one of {', '.join(SCENARIOS)}"}],
            )
        if any(code == tracking_code for code, _ in self._by_code):
            raise ApiError(
                409,
                "SIMULATOR.TRACKER_EXISTS",
                "a tracker already exists for this tracking_code; assign before creating it",
            )
        self.assignments[tracking_code] = scenario

    def create_tracker(self, tracking_code: str, carrier: str) -> tuple[TrackerRecord, bool]:
        """The tracker for (code, carrier), creating it if new; True when created."""
        key = (tracking_code, carrier.casefold())
        existing = self._by_code.get(key)
        if existing is not None:
            return self.trackers[existing], False
        scenario = SCENARIOS[self.assignments.get(tracking_code, self.default_scenario)]
        record = TrackerRecord(
            id=f"trk_{uuid.uuid4().hex}",
            tracking_code=tracking_code,
            carrier=carrier,
            scenario=scenario,
            created_mono=self.clock(),
            created_wall=self.wall_now(),
        )
        self.trackers[record.id] = record
        self._by_code[key] = record.id
        log.info("tracker %s %s %s: scenario %s", record.id, carrier, tracking_code, scenario.name)
        return record, True

    def get(self, tracker_id: str) -> TrackerRecord:
        record = self.trackers.get(tracker_id)
        if record is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource could not be found.")
        return record

    def find(self, codes: Iterable[str], carrier: str | None) -> list[TrackerRecord]:
        wanted = set(codes)
        return [
            record
            for record in self.trackers.values()
            if (not wanted or record.tracking_code in wanted)
            and (carrier is None or record.carrier.casefold() == carrier.casefold())
        ]

    def current_index(self, record: TrackerRecord) -> int:
        return record.scenario.visible(self.policy_elapsed(record))

    def tracker_json(self, record: TrackerRecord, index: int | None = None) -> dict[str, Any]:
        """The Tracker as of step ``index`` (default: what is visible now)."""
        upto = self.current_index(record) if index is None else index
        steps = record.scenario.steps[: upto + 1]
        latest = steps[-1]
        eta_hours = next(
            (s.eta_hours for s in reversed(steps) if s.eta_hours is not None),
            record.scenario.eta_hours,
        )
        eta = self._at(record, eta_hours * HOUR)
        first, last = steps[0].location, steps[-1].location
        return {
            "id": record.id,
            "object": "Tracker",
            "mode": "test",
            "tracking_code": record.tracking_code,
            "status": latest.status,
            "status_detail": latest.status_detail,
            "created_at": iso(record.created_wall),
            "updated_at": iso(self._at(record, latest.offset)),
            "signed_by": "J DOE" if latest.status == "delivered" else None,
            "weight": 17.6,
            "est_delivery_date": eta.date().isoformat() + "T00:00:00Z",
            "shipment_id": None,
            "carrier": record.carrier,
            "tracking_details": [self._detail(record, step) for step in steps],
            "carrier_detail": {
                "object": "CarrierDetail",
                "service": "Ground Advantage",
                "container_type": None,
                "est_delivery_date_local": eta.date().isoformat(),
                "est_delivery_time_local": None,
                "origin_location": _place(first.city, first.state, first.country),
                "origin_tracking_location": _location(steps[0]),
                "destination_location": "BROOKLYN NY US",
                "destination_tracking_location": _location(latest)
                if last.city == "BROOKLYN"
                else None,
                "guaranteed_delivery_date": None,
                "alternate_identifier": None,
                "initial_delivery_attempt": None,
            },
            "finalized": latest.status in _FINAL_STATUSES,
            "is_return": False,
            "public_url": f"https://track.easypost.com/{record.id}",
            "fees": [],
        }

    def _detail(self, record: TrackerRecord, step: Step) -> dict[str, Any]:
        return {
            "object": "TrackingDetail",
            "message": step.message,
            "description": step.message,
            "status": step.status,
            "status_detail": step.status_detail,
            "datetime": iso(self._at(record, step.offset)),
            "source": step.source or record.carrier,
            "carrier_code": None,
            "tracking_location": _location(step),
        }

    # --- webhooks ---------------------------------------------------------------------------

    def _enqueue_due(self, record: TrackerRecord, now: float) -> None:
        if self.tracker_in_outage(record):
            return
        plan = record.scenario.plan()
        elapsed = self.policy_elapsed(record)
        while record.enqueued < len(plan) and plan[record.enqueued].offset <= elapsed:
            position = record.enqueued
            delivery = plan[position]
            if delivery.repeat_of is not None and delivery.repeat_of in record.bodies:
                event_id, body = record.bodies[delivery.repeat_of]
            else:
                tracker = self.tracker_json(record, delivery.step)
                created = delivery.step == 0 and record.last_announced is None
                event = webhooks.tracker_event(
                    tracker,
                    event_id=webhooks.new_event_id(),
                    description="tracker.created" if created else "tracker.updated",
                    previous_status=None if created else record.last_announced,
                    created_at=iso(self.wall_now()),
                    webhook_url=self.webhook_url or "",
                )
                event_id, body = event["id"], webhooks.encode(event)
                record.last_announced = tracker["status"]
            record.bodies[position] = (event_id, body)
            self.outbox.append(Outgoing(event_id, record.id, body, next_attempt=now))
            record.enqueued += 1

    async def tick(self) -> int:
        """Queue the webhooks that have come due and send what is ready; returns how many
        were delivered (2xx). Nothing goes out while a global outage is active."""
        if self.webhook_url is None or self.outage() is not None:
            return 0
        now = self.clock()
        for record in list(self.trackers.values()):
            self._enqueue_due(record, now)
        delivered = 0
        for item in list(self.outbox):
            if item.next_attempt > now:
                continue
            if await self._send(item):
                delivered += 1
                self.outbox.remove(item)
            elif item.attempts >= self.max_webhook_attempts:
                log.warning("webhook %s dropped after %d attempts", item.event_id, item.attempts)
                self.outbox.remove(item)
                self.dropped.append(item)
            else:
                item.next_attempt = now + self.retry_backoff * 2 ** (item.attempts - 1)
        return delivered

    async def _send(self, item: Outgoing) -> bool:
        assert self.webhook_url is not None
        headers = {"Content-Type": "application/json", "User-Agent": webhooks.USER_AGENT}
        if self.webhook_secret:
            headers[webhooks.SIGNATURE_HEADER] = webhooks.sign(item.body, self.webhook_secret)
        item.attempts += 1
        client = self.http_client
        owned = client is None
        if client is None:
            client = httpx.AsyncClient(timeout=self.webhook_timeout)
        try:
            response = await client.post(self.webhook_url, content=item.body, headers=headers)
        except httpx.HTTPError as exc:
            self.deliveries.append(
                DeliveryLog(item.event_id, item.tracker_id, item.attempts, None, False, repr(exc))
            )
            log.info("webhook %s attempt %d failed: %r", item.event_id, item.attempts, exc)
            return False
        finally:
            if owned:
                await client.aclose()
        ok = 200 <= response.status_code < 300
        self.deliveries.append(
            DeliveryLog(item.event_id, item.tracker_id, item.attempts, response.status_code, ok)
        )
        log.info("webhook %s -> %d", item.event_id, response.status_code)
        return ok


def _place(*parts: str | None) -> str | None:
    text = " ".join(part for part in parts if part)
    return text or None


def _location(step: Step) -> dict[str, Any]:
    where = step.location
    return {
        "object": "TrackingLocation",
        "city": where.city,
        "state": where.state,
        "country": where.country,
        "zip": where.zip,
    }
