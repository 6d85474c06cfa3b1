"""Polling shipments that get no webhooks, against the carrier simulator over real HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from temporalio.client import Client

from devstack.carrier_simulator import create_simulator_app
from starters.api import create_app
from tests.doubles.shipengine_api import create_shipengine_double
from tests.harness import (
    eventually,
    free_port,
    outbox,
    running_worker,
    sent,
    zone_at_local_hour,
)
from trackflow.settings import Settings
from workers.runtime import connect

API_KEY = "EZTK-test"
SCALE = 3600.0  # one policy hour per second: express polls every 0.5-1 s, outage alert after 4 s


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """An ASGI app on a real local port: the poller speaks HTTP to it like to the real API."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: _started(server), lambda ok: ok, what="listening", deadline_s=10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def _started(server: uvicorn.Server) -> bool:
    return server.started


@pytest.fixture
async def simulator() -> AsyncIterator[str]:
    async with serving(create_simulator_app(time_scale=SCALE * 10, api_key=API_KEY)) as url:
        yield url


def _settings(address: str, task_queue: str, data_dir: Path, simulator: str) -> dict[str, Any]:
    return {
        "temporal_address": address,
        "task_queue": task_queue,
        "data_dir": data_dir,
        "api_token": "t",
        "time_scale": SCALE,
        "easypost_api_key": API_KEY,
        "easypost_base_url": simulator,
        "default_poll_via": "easypost",
    }


def _shipment(number: str) -> dict[str, Any]:
    return {
        "order_id": "P-1",
        "tracking_number": number,
        "carrier": "usps",
        "customer": {"name": "Ada", "email": "ada@example.com", "timezone": zone_at_local_hour(12)},
        "order_value": 20,
        "shipping_speed": "express",
    }


@pytest.fixture
async def api(
    temporal_address: str, task_queue: str, tmp_path: Path, simulator: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(**_settings(temporal_address, task_queue, tmp_path, simulator))
    app = create_app(settings, lambda: connect(settings))
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": "Bearer t"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as http:
        yield http


async def test_polled_shipment_reaches_delivered_through_the_simulator(
    api: httpx.AsyncClient,
    client: Client,
    temporal_address: str,
    task_queue: str,
    tmp_path: Path,
    simulator: str,
) -> None:
    number = "9400" + str(uuid.uuid4().int)[:18]
    config = _settings(temporal_address, task_queue, tmp_path, simulator)
    async with running_worker(client, **config):
        assert (await api.post("/v1/shipments", json=_shipment(number))).status_code == 202
        records = await eventually(
            lambda: outbox(tmp_path, number),
            lambda r: ("delivered", "email") in sent(r),
            deadline_s=60,
            what="delivered, learned by polling",
        )
        view = (await api.get(f"/v1/shipments/{number}")).json()
    assert sent(records)[0] == ("label_created", "email")
    assert sent(records)[-1] == ("delivered", "email")
    assert view["status"] == "delivered"
    assert {entry["source"] for entry in view["timeline"]} == {"easypost"}


async def test_a_pushed_event_stops_polling(
    api: httpx.AsyncClient,
    client: Client,
    temporal_address: str,
    task_queue: str,
    tmp_path: Path,
    simulator: str,
) -> None:
    number = "9400" + str(uuid.uuid4().int)[:18]
    config = _settings(temporal_address, task_queue, tmp_path, simulator)
    async with running_worker(client, **config):
        assert (await api.post("/v1/shipments", json=_shipment(number))).status_code == 202
        polling = (await api.get(f"/v1/shipments/{number}")).json()["next_action"]["kind"]
        event = {
            "tracking_number": number,
            "status": "in_transit",
            "occurred_at": "2026-11-20T10:00:00Z",
        }
        assert (await api.post("/v1/events", json=event)).status_code == 202
        view = await eventually(
            lambda: api.get(f"/v1/shipments/{number}"),
            lambda r: any(e["source"] == "api" for e in r.json()["timeline"]),
            what="pushed event applied",
        )
    assert polling == "poll_carrier_api"
    assert view.json()["next_action"]["kind"] != "poll_carrier_api"


async def test_an_api_outage_raises_one_alert_and_one_recovery_notice(
    api: httpx.AsyncClient,
    client: Client,
    temporal_address: str,
    task_queue: str,
    tmp_path: Path,
    simulator: str,
) -> None:
    """Two shipments poll through a simulated 4-hour (compressed) outage: one alert per API."""
    numbers = ["9400" + str(uuid.uuid4().int)[:18] for _ in range(2)]
    config = _settings(temporal_address, task_queue, tmp_path, simulator)
    async with running_worker(client, **config), httpx.AsyncClient(base_url=simulator) as sim:
        outage_s = 4 * 3600 / SCALE + 3
        (
            await sim.post("/simulator/outage", json={"seconds": outage_s, "mode": "5xx"})
        ).raise_for_status()
        for number in numbers:
            assert (await api.post("/v1/shipments", json=_shipment(number))).status_code == 202
        alerts = await eventually(
            lambda: outbox(tmp_path, "api:easypost"),
            lambda r: [a.trigger for a in r] == ["carrier_api_outage", "carrier_api_recovered"],
            deadline_s=60,
            what="outage alert then recovery notice",
        )
        health = await client.get_workflow_handle(f"carrier-api-easypost-{task_queue}").query(
            "state"
        )
    assert len(alerts) == 2
    assert "failing since" in alerts[0].body
    assert health["status"] == "healthy"
    assert health["outages"] == 1


async def test_polled_through_shipengine_when_chosen_for_the_shipment(
    api: httpx.AsyncClient, client: Client, temporal_address: str, task_queue: str, tmp_path: Path
) -> None:
    number = "9400" + str(uuid.uuid4().int)[:18]
    double = create_shipengine_double("SE-key", {number: "usps"})
    async with serving(double) as shipengine:
        config = _settings(temporal_address, task_queue, tmp_path, "http://unused.invalid")
        config |= {"shipengine_api_key": "SE-key", "shipengine_base_url": shipengine}
        async with running_worker(client, **config):
            body = _shipment(number) | {"poll_via": "shipengine"}
            assert (await api.post("/v1/shipments", json=body)).status_code == 202
            records = await eventually(
                lambda: outbox(tmp_path, number),
                lambda r: ("delivered", "email") in sent(r),
                deadline_s=30,
                what="delivered, learned from ShipEngine",
            )
    assert sent(records) == [("in_transit", "email"), ("delivered", "email")]
    assert double.state.calls[0] == ("usps", number)
