"""The web console in a real headless Chromium against a running gateway on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.client import TerminalClient
from gateway.service import GatewayService, ServiceConfig
from tests.gateway.browser import CHROMIUM, Browser
from tests.gateway.http_server import serving

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, GatewayService]]:
    service = GatewayService(ServiceConfig(data_dir=tmp_path))
    with serving(service) as app:
        yield app.url, service


@pytest.fixture
def browser() -> Iterator[Browser]:
    opened = Browser()
    try:
        yield opened
    finally:
        opened.close()


def test_console_shows_talkgroups_devices_and_the_talker(
    served: tuple[str, GatewayService], tmp_path: Path, browser: Browser
) -> None:
    url, service = served
    _, password = service.accounts.add("centre", "centre")
    _device, secret = service.registry.add("T001", "grid-01", "officer", "民警 陈")
    assert service.broker is not None
    deadline = threading.Event()
    terminal = TerminalClient("T001", secret, service.broker.host, service.broker.port)
    for _ in range(100):  # the service picks up the new device within its poll interval
        if service.runner and service.runner.control.directory.get("T001"):
            break
        deadline.wait(0.05)
    terminal.connect()
    try:
        terminal.affiliate(["grid-01"])
        assert terminal.request_floor(tg="grid-01")["type"] == "floor_granted"
        lon, lat = service.org.grids["grid-01"].centre
        beacon = {"v": 1, "ts": int(time.time() * 1000), "lat": lat, "lon": lon, "acc": 5.0}
        terminal.publish_raw("xixin/v1/dev/T001/gps", json.dumps(beacon).encode(), qos=1)
        for _ in range(100):  # stored and live within the ingest batch interval
            if service.tracking and any(d["position"] for d in service.tracking.live()):
                break
            deadline.wait(0.05)
        browser.sign_in(url, "centre", password)
        browser.wait("document.querySelector('.officer[data-device=\"T001\"]') !== null")
        browser.wait("document.querySelector('tr[data-tg=\"grid-01\"].taken') !== null")
        assert browser.eval("document.cookie") == ""  # the session cookie is HttpOnly
        dom = browser.dom()
        assert 'data-tg="grid-01"' in dom and 'data-tg="all"' in dom
        grid_row = dom.split('data-tg="grid-01"', 1)[1].split("</tr>", 1)[0]
        assert 'class="taken"' in grid_row.split(">", 1)[0] and ">民警 陈 (T001)</td>" in grid_row
        assert 'data-device="T001"' in dom
        device_tag = dom.split('<tr data-device="T001"', 1)[1].split(">", 1)[0]
        assert 'class="online"' in device_tag
        grids = browser.eval(
            "[...window.xixinMap.grids.getLayers()].flatMap(g => g.getLayers())"
            ".map(l => l.feature.properties.id)"
        )
        assert len(grids) == 13 and "grid-07" in grids
        dot = dom.split('<div class="officer', 1)[1].split(">", 1)[0]
        assert 'data-device="T001"' in dot and "talker" in dot and 'data-state="talking"' in dot
        assert "centre (centre)" in dom
        screenshot = tmp_path / "console.png"
        browser.screenshot(screenshot)
        assert screenshot.stat().st_size > 10_000
    finally:
        terminal.disconnect()


def test_console_without_a_session_is_the_login_page_and_a_wrong_password_says_so(
    served: tuple[str, GatewayService], browser: Browser
) -> None:
    url, service = served
    service.accounts.add("grid01", "grid:grid-01")
    browser.goto(url + "/")
    browser.wait("location.pathname === '/login'")  # the console's first request was a 401
    browser.sign_in(url, "grid01", "not the password at all")
    browser.wait("location.search === '?error=failed'")
    assert "Wrong account name or password" in browser.wait(
        "document.getElementById('error').textContent"
    )
