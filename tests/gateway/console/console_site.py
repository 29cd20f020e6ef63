"""Fixtures of the console UI tests (import them into a test module): a gateway as `xixin up`
serves it (managed mosquitto, SQLite, tracking, the API and console over HTTP on loopback)
with real terminals reporting, shared by a module's tests, and pages signed in through the
login form in the system's headless Chromium (conftest.py's `chromium`, driven by Playwright;
never a downloaded browser).

Screenshots go to tests/artifacts/console/ (git-ignored); their paths are printed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devices.client import TerminalClient
from gateway.floor import FloorConfig
from gateway.service import GatewayService, ServiceConfig
from tests.gateway.console.conftest import BROWSER_READY, BrowserFactory, sign_in
from tests.gateway.http_server import serving

pytestmark = pytest.mark.skipif(not BROWSER_READY, reason="chromium or playwright missing")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "console"

#: (id, unit, role, name); the grid dispatcher's scope is grid-01, T003 is outside it.
DEVICES = [
    ("T001", "grid-01", "officer", "民警 陈"),
    ("T002", "grid-01", "officer", "辅警 王"),
    ("T003", "grid-02", "officer", "民警 李"),
]


@dataclass
class Site:
    """The running gateway: its URL, service, connected terminals and the accounts."""

    url: str
    service: GatewayService
    terminals: dict[str, TerminalClient] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)

    def wait_for(self, check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            assert time.monotonic() < deadline, f"not in time: {what}"
            threading.Event().wait(0.05)

    def beacon(self, device: str, lon: float, lat: float, battery: int) -> None:
        self.beacon_at(device, lon, lat, battery, time.time())

    def beacon_at(self, device: str, lon: float, lat: float, battery: int, at: float) -> None:
        """A position report from `device` with its fix taken at `at` (Unix seconds)."""
        payload = {"v": 1, "ts": int(at * 1000), "lat": lat, "lon": lon, "acc": 5.0,
                   "bat": battery}  # fmt: skip
        self.terminals[device].publish_raw(
            f"xixin/v1/dev/{device}/gps", json.dumps(payload).encode(), qos=1
        )


def _connect(site: Site, device: str, secret: str) -> TerminalClient:
    service = site.service
    assert service.broker is not None
    site.wait_for(
        lambda: service.runner and service.runner.control.directory.get(device),
        f"{device} in the gateway's directory",
    )
    terminal = TerminalClient(device, secret, service.broker.host, service.broker.port)
    terminal.connect()
    return terminal


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One gateway per test module: T001 and T002 report positions in grid-01 (T002 holds
    the floor of grid-01), T003 reports in grid-02."""
    # A floor held without audio for the whole module (as `xixin up --max-burst 10m` would).
    floor = FloorConfig(max_burst_s=600.0, end_of_media_s=600.0)
    data_dir = tmp_path_factory.mktemp("console-gw")
    service = GatewayService(ServiceConfig(data_dir=data_dir, floor=floor))
    with serving(service) as app:
        site = Site(app.url, service)
        try:
            secrets = {}
            for device, unit, role, name in DEVICES:
                _, secrets[device] = service.registry.add(device, unit, role, name)
            for device, unit, _, _ in DEVICES:
                terminal = site.terminals[device] = _connect(site, device, secrets[device])
                terminal.affiliate([unit])
            for (device, unit, _, _), battery in zip(DEVICES, (87, 64, 50), strict=True):
                lon, lat = service.org.grids[unit].centre
                site.beacon(device, lon + 0.001 * int(device[-1]), lat, battery)
            assert site.terminals["T002"].request_floor(tg="grid-01")["type"] == "floor_granted"
            tracking = service.tracking
            assert tracking is not None
            site.wait_for(
                lambda: sum(1 for d in tracking.live() if d["position"]) == len(DEVICES),
                "every terminal's position live",
            )
            _, site.passwords["grid01"] = service.accounts.add("grid01", "grid:grid-01")
            _, site.passwords["centre"] = service.accounts.add("centre", "centre")
            yield site
        finally:
            for terminal in site.terminals.values():
                terminal.disconnect()


OpenConsole = Callable[..., Any]


@pytest.fixture
def open_console(site: Site, chromium: BrowserFactory) -> Iterator[OpenConsole]:
    """open_console(account="grid01", width=1280): a new browser context signed in through
    the login form, on the console with its map and tables drawn. Console errors are kept on
    the page as `page.errors`."""
    browser = chromium()
    contexts: list[Any] = []

    def open_(account: str = "grid01", width: int = 1280, height: int = 900) -> Any:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        sign_in(page, site.url, account, site.passwords[account])
        page.wait_for_selector("body[data-ready='1']")
        page.wait_for_selector(".leaflet-overlay-pane path")
        return page

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
