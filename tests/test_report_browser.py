"""The merchant's report in a real browser (issue 12): Debian's chromium, headless and offline
but for this machine, loads `GET /v1/metrics/report` (bearer token sent by the browser) from the
API serving a ledger seeded with a few simulated weeks (`starters.demo_history`, as `up --demo`
does), at a phone's and a desktop's width; checks what a merchant sees (the headline, the
sections, the charts drawn) and that the page never scrolls sideways, and saves a screenshot of
each (CI keeps `$TRACKFLOW_SCREENSHOTS_DIR`, default `.artifacts/screenshots/`; the README's
docs/report.png is a copy of the desktop one)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from temporalio.client import Client

from starters.api import create_app
from starters.demo_history import seed_history
from starters.report import load_summary
from storage import open_ledger
from tests.browser import offline_chromium, serving_app
from tests.factories import ANY_TIME_POLICY
from tests.test_tracking_page_browser import WIDTHS, _full_page_screenshot, screenshots_dir
from trackflow.insight import Summary, period
from trackflow.settings import Settings

TOKEN = "browser-report-token"
SECTIONS = [
    "WISMO tickets per 100 shipments, by week",
    "Messages, by trigger and channel",
    "Carrier event → message sent",
    "Carriers",
]


async def _no_temporal() -> Client:
    raise AssertionError("the report never asks Temporal")


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, api_token=TOKEN, store_name="Acme Goods")


@pytest.fixture
async def summary(tmp_path: Path) -> Summary:
    """A few simulated weeks in the ledger (as the demo seeds them), and their figures."""
    settings = _settings(tmp_path)
    ledger = open_ledger(settings.resolved_ledger_url)
    now = datetime.now(UTC)
    try:
        assert await seed_history(
            ledger, now, merchant="Acme Goods", weeks=8, shadow_weeks=2, per_week=15
        )
        return await load_summary(ledger, "Acme Goods", period(None, None, now.date()), now)
    finally:
        await ledger.close()


@pytest.fixture
def api_url(tmp_path: Path, summary: Summary) -> Iterator[str]:
    """The API on a free port (Temporal unreachable: the report does not need it)."""
    app = create_app(_settings(tmp_path), _no_temporal, ANY_TIME_POLICY)
    with serving_app(app) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with offline_chromium("1280,900") as driver:
        yield driver


def test_the_report_reads_right_on_a_desktop_and_a_phone(
    api_url: str, summary: Summary, browser: WebDriver
) -> None:
    folder = screenshots_dir()
    browser.execute_cdp_cmd("Network.enable", {})
    browser.get(api_url + "/v1/metrics/report")  # the browser sends no token: refused
    assert "missing or wrong bearer token" in browser.find_element(By.TAG_NAME, "body").text
    browser.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Bearer {TOKEN}"}}
    )
    for size, (width, height) in reversed(WIDTHS.items()):  # desktop first
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": size == "phone"},
        )
        browser.get(api_url + "/v1/metrics/report")
        text = browser.find_element(By.TAG_NAME, "body").text
        assert text.startswith("Acme Goods: what proactive tracking did"), (size, text)
        headline = browser.find_element(By.ID, "headline")
        assert headline.text == summary.wismo.headline, size
        assert headline.text.startswith("WISMO tickets per 100 shipments: ") and "→" in text
        titles = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
        assert titles == SECTIONS, (size, titles)
        for carrier in {c.carrier for c in summary.carriers}:
            assert carrier in text, (size, carrier)
        # The charts: the weekly WISMO bars first, drawn at the page's width, with a bar a week.
        charts = browser.find_elements(By.TAG_NAME, "svg")
        assert len(charts) == 2 + len(summary.carriers), size
        wismo = charts[0]
        assert wismo.get_attribute("aria-label") == "WISMO tickets per 100 shipments by week"
        column = min(width, 960) - 2 * 24  # the page's column: max-width less its padding
        assert wismo.size["width"] >= column - 1 and wismo.size["height"] > 100, wismo.size
        drawn = [r for r in wismo.find_elements(By.TAG_NAME, "rect") if r.size["height"] > 0]
        assert len(drawn) >= len([w for w in summary.wismo.weeks if w.per_100]), size
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth > window.innerWidth"
        )
        assert not overflow, (size, "wider than the screen")
        _full_page_screenshot(browser, folder / f"report-{size}.png")
        if size == "desktop":
            _column_top_screenshot(browser, folder / "report-desktop-top.png")


def _column_top_screenshot(browser: WebDriver, path: Path) -> None:
    """The README's: the page's column, from the title to the end of the weekly table."""
    column = browser.execute_script("return document.body.getBoundingClientRect().toJSON()")
    end = browser.find_elements(By.TAG_NAME, "h2")[1].location["y"] - 8
    clip = {"x": column["x"], "y": 0, "width": column["width"], "height": end, "scale": 1}
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    assert 10_000 < path.stat().st_size < 150_000  # small enough for the repository
