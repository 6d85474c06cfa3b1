"""The merchant's report end to end on a real ledger: `trackflow report` (self-contained HTML
and CSV), `trackflow baseline import`, `GET /v1/metrics/summary`, and the demo's seeded
history. The figures' arithmetic is tested by hand in test_insight.py."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from starters.cli import _parser
from starters.demo_history import seed_history
from starters.report import load_summary, render_csv, render_html
from storage import BaselineWeek, Ledger, LedgerRecord, TicketRecord, open_ledger
from tests.api_support import api_client, api_settings
from tests.harness import drop_ledger_tables
from trackflow.insight import Summary, period
from trackflow.settings import Settings

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
POSTGRES_DSN = os.environ.get(
    "TRACKFLOW_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


def _run(settings: Settings, *argv: str) -> int:
    """A CLI command as `main` runs it, without its os._exit."""
    args = _parser().parse_args(list(argv))
    code: int = args.run(args, settings)
    return code


async def _history(data_dir: Path) -> Ledger:
    ledger = open_ledger(str(data_dir / "ledger.sqlite3"))
    assert await seed_history(ledger, NOW, merchant="Acme", weeks=4, shadow_weeks=1, per_week=8)
    return ledger


async def _seeded(data_dir: Path) -> None:
    await (await _history(data_dir)).close()


async def _summary(data_dir: Path, start: str, end: str) -> Summary:
    ledger = open_ledger(str(data_dir / "ledger.sqlite3"), read_only=True)
    try:
        return await load_summary(ledger, "Acme", period(start, end, NOW.date()), NOW)
    finally:
        await ledger.close()


def test_the_report_is_one_self_contained_html_file_and_a_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sync: the CLI runs its own event loop."""
    asyncio.run(_seeded(tmp_path))
    out = tmp_path / "out" / "report.html"
    settings = Settings(data_dir=tmp_path)
    window = ("--from", "2026-10-19", "--to", "2026-11-20")
    assert _run(settings, "report", *window, "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("WISMO tickets per 100 shipments: ") and "report.csv" in printed

    page = out.read_text()
    assert page.count("<svg") >= 3 and "WISMO tickets per 100 shipments" in page
    # nothing fetched from elsewhere: no script, no link, no image or font URL
    assert not re.search(r"<script|<link|<img|<iframe|src=|href=|url\(|@import", page, re.I)
    assert "http" not in page.lower()
    assert "DEMOHIST" not in page and "@example.com" not in page  # figures, no rows

    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "report.csv").read_text())))
    assert set(rows[0]) == {"section", "group", "metric", "value"}
    sections = {row["section"] for row in rows}
    assert {"messages", "latency", "wismo_week", "wismo_baseline", "wismo_now", "carrier"} <= (
        sections
    )
    summary = asyncio.run(_summary(tmp_path, "2026-10-19", "2026-11-20"))
    now = {row["metric"]: row["value"] for row in rows if row["section"] == "wismo_now"}
    assert int(now["shipments"]) == summary.wismo.now_shipments > 0
    assert int(now["tickets"]) == summary.wismo.now_tickets
    assert summary.wismo.headline in page

    assert _run(settings, "report", "--from", "2026-11-20", "--to", "2026-11-01") == 2
    assert "is after to" in capsys.readouterr().err


def test_baseline_import_stores_the_weeks_or_names_the_bad_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=tmp_path)
    good = tmp_path / "tickets.csv"
    good.write_text("week_start,shipments,wismo_tickets\n2026-09-07,200,24\n2026-09-14,180,20\n")
    assert _run(settings, "baseline", "import", str(good)) == 0
    assert "imported 2 week(s)" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("week_start,shipments,wismo_tickets\n2026-09-21,100,9\n2026-09-29,100,x\n")
    assert _run(settings, "baseline", "import", str(bad)) == 2
    assert "line 3: week_start 2026-09-29 is a Tuesday" in capsys.readouterr().err
    assert _run(settings, "baseline", "import", str(tmp_path / "missing.csv")) == 2
    assert "missing.csv" in capsys.readouterr().err

    weeks = asyncio.run(_baseline(tmp_path))
    assert [(w.week_start, w.shipments, w.wismo_tickets) for w in weeks] == [
        (date(2026, 9, 7), 200, 24),
        (date(2026, 9, 14), 180, 20),
    ]  # the bad file imported nothing


async def _baseline(data_dir: Path) -> list[BaselineWeek]:
    ledger = open_ledger(str(data_dir / "ledger.sqlite3"), read_only=True)
    try:
        return await ledger.baseline()
    finally:
        await ledger.close()


async def test_the_summary_api_answers_the_figures_and_422_for_a_bad_period(
    tmp_path: Path,
) -> None:
    await _seeded(tmp_path)
    settings = api_settings("127.0.0.1:1", "unused", tmp_path)  # never asks Temporal
    async with api_client(settings) as http:
        answer = await http.get("/v1/metrics/summary?from=2026-10-19&to=2026-11-20")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["period"] == {"start": "2026-10-19", "end": "2026-11-20"}
        assert body["wismo"]["headline"].startswith("WISMO tickets per 100 shipments: ")
        assert body["wismo"]["baseline"]["source"] == "imported"
        assert body["messages"] and body["carriers"] and body["latency"]["messages"] > 0
        assert "transit_days" not in body["carriers"][0]  # the histogram and percentiles only
        for query, reason in (
            ("from=2026-11-20&to=2026-11-01", "is after to"),
            ("from=yesterday", "must be an ISO date"),
            ("from=2020-01-01&to=2026-01-01", "at most 731 days"),
        ):
            refused = await http.get(f"/v1/metrics/summary?{query}")
            assert refused.status_code == 422 and reason in refused.json()["detail"], query
        anonymous = await http.get("/v1/metrics/summary", headers={"Authorization": ""})
        assert anonymous.status_code == 401


async def test_the_report_api_answers_the_cli_s_html_page_and_its_csv(tmp_path: Path) -> None:
    await _seeded(tmp_path)
    settings = api_settings("127.0.0.1:1", "unused", tmp_path, store_name="Acme")
    window = "from=2026-10-19&to=2026-11-20"
    async with api_client(settings) as http:
        page = await http.get(f"/v1/metrics/report?{window}")
        sheet = await http.get(f"/v1/metrics/report.csv?{window}")
        refused = await http.get("/v1/metrics/report?from=2026-11-20&to=2026-11-01")
        anonymous = await http.get("/v1/metrics/report.csv", headers={"Authorization": ""})
    summary = await _summary(tmp_path, "2026-10-19", "2026-11-20")

    assert page.status_code == 200, page.text
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert summary.wismo.headline in page.text and page.text.count("<svg") >= 3
    # The page `trackflow report` writes, but for the minute it was generated.
    generated = re.compile(r"generated\n[0-9: -]+ UTC")
    assert generated.sub("", page.text) == generated.sub("", render_html(summary, "Acme"))

    assert sheet.status_code == 200, sheet.text
    assert sheet.headers["content-type"] == "text/csv; charset=utf-8"
    assert "trackflow-report-2026-10-19-2026-11-20.csv" in sheet.headers["content-disposition"]
    assert sheet.text == render_csv(summary)
    rows = list(csv.DictReader(io.StringIO(sheet.text)))
    now = {row["metric"]: row["value"] for row in rows if row["section"] == "wismo_now"}
    assert int(now["shipments"]) == summary.wismo.now_shipments > 0

    assert refused.status_code == 422 and "is after to" in refused.json()["detail"]
    assert anonymous.status_code == 401


async def test_the_demo_history_is_seeded_once_and_fills_every_part_of_the_report(
    tmp_path: Path,
) -> None:
    ledger = await _history(tmp_path)
    try:
        rows = len(await ledger.states())
        assert not await seed_history(ledger, NOW + timedelta(days=9), merchant="Acme")
        assert len(await ledger.states()) == rows
        summary = await load_summary(ledger, "Acme", period(None, None, NOW.date()), NOW)
    finally:
        await ledger.close()
    assert {m.trigger for m in summary.messages} == {"in_transit", "out_for_delivery", "delivered"}
    assert sum(m.shadow for m in summary.messages) > 0 < sum(m.sent for m in summary.messages)
    assert summary.latency.messages > 0 and summary.carriers
    assert summary.wismo.baseline.source == "imported" and len(summary.wismo.baseline.weeks) == 4
    assert [w.shadow for w in summary.wismo.weeks if w.shipments][:2] == [True, False]
    assert summary.wismo.now_shipments > 0 and "→" in summary.wismo.headline


@pytest.fixture(params=["sqlite", "postgres"])
async def any_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    if request.param == "sqlite":
        ledger = open_ledger(str(tmp_path / "ledger.sqlite3"))
        try:
            yield ledger
        finally:
            await ledger.close()
        return
    table = f"insight_test_{uuid.uuid4().hex[:12]}"
    ledger = open_ledger(POSTGRES_DSN, table=table)
    try:
        yield ledger
    finally:
        await ledger.close()
        await drop_ledger_tables(POSTGRES_DSN, table)


async def test_an_opt_out_on_the_suppression_list_counts_against_the_message_before_it(
    any_ledger: Ledger,
) -> None:
    ledger = any_ledger
    sent = NOW - timedelta(days=2)
    record = LedgerRecord(
        idempotency_key="1ZOPTOUT/1:delivered:1:sms",
        tracking_number="1ZOPTOUT",
        order_id="1",
        trigger="delivered",
        channel="sms",
        to="+15025550123",
        body="delivered",
        transport="twilio",
        sent_at=sent,
        decided_at=sent - timedelta(seconds=3),
    )
    await ledger.claim(record.idempotency_key, "me", timedelta(minutes=1), draft=record, now=sent)
    assert await ledger.record_sent(record.idempotency_key, "me", record)
    await ledger.suppress("Acme", "sms", "+1 502 555 0123", "sms_stop", sent + timedelta(hours=1))
    await ledger.suppress("Other shop", "sms", "+15025550199", "sms_stop", sent)
    await ledger.record_ticket(
        TicketRecord(
            helpdesk="zendesk",
            ticket_id="1",
            received_at=sent,
            intent="wismo",
            already_notified=False,
            language="en",
        )
    )
    summary = await load_summary(ledger, "Acme", period(None, None, NOW.date()), NOW)
    [figures] = summary.messages
    assert (figures.sent, figures.opted_out, summary.opt_outs_unattributed) == (1, 1, 0)
    assert (summary.latency.messages, summary.latency.p50_seconds) == (1, 3.0)
    assert sum(w.tickets for w in summary.wismo.weeks) == 1
