"""The carrier simulator (devstack.carrier_simulator): EasyPost wire format, scenarios, webhooks.

In-process only: the API through httpx.ASGITransport, a fake clock instead of sleeping, and
webhooks delivered to a recording FastAPI receiver through an injected httpx client.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from devstack.carrier_simulator import SCENARIOS, Simulator, create_simulator_app
from trackflow.models import CarrierStatus, ExceptionKind
from trackflow.sources.easypost import normalize, parse_webhook
from trackflow.sources.signatures import verify_easypost

SECRET = "sécret-ﬁle"  # non-ASCII + a ligature: exercises the NFKD rule
HOOK_URL = "http://receiver/hooks/easypost"
SCALE = 3600.0  # one policy hour per (fake) second
EPOCH = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

LC, IT, OFD, DEL = (
    CarrierStatus.LABEL_CREATED,
    CarrierStatus.IN_TRANSIT,
    CarrierStatus.OUT_FOR_DELIVERY,
    CarrierStatus.DELIVERED,
)
PICKUP, EXC = CarrierStatus.AVAILABLE_FOR_PICKUP, CarrierStatus.EXCEPTION


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Receiver:
    status_codes: list[int] = field(default_factory=list)  # answers to give, then 200
    calls: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hooks/easypost")
        async def hook(request: Request) -> Response:
            self.calls.append((await request.body(), dict(request.headers)))
            code = self.status_codes.pop(0) if self.status_codes else 200
            return Response(status_code=code)

        return app

    def bodies(self) -> list[bytes]:
        return [body for body, _ in self.calls]


@dataclass
class Rig:
    sim: Simulator
    clock: FakeClock
    api: httpx.AsyncClient
    receiver: Receiver

    async def create(self, code: str, scenario: str | None = None, carrier: str = "USPS") -> str:
        if scenario is not None:
            assigned = await self.api.post(
                "/simulator/scenarios", json={"tracking_code": code, "scenario": scenario}
            )
            assert assigned.status_code == 200, assigned.text
        response = await self.api.post(
            "/v2/trackers", json={"tracker": {"tracking_code": code, "carrier": carrier}}
        )
        assert response.status_code == 200, response.text
        tracker_id = response.json()["id"]
        assert isinstance(tracker_id, str)
        return tracker_id

    def at_hours(self, tracker_id: str, hours: float) -> None:
        self.clock.now = self.sim.trackers[tracker_id].created_mono + hours * 3600 / SCALE


@pytest.fixture
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    options: dict[str, Any] = getattr(request, "param", {})
    clock = FakeClock()
    receiver = Receiver()
    hooks = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app()))
    sim = Simulator(
        time_scale=SCALE,
        clock=clock,
        epoch=EPOCH,
        webhook_url=HOOK_URL,
        webhook_secret=SECRET,
        http_client=hooks,
        **options,
    )
    app = create_simulator_app(simulator=sim)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sim", auth=("sk_test_1", "")
    ) as api:
        yield Rig(sim, clock, api, receiver)
    await hooks.aclose()


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["errors"], list)


# --- the EasyPost API ------------------------------------------------------------------------


async def test_create_returns_an_easypost_tracker_and_dedupes(rig: Rig) -> None:
    response = await rig.api.post(
        "/v2/trackers",
        json={"tracker": {"tracking_code": "9400100000000000000001", "carrier": "USPS"}},
    )
    assert response.status_code == 200
    tracker = response.json()
    assert tracker["id"].startswith("trk_") and len(tracker["id"]) > 10
    assert tracker["object"] == "Tracker" and tracker["mode"] == "test"
    assert tracker["tracking_code"] == "9400100000000000000001"
    assert tracker["carrier"] == "USPS"
    assert (tracker["status"], tracker["status_detail"]) == ("pre_transit", "label_created")
    assert tracker["created_at"] == "2026-03-02T09:00:00.000Z"
    for key in ("est_delivery_date", "updated_at", "public_url", "carrier_detail", "finalized"):
        assert key in tracker
    [detail] = tracker["tracking_details"]
    assert detail["object"] == "TrackingDetail" and detail["source"] == "USPS"
    assert detail["tracking_location"]["object"] == "TrackingLocation"

    again = await rig.api.post(
        "/v2/trackers",
        json={"tracker": {"tracking_code": "9400100000000000000001", "carrier": "usps"}},
    )
    assert again.json()["id"] == tracker["id"]
    other = await rig.create("9400100000000000000001", carrier="FedEx")
    assert other != tracker["id"]

    got = await rig.api.get(f"/v2/trackers/{tracker['id']}")
    assert got.status_code == 200 and got.json()["id"] == tracker["id"]
    listed = await rig.api.get(
        "/v2/trackers", params={"tracking_codes[]": "9400100000000000000001", "carrier": "USPS"}
    )
    assert [t["id"] for t in listed.json()["trackers"]] == [tracker["id"]]
    assert listed.json()["has_more"] is False


async def test_missing_api_key_is_401_apikey_required(rig: Rig) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_simulator_app(simulator=rig.sim)),
        base_url="http://sim",
    ) as anonymous:
        response = await anonymous.post(
            "/v2/trackers", json={"tracker": {"tracking_code": "1Z999", "carrier": "UPS"}}
        )
        _error(response, 401, "APIKEY.REQUIRED")
        _error(await anonymous.get("/v2/trackers/trk_x"), 401, "APIKEY.REQUIRED")


async def test_wrong_api_key_is_401_when_a_key_is_configured() -> None:
    app = create_simulator_app(api_key="sk_right")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sim", auth=("sk_wrong", "")
    ) as client:
        _error(await client.get("/v2/trackers/trk_x"), 401, "APIKEY.INVALID")
        client.auth = httpx.BasicAuth("sk_right", "")
        _error(await client.get("/v2/trackers/trk_x"), 404, "NOT_FOUND")


async def test_unknown_tracker_is_404_not_found(rig: Rig) -> None:
    _error(await rig.api.get("/v2/trackers/trk_doesnotexist"), 404, "NOT_FOUND")


async def test_missing_tracking_code_is_422(rig: Rig) -> None:
    response = await rig.api.post("/v2/trackers", json={"tracker": {"carrier": "USPS"}})
    _error(response, 422, "PARAMETER.REQUIRED")
    assert response.json()["error"]["errors"][0]["field"] == "tracking_code"


@pytest.mark.parametrize("rig", [{"rate_limit_rps": 2}], indirect=True)
async def test_rate_limit_is_429_rate_limited_with_retry_after(rig: Rig) -> None:
    assert (await rig.api.get("/v2/trackers")).status_code == 200
    assert (await rig.api.get("/v2/trackers")).status_code == 200
    limited = await rig.api.get("/v2/trackers")
    _error(limited, 429, "RATE_LIMITED")
    assert limited.headers["Retry-After"] == "1"
    # the control endpoints are never limited
    assert (await rig.api.get("/simulator/scenarios")).status_code == 200
    rig.clock.advance(1.0)
    assert (await rig.api.get("/v2/trackers")).status_code == 200


async def test_scenario_assignment_errors(rig: Rig) -> None:
    response = await rig.api.post(
        "/simulator/scenarios", json={"tracking_code": "X1", "scenario": "nope"}
    )
    _error(response, 422, "PARAMETER.INVALID")
    await rig.create("X2")
    response = await rig.api.post(
        "/simulator/scenarios", json={"tracking_code": "X2", "scenario": "lost"}
    )
    _error(response, 409, "SIMULATOR.TRACKER_EXISTS")


# --- outages ---------------------------------------------------------------------------------


async def test_global_5xx_outage_then_recovery(rig: Rig) -> None:
    tracker_id = await rig.create("OUT1")
    started = await rig.api.post("/simulator/outage", json={"seconds": 30, "mode": "5xx"})
    assert started.json() == {"mode": "5xx", "remaining_seconds": 30.0}
    _error(await rig.api.get(f"/v2/trackers/{tracker_id}"), 503, "SERVICE.UNAVAILABLE")
    _error(
        await rig.api.post("/v2/trackers", json={"tracker": {"tracking_code": "OUT2"}}),
        503,
        "SERVICE.UNAVAILABLE",
    )
    assert await rig.sim.tick() == 0  # webhooks held while down
    rig.clock.advance(30)
    assert (await rig.api.get(f"/v2/trackers/{tracker_id}")).status_code == 200
    assert await rig.sim.tick() > 0


@pytest.mark.parametrize("rig", [{"outage_hang_seconds": 0.05}], indirect=True)
async def test_global_timeout_outage_hangs_before_answering(rig: Rig) -> None:
    await rig.api.post("/simulator/outage", json={"seconds": 10, "mode": "timeout"})
    began = time.perf_counter()
    response = await rig.api.get("/v2/trackers/trk_x")
    assert time.perf_counter() - began >= 0.05
    _error(response, 503, "SERVICE.UNAVAILABLE")
    await rig.api.post("/simulator/outage", json={"seconds": 0})
    _error(await rig.api.get("/v2/trackers/trk_x"), 404, "NOT_FOUND")


async def test_outage_scenario_503s_its_tracker_and_holds_its_webhooks(rig: Rig) -> None:
    tracker_id = await rig.create("OUTSCEN", "outage")
    healthy = await rig.create("HEALTHY")
    await rig.sim.tick()
    assert len(rig.receiver.calls) == 2  # both trackers' creation
    rig.at_hours(tracker_id, 45)
    _error(await rig.api.get(f"/v2/trackers/{tracker_id}"), 503, "SERVICE.UNAVAILABLE")
    assert (await rig.api.get(f"/v2/trackers/{healthy}")).status_code == 200
    before = len(rig.receiver.calls)
    await rig.sim.tick()
    sent = [parse_webhook(_json(body))[-1].tracking_number for body in rig.receiver.bodies()]
    assert "OUTSCEN" not in sent[before:]
    rig.at_hours(tracker_id, 50)
    got = await rig.api.get(f"/v2/trackers/{tracker_id}")
    assert got.status_code == 200 and got.json()["status_detail"] == "arrived_at_destination"
    await rig.sim.tick()
    caught_up = [
        parse_webhook(_json(body))[-1]
        for body in rig.receiver.bodies()[before:]
        if b'"OUTSCEN"' in body
    ]
    assert [event.status for event in caught_up] == [IT, IT, IT]


# --- scenarios -------------------------------------------------------------------------------

EXPECTED: dict[str, list[tuple[CarrierStatus, ExceptionKind | None]]] = {
    "normal": [(LC, None), (IT, None), (IT, None), (IT, None), (OFD, None), (DEL, None)],
    "weather_delay": [
        (LC, None),
        (IT, None),
        (EXC, ExceptionKind.WEATHER_DELAY),
        (IT, None),
        (IT, None),
        (OFD, None),
        (DEL, None),
    ],
    "address_issue": [
        (LC, None),
        (IT, None),
        (IT, None),
        (IT, None),
        (OFD, None),
        (EXC, ExceptionKind.ADDRESS_ISSUE),
        (OFD, None),
        (DEL, None),
    ],
    "failed_attempt_then_delivered": [
        (LC, None),
        (IT, None),
        (IT, None),
        (IT, None),
        (OFD, None),
        (EXC, ExceptionKind.UNKNOWN),
        (OFD, None),
        (DEL, None),
    ],
    "held_at_facility": [
        (LC, None),
        (IT, None),
        (IT, None),
        (IT, None),
        (PICKUP, None),
        (DEL, None),
    ],
    "lost": [(LC, None), (IT, None), (IT, None)],
    "relay_handoff": [(LC, None), (IT, None), (IT, None), (IT, None), (OFD, None), (DEL, None)],
    "duplicates_out_of_order": [
        (LC, None),
        (IT, None),
        (IT, None),
        (IT, None),
        (OFD, None),
        (DEL, None),
    ],
    "outage": [(LC, None), (IT, None), (IT, None), (IT, None), (OFD, None), (DEL, None)],
}


def test_every_scenario_has_an_expectation() -> None:
    assert set(EXPECTED) == set(SCENARIOS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_scenario_progression_normalizes_as_expected(rig: Rig, name: str) -> None:
    code = "SCN" + name.upper().replace("_", "")[:30]
    tracker_id = await rig.create(code, name)
    record = rig.sim.trackers[tracker_id]
    assert record.scenario.name == name
    seen: list[tuple[CarrierStatus, ExceptionKind | None]] = []
    previous_update = ""
    for step in record.scenario.steps:
        rig.at_hours(tracker_id, step.hours)
        tracker = rig.sim.tracker_json(record)
        normalized = normalize(tracker["status"], tracker["status_detail"])
        assert normalized.known
        seen.append((normalized.status, normalized.exception))
        # the bare Tracker (as GET returns it) parses, its current state last
        assert parse_webhook(tracker)[-1].status == normalized.status
        assert tracker["updated_at"] > previous_update
        previous_update = tracker["updated_at"]
        # just before the next step nothing changes
        rig.clock.advance(0.5 / SCALE)
        assert rig.sim.tracker_json(record)["status_detail"] == tracker["status_detail"]
    assert seen == EXPECTED[name]

    rig.at_hours(tracker_id, 1000)  # long after: the story has ended where it ended
    final = rig.sim.tracker_json(record)
    assert len(final["tracking_details"]) == len(record.scenario.steps)
    assert final["finalized"] is (name != "lost")


async def test_scenario_over_http_and_relay_source(rig: Rig) -> None:
    tracker_id = await rig.create("RELAY1", "relay_handoff", carrier="DHLeCommerce")
    rig.at_hours(tracker_id, 31)
    tracker = (await rig.api.get(f"/v2/trackers/{tracker_id}")).json()
    assert (tracker["status"], tracker["status_detail"]) == (
        "in_transit",
        "transferred_to_destination_carrier",
    )
    assert tracker["carrier"] == "DHLeCommerce"
    assert [d["source"] for d in tracker["tracking_details"]] == [
        "DHLeCommerce",
        "DHLeCommerce",
        "USPS",
    ]


async def test_default_scenario_is_normal(rig: Rig) -> None:
    tracker_id = await rig.create("PLAIN1")
    assert rig.sim.trackers[tracker_id].scenario.name == "normal"


# --- webhooks --------------------------------------------------------------------------------


def _json(body: bytes) -> dict[str, Any]:
    import json

    loaded = json.loads(body)
    assert isinstance(loaded, dict)
    return loaded


async def _play(rig: Rig, tracker_id: str, until_hours: float) -> None:
    for tenth in range(int(until_hours * 10) + 1):
        rig.at_hours(tracker_id, tenth / 10)
        await rig.sim.tick()


def _verified(rig: Rig) -> list[dict[str, Any]]:
    events = []
    for body, headers in rig.receiver.calls:
        assert verify_easypost(body, headers.get("x-hmac-signature"), SECRET)
        assert not verify_easypost(body, headers.get("x-hmac-signature"), "wrong")
        assert headers["content-type"] == "application/json"
        events.append(_json(body))
    return events


async def test_webhooks_are_signed_easypost_events_one_per_step(rig: Rig) -> None:
    tracker_id = await rig.create("HOOK1")
    await _play(rig, tracker_id, 70)
    events = _verified(rig)
    assert len(events) == 6
    first, *rest = events
    assert first["description"] == "tracker.created" and first["previous_attributes"] == {}
    assert all(event["description"] == "tracker.updated" for event in rest)
    for event in events:
        assert event["object"] == "Event" and event["id"].startswith("evt_")
        assert event["result"]["object"] == "Tracker" and event["result"]["id"] == tracker_id
    assert rest[0]["previous_attributes"] == {"status": "pre_transit"}
    assert len({event["id"] for event in events}) == 6
    states = [parse_webhook(event)[-1] for event in events]
    assert [(s.status, s.exception) for s in states] == EXPECTED["normal"]
    assert all(s.tracking_number == "HOOK1" and s.source == "easypost" for s in states)
    # each Event carries the whole history: the last one parses to every scan + the state
    assert len(parse_webhook(events[-1])) == 7


async def test_duplicates_and_out_of_order_webhooks(rig: Rig) -> None:
    tracker_id = await rig.create("DUP000001", "duplicates_out_of_order")
    await _play(rig, tracker_id, 70)
    events = _verified(rig)
    ids = [event["id"] for event in events]
    assert len(ids) == 9 and len(set(ids)) == 6  # three re-sends of the very same Event
    bodies = rig.receiver.bodies()
    assert bodies[1] == bodies[2] and bodies[5] == bodies[6]  # byte-identical, like a retry
    statuses = [parse_webhook(event)[-1].status for event in events]
    assert statuses == [LC, IT, IT, IT, IT, DEL, DEL, OFD, IT]
    assert statuses.index(OFD) > statuses.index(DEL)  # out_for_delivery arrives late
    # the late one is older than the delivered one
    late, delivered = parse_webhook(events[7])[-1], parse_webhook(events[5])[-1]
    assert late.occurred_at < delivered.occurred_at


async def test_lost_sends_nothing_after_the_last_scan(rig: Rig) -> None:
    tracker_id = await rig.create("LOST1", "lost")
    await _play(rig, tracker_id, 200)
    assert len(rig.receiver.calls) == 3


@pytest.mark.parametrize("rig", [{"retry_backoff": 1.0}], indirect=True)
async def test_failed_webhooks_are_retried_with_backoff(rig: Rig) -> None:
    rig.receiver.status_codes = [500, 503]
    await rig.create("RETRY1")
    assert await rig.sim.tick() == 0
    assert await rig.sim.tick() == 0  # not yet due again
    rig.clock.advance(1.0)
    assert await rig.sim.tick() == 0  # second attempt fails too; next in 2 s
    rig.clock.advance(1.0)
    assert await rig.sim.tick() == 0
    rig.clock.advance(1.0)
    assert await rig.sim.tick() == 1
    bodies = rig.receiver.bodies()
    assert len(bodies) == 3 and len(set(bodies)) == 1
    assert [(d.attempt, d.status_code, d.ok) for d in rig.sim.deliveries] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]
    log = (await rig.api.get("/simulator/webhooks")).json()
    assert log["queued"] == [] and len(log["deliveries"]) == 3


@pytest.mark.parametrize("rig", [{"max_webhook_attempts": 2}], indirect=True)
async def test_webhook_dropped_after_max_attempts(rig: Rig) -> None:
    rig.receiver.status_codes = [500] * 10
    await rig.create("DROP1")
    await rig.sim.tick()
    rig.clock.advance(1.0)
    await rig.sim.tick()
    rig.clock.advance(2.0)  # policy hour 3: no new scans yet, and no third attempt
    await rig.sim.tick()
    assert len(rig.receiver.calls) == 2
    assert len(rig.sim.dropped) == 1 and rig.sim.outbox == []


async def test_unreachable_webhook_url_is_retried() -> None:
    clock = FakeClock()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as hooks:
        sim = Simulator(time_scale=SCALE, clock=clock, webhook_url=HOOK_URL, http_client=hooks)
        sim.create_tracker("UNREACH1", "USPS")
        assert await sim.tick() == 0
        assert sim.deliveries[0].status_code is None and sim.deliveries[0].error
        assert len(sim.outbox) == 1 and sim.outbox[0].attempts == 1


async def test_no_webhook_url_sends_nothing() -> None:
    sim = Simulator(time_scale=SCALE, clock=FakeClock())
    sim.create_tracker("NOHOOK", "USPS")
    assert await sim.tick() == 0 and sim.outbox == []


def test_simulate_carrier_help_names_every_scenario_and_endpoint() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "starters.cli", "simulate", "carrier", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert all(name in shown for name in SCENARIOS)
    assert all(
        path in shown for path in ("/v2/trackers", "/simulator/scenarios", "/simulator/outage")
    )
