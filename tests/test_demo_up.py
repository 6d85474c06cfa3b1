"""`trackflow up --demo` as a user runs it: the demo's ops output comes from the real stack
(worker, API, Temporal) through the integrations' clients to the doubles over HTTP.

The demo waits for its lost parcel (ten days at its compressed clock, over a minute); a
policy file shortens the story's stale and lost thresholds so this test takes half that.
Everything else is the demo as `make up` plays it.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from starters.demo_history import is_history
from starters.embedded import free_port
from starters.simulators.klaviyo import DELAYED_LIST_ID
from storage import open_ledger
from tests.harness import clean_env, up_command, up_ports

DONE = "demo: done"
DEMO_DEADLINE_S = 180.0


def _wait_for(log: Path, text: str, process: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + DEMO_DEADLINE_S
    while time.monotonic() < deadline:
        output = log.read_text()
        if text in output:
            return output
        assert process.poll() is None, f"trackflow up exited early:\n{output}"
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not printed within {DEMO_DEADLINE_S}s:\n{log.read_text()}")


def _readme_requests() -> list[tuple[str, dict[str, Any]]]:
    """The README's curl examples for the API (`localhost:8000/v1/… -d '{…}'`): path, body."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    found = re.findall(r"localhost:8000(/v1/\S+)\s+-d '(\{.*?\})'", readme, re.DOTALL)
    return [(path, json.loads(body)) for path, body in found]


def _follow_the_readme(api_port: int, data_dir: Path) -> str:
    """Its curl examples, as a user tries them while the demo plays; its customer's email."""
    token = (data_dir / "api_token").read_text().strip()
    requests = _readme_requests()
    assert [path.rpartition("/")[2] for path, _ in requests] == [
        "shipments",
        "events",
        "return-requests",
    ]
    with httpx.Client(
        base_url=f"http://127.0.0.1:{api_port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ) as http:
        for path, body in requests:
            answer = http.post(path, json=body)
            assert answer.status_code == 202, (path, answer.text)
    [email] = [body["customer"]["email"] for _, body in requests if "customer" in body]
    return str(email)


def _ops_url(output: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith("  ops        ")]
    return line.split()[1]


def _get(url: str) -> Any:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, (url, response.text)
    return response.json()


async def test_the_demo_shows_a_slack_alert_tagged_tickets_and_klaviyo_in_the_doubles(
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.json"  # the lost-parcel story in ~30 s instead of ~80 s
    policy.write_text(json.dumps({"standard": {"stale_after": "PT24H", "lost_after": "P3D"}}))
    data_dir, log, ports = tmp_path / "data", tmp_path / "up.log", up_ports()
    command = [*up_command(data_dir, ports), "--demo", "--simulator-port", str(free_port())]
    env = clean_env() | {"TRACKFLOW_POLICY_FILE": str(policy), "COLUMNS": "100"}
    with log.open("w") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    try:
        _wait_for(log, "trackflow is up", process)
        # A user trying the README's examples meanwhile gets what it says, and the demo no
        # false "Not there" (the README's customer was once the demo's Ada).
        readme_email = _follow_the_readme(ports["api"], data_dir)
        output = _wait_for(log, DONE, process)
        ops = _ops_url(output)
        alerts = _get(f"{ops}/slack/_double/messages")
        gorgias = _get(f"{ops}/gorgias/_double/tickets")
        zendesk = _get(f"{ops}/zendesk/_double/tickets")
        events = _get(f"{ops}/klaviyo/_double/events")
        delayed = _get(f"{ops}/klaviyo/_double/lists/{DELAYED_LIST_ID}")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    output = log.read_text()
    assert process.returncode == 0, output
    shown = " ".join(output[output.index("demo: what the ops doubles received") :].split())

    # Slack: the lost parcel and the return, as Block Kit with the one-line text.
    titles = [alert["text"] for alert in alerts]
    assert any(t.startswith("Package lost: ") for t in titles), titles
    assert any(t.startswith("Return opened: ") for t in titles), titles
    assert all(alert["channel"] == "#ops" and alert["blocks"] for alert in alerts)
    assert f"[Slack] {len(alerts)} alerts in #ops: {ops}/slack/_double/messages" in shown
    # The helpdesks: the two customers who wrote in, each ticket tagged with a private note.
    writers = ["margaret@example.com", "rosalind@example.com"]
    assert [t["customer"]["email"] for t in gorgias] == writers
    assert [t["requester_email"] for t in zendesk] == writers
    for tickets, private in (
        (gorgias, [[m["body_text"] for m in t["messages"] if m["channel"] == "internal-note"]
                   for t in gorgias]),
        (zendesk, [[c["body"] for c in t["comments"] if not c["public"]] for t in zendesk]),
    ):  # fmt: skip
        assert [t["tags"] for t in tickets] == [
            ["auto_delay_notified"],
            ["auto_delay_notified", "lost_package"],
        ]
        assert all(
            notes and notes[-1].startswith("trackflow told the customer") for notes in private
        )
        assert "lost, by email" in private[1][-1]
    assert "[Gorgias] 2 of 2 tickets tagged, with a note" in shown
    assert "[Zendesk] 2 of 2 tickets tagged, with a note" in shown
    assert "[auto_delay_notified, lost_package] note: trackflow told the customer: lost" in shown
    # Klaviyo: the texts are its events (SMS in klaviyo delivery mode); the lost parcel's
    # customer is on the delayed list, the weather-delayed one joined and left.
    metrics = {event["metric"] for event in events}
    assert {"Trackflow In Transit", "Trackflow Delayed"} <= metrics, metrics
    assert all(set(event["profile"]) >= {"phone_number"} for event in events)
    # The README's customer, delayed too, may be there as well.
    assert [e for e in delayed["emails"] if e != readme_email] == ["rosalind@example.com"]
    assert f"[Klaviyo] {len(events)} events" in shown
    assert re.search(rf"[12] members? of the delayed list {DELAYED_LIST_ID}", shown), shown
    assert "Not there after" not in shown
    ledger = open_ledger(str(data_dir / "ledger.sqlite3"), read_only=True)
    try:
        rows = [
            (r.channel, r.transport)
            for r in await ledger.list()
            if r.kind == "message" and not is_history(r.tracking_number)  # the played orders
        ]
        changes = [r.trigger for r in await ledger.list() if r.kind == "klaviyo"]
    finally:
        await ledger.close()
    assert {transport for channel, transport in rows if channel == "sms"} == {"klaviyo"}
    assert {transport for channel, transport in rows if channel == "email"} == {"outbox"}
    assert "delayed_list_remove" in changes  # Margaret's delay ended: she left the list
