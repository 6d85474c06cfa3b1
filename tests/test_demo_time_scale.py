"""`trackflow up --demo` compresses the demo's own shipments, not the merchant's (issue 8).

The demo used to set TRACKFLOW_TIME_SCALE=10000 for the whole stack: a shipment registered
through the API while it ran was declared lost after 86 s.
"""

from __future__ import annotations

import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.harness import (
    clean_env,
    eventually,
    free_port,
    up_command,
    up_ports,
    wait_until_healthy,
    zone_at_local_hour,
)
from trackflow.carriers.samples import random_tracking_number
from trackflow.contracts import QUERY_STATE
from trackflow.policy import ShipmentView
from trackflow.settings import Settings
from workers.runtime import connect

LIFECYCLE_TIMERS = {"pickup_gap_alert", "stale_check_in", "declare_lost"}
DEMO_SHIPMENTS = 11  # seven API orders, a polled one, an EasyPost one, a split Shopify order


def _due_in(view: dict[str, Any]) -> timedelta:
    return datetime.fromisoformat(view["next_action"]["due_at"]) - datetime.now(UTC)


async def test_a_shipment_registered_while_the_demo_runs_stays_on_real_time(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    ports = up_ports()
    command = [*up_command(data_dir, ports), "--demo", "--simulator-port", str(free_port())]
    with (tmp_path / "up.log").open("w") as log:
        process = subprocess.Popen(
            command, env=clean_env(), stdout=log, stderr=subprocess.STDOUT, text=True
        )
    try:
        token = wait_until_healthy(ports["api"], data_dir, process)
        number = random_tracking_number("ups")
        shipment = {
            "order_id": "merchant-1",
            "tracking_number": number,
            "carrier": "ups",
            "customer": {"email": "ada@example.com", "timezone": zone_at_local_hour(12)},
            "order_value": 20,
        }
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{ports['api']}", headers=headers
        ) as http:

            async def own_view() -> dict[str, Any]:
                body: dict[str, Any] = (await http.get(f"/v1/shipments/{number}")).json()
                return body

            assert (await http.post("/v1/shipments", json=shipment)).status_code == 202
            view = await eventually(
                own_view, lambda v: v.get("next_action", {}).get("due_at"), what="next action"
            )
            assert view["next_action"]["kind"] == "pickup_gap_alert"
            assert timedelta(hours=47) < _due_in(view) <= timedelta(hours=48)

            event = {
                "tracking_number": number,
                "status": "in_transit",
                "occurred_at": datetime.now(UTC).isoformat(),
            }
            assert (await http.post("/v1/events", json=event)).status_code == 202
            view = await eventually(
                own_view,
                lambda v: v["next_action"]["kind"] == "stale_check_in",
                what="stale check-in armed by the first scan",
            )
            assert timedelta(hours=71) < _due_in(view) <= timedelta(hours=72)

        client = await connect(
            Settings(temporal_address=f"127.0.0.1:{ports['temporal']}", data_dir=data_dir)
        )

        async def demo_shipments() -> list[str]:
            query = 'WorkflowType = "ShipmentTrackingWorkflow"'
            ids = [w.id async for w in client.list_workflows(query)]
            return [i for i in ids if i != f"shipment-{number}"]

        ids = await eventually(
            demo_shipments, lambda ids: len(ids) >= DEMO_SHIPMENTS, what="the demo's shipments"
        )
        views = [
            await client.get_workflow_handle(i).query(QUERY_STATE, result_type=ShipmentView)
            for i in ids
        ]
        mine = await client.get_workflow_handle(f"shipment-{number}").query(
            QUERY_STATE, result_type=ShipmentView
        )
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)

    assert process.returncode == 0, (tmp_path / "up.log").read_text()
    assert mine.time_scale is None
    assert {v.time_scale for v in views} == {10_000}
    timers = [v.next_action for v in views if v.next_action.kind in LIFECYCLE_TIMERS]
    assert timers, [v.next_action for v in views]
    now = datetime.now(UTC)
    for action in timers:  # the demo's lost parcel is declared lost 86.4 s after its last scan
        assert action.due_at is not None and action.due_at - now < timedelta(minutes=2), action
