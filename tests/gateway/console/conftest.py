"""Shared fixtures for console tests in a real headless Chromium driven by playwright.

- `served`: a full gateway service (managed mosquitto, SQLite, recorder) in tmp_path with its
  HTTP app served by uvicorn on a free loopback port; yields (base URL, service).
- `chromium`: a factory of playwright browsers on Debian's /usr/bin/chromium (playwright's own
  browser downloads are never used); `fake_audio=` a WAV file the fake microphone plays (in a
  loop). Each call gives a new browser; all are closed at the end.
- `sign_in(page, base, name, password)`: through the login form, as a person would.

The console's CSP forbids eval: give `page.wait_for_function` a function (`"() => …"`), not a
bare expression, which playwright would eval inside the page.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.service import GatewayService, ServiceConfig
from tests.gateway.http_server import serving

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None  # type: ignore[assignment]

#: whether browser tests can run here (mark them `pytest.mark.skipif(not BROWSER_READY, ...)`)
BROWSER_READY = CHROMIUM is not None and sync_playwright is not None

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]  # fmt: skip

BrowserFactory = Callable[..., "Browser"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, GatewayService]]:
    service = GatewayService(ServiceConfig(data_dir=tmp_path / "data", device_poll_s=0.2))
    with serving(service) as app:
        yield app.url, service


@pytest.fixture
def chromium() -> Iterator[BrowserFactory]:
    assert CHROMIUM is not None and sync_playwright is not None
    with sync_playwright() as playwright:
        opened: list[Any] = []

        def launch(fake_audio: Path | None = None) -> Browser:
            flags = list(CHROMIUM_FLAGS)
            if fake_audio is not None:
                flags.append(f"--use-file-for-fake-audio-capture={fake_audio}")
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=flags
            )
            opened.append(browser)
            return browser

        try:
            yield launch
        finally:
            for browser in opened:
                browser.close()


def sign_in(page: Page, base: str, name: str, password: str) -> None:
    """Through the login form; returns once the console has loaded."""
    page.goto(f"{base}/login")
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("#submit")
    page.wait_for_url(f"{base}/")
    page.wait_for_load_state("load")


def wait_for_device(service: GatewayService, device: str, timeout: float = 10.0) -> None:
    """Until the running gateway's directory knows `device` (it polls the registry)."""
    ready = threading.Event()
    for _ in range(int(timeout / 0.05)):
        runner = service.runner
        if runner is not None and runner.control.directory.get(device) is not None:
            return
        ready.wait(0.05)
    raise AssertionError(f"the gateway did not pick up {device} within {timeout} s")
