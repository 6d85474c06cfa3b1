"""Debian's chromium, headless, offline but for this machine: the project's browser checks."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

from tests.harness import free_port


@contextmanager
def offline_chromium(window_size: str = "1280,1400") -> Iterator[WebDriver]:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.fail(
            "Debian's chromium and chromedriver are needed: `make browser` installs them "
            "(as root: apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        f"--window-size={window_size}",
        # Offline but for this machine: no name resolves, and anything not on the loopback
        # goes to a proxy that is not there (chromium never proxies the loopback).
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--proxy-server=http://127.0.0.1:{free_port()}",
    ):
        options.add_argument(argument)
    # Paths given: selenium does not run Selenium Manager (which would download a driver).
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def serving_app(app: Any) -> Iterator[str]:
    """An ASGI app on a free loopback port for the browser; its URL."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    port = free_port()
    # Listening before the server runs: the browser's first request waits in the backlog.
    listener = socket.create_server(("127.0.0.1", port))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()
