"""`/docs` in a real browser with no network but this machine (issue 8): Debian's chromium,
driven by chromedriver (`make test` installs both: see the Makefile's `browser` target).

FastAPI's default page loads Swagger UI from a CDN, so offline it stayed blank; and without a
declared security scheme it had no Authorize button.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.wait import WebDriverWait
from temporalio.client import Client

from starters.api import create_app
from tests.browser import offline_chromium, serving_app
from tests.factories import ANY_TIME_POLICY
from trackflow.settings import Settings

TOKEN = "browser-test-token"
WAIT_S = 30
CDN_CSS = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"


async def _no_temporal() -> Client:
    raise RuntimeError("no Temporal server in this test")


@pytest.fixture
def api_url(tmp_path: Path) -> Iterator[str]:
    """The API on a free port, Temporal unreachable (the docs do not need it)."""
    settings = Settings(api_token=TOKEN, data_dir=tmp_path)
    app = create_app(settings, _no_temporal, ANY_TIME_POLICY)
    with serving_app(app) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with offline_chromium() as driver:
        yield driver


def _visible(driver: WebDriver, css: str) -> WebElement:
    element: WebElement = WebDriverWait(driver, WAIT_S).until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, css)), f"{css} never shown"
    )
    return element


def test_docs_render_offline_and_authorize_asks_for_the_bearer_token(
    api_url: str, browser: WebDriver, tmp_path: Path
) -> None:
    browser.get(f"{api_url}/docs")
    assert _fetch_fails(browser, CDN_CSS), "the browser reached the internet: nothing proven"

    title = _visible(browser, "#swagger-ui .info .title")
    assert title.text.startswith("trackflow")
    assert browser.find_elements(By.CSS_SELECTOR, ".opblock-tag")  # the routes, grouped
    authorize = WebDriverWait(browser, WAIT_S).until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, "button.authorize")), "no Authorize"
    )
    browser.save_screenshot(str(tmp_path / "docs.png"))

    authorize.click()
    form = _visible(browser, ".modal-ux .auth-container")
    assert "bearerAuth" in form.text
    assert "http, Bearer" in form.text
    token_input = form.find_element(By.CSS_SELECTOR, "input")
    browser.save_screenshot(str(tmp_path / "authorize.png"))

    token_input.send_keys(TOKEN)
    form.find_element(By.CSS_SELECTOR, "button.authorize").click()
    _visible(browser, ".modal-ux button[aria-label='Remove authorization']")  # "Logout"
    browser.find_element(By.CSS_SELECTOR, ".modal-ux button.btn-done").click()

    # Try it out: the token goes with the request (Temporal is down: 503, not 401).
    operation = _visible(
        browser, "#operations-default-get_shipment_v1_shipments__tracking_number__get"
    )
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    _visible(browser, f"#{operation.get_attribute('id')} .try-out__btn").click()
    _visible(browser, "input[placeholder='tracking_number']").send_keys("1Z999AA10123456784")
    _visible(browser, f"#{operation.get_attribute('id')} .execute").click()
    status = _visible(browser, ".live-responses-table .response .response-col_status")
    assert status.text.startswith("503"), status.text
    body = _visible(browser, ".live-responses-table .response .microlight")
    assert "Temporal is unreachable" in body.text
    browser.save_screenshot(str(tmp_path / "try-it-out.png"))


def _fetch_fails(driver: WebDriver, url: str) -> bool:
    try:
        outcome = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0], {mode: 'no-cors'}).then(() => done('ok'), () => done('failed'));",
            url,
        )
    except WebDriverException:  # a script time-out: no answer either
        return True
    return bool(outcome == "failed")
