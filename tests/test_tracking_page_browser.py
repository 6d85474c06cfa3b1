"""The shopper's tracking page in a real browser (issue 12): Debian's chromium, headless and
offline but for this machine, loads `/t/<token>` for shipments in several states at a phone's
and a desktop's width, checks what a shopper sees, and saves a screenshot of each (CI keeps
`$TRACKFLOW_SCREENSHOTS_DIR`, default `.artifacts/screenshots/`, as artifacts; the README's
are copies in docs/)."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from temporalio.client import Client

from starters.api import create_app
from storage import open_ledger
from tests.browser import offline_chromium, serving_app
from tests.factories import ANY_TIME_POLICY
from tests.test_tracking_page import STATES, WRITTEN_AT, row_for
from trackflow.page_token import page_key, page_token
from trackflow.settings import Settings

REPO = Path(__file__).resolve().parent.parent
WIDTHS = {"phone": (390, 844), "desktop": (1280, 900)}
# What each state must say (besides the greeting), as the shopper reads it.
EXPECTED = {
    "in_transit": ["On its way", "Estimated delivery", "Tuesday, November 24", "Louisville, KY"],
    "out_for_delivery": ["Out for delivery", "Today, Tuesday, November 24", "Chicago, IL"],
    "delivered": ["Delivered", "Sunday, November 22, 4:00 AM CST"],
    "weather_delay": [
        "Delayed by weather",
        "Thursday, November 26",
        "What happens next",
        "Memphis, TN",
    ],
    "lost": ["Lost in transit", "can't locate your package", "Choose a replacement or a refund"],
}


def screenshots_dir() -> Path:
    folder = Path(os.environ.get("TRACKFLOW_SCREENSHOTS_DIR") or REPO / ".artifacts/screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def _no_temporal() -> Client:
    raise AssertionError("the tracking page never asks Temporal")


@pytest.fixture
async def pages(tmp_path: Path) -> dict[str, str]:
    """Each state's page path, from rows in the read model as the workflow writes them."""
    settings = _settings(tmp_path)
    key = page_key(settings)
    assert key is not None
    ledger = open_ledger(settings.resolved_ledger_url)
    paths = {}
    try:
        for name in STATES:
            row = row_for(name)
            token = page_token(key, row.shipment_key)
            await ledger.save_projection(row, token)
            paths[name] = f"/t/{token}"
    finally:
        await ledger.close()
    return paths


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        unsubscribe_secret="browser-page-secret",
        store_name="Acme Goods",
        brand_color="#7c3aed",
        support_phone="+1 502 555 0100",
        support_url="https://acme.test/help",
        return_url="https://acme.test/returns",
        resolution_url="https://acme.test/make-it-right",
    )


@pytest.fixture
def page_url(tmp_path: Path, pages: dict[str, str]) -> Iterator[str]:
    """The API on a free port (Temporal unreachable: the page does not need it)."""
    app = create_app(_settings(tmp_path), _no_temporal, ANY_TIME_POLICY, clock=lambda: WRITTEN_AT)
    with serving_app(app) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with offline_chromium("390,844") as driver:
        yield driver


def test_the_tracking_page_reads_right_on_a_phone_and_a_desktop(
    page_url: str, pages: dict[str, str], browser: WebDriver
) -> None:
    folder = screenshots_dir()
    for size, (width, height) in WIDTHS.items():
        # The viewport itself (a window's size includes the browser's own bars), and on the
        # phone a mobile one (overlay scroll bars, device-width).
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": size == "phone"},
        )
        for name, path in pages.items():
            browser.get(page_url + path)
            text = browser.find_element(By.TAG_NAME, "body").text
            assert text.startswith("Acme Goods\nHi Ada,"), (size, name, text)
            for words in EXPECTED[name]:  # labels are upper-cased by the style sheet
                assert words.lower() in text.lower(), (size, name, words, text)
            assert "@" not in text and "Lovelace" not in text  # no email, first name only
            assert "Track on UPS's website" in text and "Start a return" in text
            assert "+1 502 555 0100" in text
            viewport = browser.execute_script("return window.innerWidth")
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth > window.innerWidth"
            )
            assert not overflow, (size, name, "wider than the screen")
            steps = browser.find_elements(By.CSS_SELECTOR, "#progress li")
            assert [s.text.split("\n")[0] for s in steps] == [
                "Label created", "In transit", "Out for delivery", "Delivered"
            ]  # fmt: skip
            tops = {step.location["y"] for step in steps}
            if size == "phone":
                assert viewport == width and len(tops) == 4  # the steps one under another
            else:
                assert viewport > 768 and len(tops) == 1  # side by side
            _full_page_screenshot(browser, folder / f"tracking-{name}-{size}.png")
    browser.get(page_url + "/t/not-a-real-token-at-all")
    assert "not found" in browser.find_element(By.TAG_NAME, "body").text


def _full_page_screenshot(browser: WebDriver, path: Path) -> None:
    """The whole page, not only what fits the screen."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    width = browser.execute_script("return window.innerWidth")
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 10_000
