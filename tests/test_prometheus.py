"""`GET /metrics` (Prometheus text format): the in-process counters move with the requests the
API answers, and the ledger figures with what the worker (or anyone) wrote to the ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from starters.api import create_app
from starters.api.metrics import (
    LATENCY_BUCKETS,
    MAX_LABEL,
    EventMark,
    classify,
    figures,
    read_figures,
    source_of,
)
from storage import (
    LatencyHistogram,
    Ledger,
    LedgerRecord,
    LedgerTotals,
    MessageCount,
    open_ledger,
)
from tests.api_support import (
    TOKEN,
    api_client,
    api_settings,
    event_body,
    fulfillment,
    shipment_body,
    shopify_signature,
    tracking_number,
)
from tests.factories import ANY_TIME_POLICY
from tests.harness import eventually, outbox, running_worker

METRICS_TOKEN = "metrics-token"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(api: httpx.AsyncClient, token: str = METRICS_TOKEN) -> Samples:
    response = await api.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parsed(response.text)


def parsed(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def _post_shopify(
    api: httpx.AsyncClient, body: bytes, signature: str, topic: str
) -> httpx.Response:
    headers = {
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": signature,
        "X-Shopify-Webhook-Id": f"wh-{tracking_number()}",
        "Content-Type": "application/json",
    }
    return await api.post("/webhooks/shopify", content=body, headers=headers)


async def _ledger_rows(data_dir: Path, number: str) -> None:
    """An alert and a message the provider refused, written as the worker would."""
    ledger = open_ledger(str(data_dir / "ledger.sqlite3"))
    now = datetime.now(UTC)
    try:
        await ledger.record_once(
            LedgerRecord(
                idempotency_key=f"alert-{number}",
                kind="alert",
                tracking_number=number,
                order_id="1001",
                trigger="lost",
                channel="alert",
                to="ops",
                body="lost",
                transport="ledger",
                sent_at=now,
            )
        )
        draft = LedgerRecord(
            idempotency_key=f"refused-{number}",
            tracking_number=number,
            order_id="1001",
            trigger="delivered",
            channel="sms",
            to="+15025550123",
            body="Delivered",
            transport="twilio",
            sent_at=now,
        )
        await ledger.claim(draft.idempotency_key, "test", timedelta(minutes=1), draft=draft)
        assert await ledger.record_failed(draft.idempotency_key, "21610", "unsubscribed")
    finally:
        await ledger.close()


async def test_the_counters_and_ledger_figures_move(
    client: Client, temporal_address: str, task_queue: str, tmp_path: Path
) -> None:
    settings = api_settings(temporal_address, task_queue, tmp_path, metrics_token=METRICS_TOKEN)
    number = tracking_number()
    async with api_client(settings) as api:
        refused = await api.get("/metrics")  # the API's token is not the metrics token
        assert refused.status_code == 401
        before = await scrape(api)
        async with running_worker(client, task_queue, tmp_path):
            registered = await api.post("/v1/shipments", json=shipment_body(number))
            assert registered.status_code == 202, registered.text
            again = await api.post("/v1/shipments", json=shipment_body(number))
            assert again.json()["outcome"] == "already_registered"
            for status, extra in (
                ("label_created", {}),
                ("exception", {"exception": "carrier_delay", "event_id": "evt-delay"}),
            ):
                answer = await api.post("/v1/events", json=event_body(number, status, **extra))
                assert answer.status_code == 202, answer.text
            await eventually(
                lambda: outbox(tmp_path, number),
                lambda records: {r.trigger for r in records} >= {"label_created", "exception"},
                what="the label and exception messages",
            )
            await eventually(
                lambda: scrape(api),
                lambda now: value(now, "trackflow_open_problem_shipments") == 1,
                what="the shipment's read-model row in exception",
            )
        body = json.dumps(fulfillment(tracking_number())).encode()
        forged = await _post_shopify(api, body, "forged", "fulfillments/create")
        assert forged.status_code == 401
        ignored = await _post_shopify(api, body, shopify_signature(body), "orders/create")
        assert ignored.status_code == 200 and "ignored" in ignored.json()
        await _ledger_rows(tmp_path, number)
        after = await scrape(api)

    events = "trackflow_events_received_total"
    assert moved(before, after, events, source="api", outcome="accepted", reason="") == 3
    assert moved(before, after, events, source="api", outcome="duplicate", reason="") == 1
    assert moved(before, after, events, source="shopify", outcome="ignored", reason="") == 1
    shopify_forged = {"source": "shopify", "outcome": "rejected", "reason": "signature"}
    assert moved(before, after, events, **shopify_forged) == 1
    assert moved(before, after, "trackflow_signature_failures_total", source="shopify") == 1

    messages = "trackflow_messages"
    for trigger in ("label_created", "exception"):
        for channel in ("email", "sms"):
            sent = {"trigger": trigger, "channel": channel, "status": "sent"}
            assert moved(before, after, messages, **sent) == 1, (trigger, channel)
    refused_sms = {"trigger": "delivered", "channel": "sms", "status": "failed"}
    assert moved(before, after, messages, **refused_sms) == 1
    errors = "trackflow_provider_errors_total"
    assert moved(before, after, errors, transport="twilio", code="21610") == 1
    assert moved(before, after, "trackflow_alerts_raised_total", kind="lost") == 1
    assert moved(before, after, "trackflow_open_problem_shipments") == 1
    latency = "trackflow_send_latency_seconds_count"
    assert moved(before, after, latency, channel="email") == 2
    assert moved(before, after, latency, channel="sms") == 2
    assert value(after, "trackflow_ledger_scrape_ok") == 1


def test_statuses_are_classed_and_sources_named() -> None:
    plain, forged = EventMark(), EventMark(signature_failed=True)
    assert classify(202, plain) == ("accepted", "")
    assert classify(200, EventMark(outcome="duplicate")) == ("duplicate", "")
    assert classify(401, forged) == ("rejected", "signature")
    assert classify(404, forged) == ("rejected", "signature")  # ShipEngine's missing headers
    assert classify(401, plain) == ("rejected", "unauthorized")
    assert classify(422, plain) == ("rejected", "invalid")
    assert classify(418, plain) == ("rejected", "client_error")
    assert classify(503, plain) == ("failed", "unavailable")
    assert classify(500, plain) == ("failed", "server_error")
    assert source_of("/webhooks/twilio/status") == "twilio"
    assert source_of("/webhooks/shopify") == "shopify"
    assert source_of("/v1/shipments/{tracking_number}/return-requests") == "api"


async def _message(
    ledger: Ledger, key: str, status: str, sent_after: timedelta, **changes: str
) -> None:
    """A message the policy decided at 22:00, then sent (or refused, or suppressed)."""
    decided = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)
    fields: dict[str, object] = {
        "idempotency_key": key,
        "tracking_number": "1Z999",
        "order_id": "1001",
        "trigger": "in_transit",
        "channel": "email",
        "to": "ana@example.com",
        "body": "On its way",
        "transport": "sendgrid",
        "sent_at": decided + sent_after,
        "decided_at": decided,
    }
    draft = LedgerRecord.model_validate(fields | changes)
    assert (await ledger.claim(key, "test", timedelta(minutes=1), draft=draft)).ours
    if status == "sent":
        assert await ledger.record_sent(key, "test", draft)
    elif status == "failed":
        assert await ledger.record_failed(key, "400", "bad address", at=draft.sent_at)
    else:
        assert await ledger.mark_suppressed(key, "unsubscribed")


async def test_send_latency_reaches_hours_and_only_sent_messages_count(tmp_path: Path) -> None:
    """A message held overnight by quiet hours lands in an hours bucket, not in +Inf; rows
    not sent, and alerts, are no latency (read through the ledger's SQL aggregates)."""
    ledger = open_ledger(str(tmp_path / "ledger.sqlite3"))
    try:
        await _message(ledger, "quick", "sent", timedelta(seconds=3))
        await _message(ledger, "held", "sent", timedelta(hours=9))  # held by quiet hours
        await _message(ledger, "refused", "failed", timedelta(seconds=1))
        await _message(ledger, "opted-out", "suppressed", timedelta(0))
        alert = LedgerRecord(
            idempotency_key="alert",
            kind="alert",
            tracking_number="1Z999",
            order_id="1001",
            trigger="pickup_gap",
            channel="alert",
            to="ops",
            body="no pickup",
            transport="ledger",
            sent_at=datetime(2026, 11, 20, 22, 0, 2, tzinfo=UTC),
        )
        await ledger.record_once(alert)
        found = await read_figures(ledger)
    finally:
        await ledger.close()
    email = found.latency["email"]
    assert email.cumulative[LATENCY_BUCKETS.index(1)] == 0
    assert email.cumulative[LATENCY_BUCKETS.index(5)] == 1
    assert email.cumulative[LATENCY_BUCKETS.index(28800)] == 1
    assert email.cumulative[LATENCY_BUCKETS.index(43200)] == 2
    assert email.count == 2 and found.latency.keys() == {"email"}
    assert email.sum == 3 + 9 * 3600
    assert found.messages == {
        ("in_transit", "email", "sent"): 2,
        ("in_transit", "email", "failed"): 1,
        ("in_transit", "email", "suppressed"): 1,
    }
    assert found.provider_errors == {("sendgrid", "400"): 1}
    assert found.alerts == {"pickup_gap": 1}
    assert found.open_problems == 0


def test_labels_are_cut_and_groups_they_merge_add_up() -> None:
    long = "x" * 100
    bounds = tuple(float(bound) for bound in LATENCY_BUCKETS)
    counts = tuple(
        MessageCount("message", trigger, "sms", "failed", "twilio", "21610", 2)
        for trigger in (long + "a", long + "b")
    )
    histograms = tuple(
        LatencyHistogram(channel, bounds, (1,) * len(bounds), 1, 0.5)
        for channel in (long + "a", long + "b")
    )
    found = figures(LedgerTotals(counts, histograms, 0, {None: 1}))
    cut = "x" * MAX_LABEL
    assert found.messages == {(cut, "sms", "failed"): 4}
    assert found.provider_errors == {("twilio", "21610"): 4}
    assert (found.latency[cut].count, found.latency[cut].sum) == (2, 1.0)
    assert found.latency[cut].cumulative == [2] * len(LATENCY_BUCKETS)
    assert found.alerts == {"": 1}


async def _unreachable() -> Client:
    raise RuntimeError("connection refused")


async def test_without_a_token_metrics_are_open_and_an_outage_counts_as_failed(
    tmp_path: Path,
) -> None:
    settings = api_settings("localhost:1", "unused", tmp_path)
    app = create_app(settings, _unreachable, ANY_TIME_POLICY)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://trackflow") as http:
        event = event_body(tracking_number(), "in_transit")
        answer = await http.post("/v1/events", json=event, headers={"Authorization": "Bearer x"})
        assert answer.status_code == 401
        answer = await http.post(
            "/v1/events", json=event, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert answer.status_code == 503
        response = await http.get("/metrics")  # no token asked for
        assert response.status_code == 200
    samples = parsed(response.text)
    events = "trackflow_events_received_total"
    assert value(samples, events, source="api", outcome="failed", reason="unavailable") == 1
    assert value(samples, events, source="api", outcome="rejected", reason="unauthorized") == 1
    assert value(samples, "trackflow_signature_failures_total", source="api") == 0
    assert value(samples, "trackflow_open_problem_shipments") == 0
