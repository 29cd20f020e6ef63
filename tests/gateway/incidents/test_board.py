"""The incident board in a real headless Chromium against a running gateway: incidents in the
account's scope by tier, an overdue one highlighted, a marker on the map, the timeline, the
nearest officer assigned with one click, an escalation moving the incident to the area."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gateway.events import GatewayEvent
from gateway.incidents.model import Place
from gateway.service import GatewayService
from tests.gateway.browser import CHROMIUM, Browser
from tests.gateway.incidents.conftest import wait_until
from tests.gateway.test_console import browser, served  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


def _row(incident: int) -> str:
    return f"document.querySelector('tr.inc-row[data-incident=\"{incident}\"]')"


def test_board_by_scope_overdue_timeline_and_one_click_assign(
    served: tuple[str, GatewayService],  # noqa: F811
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    url, service = served
    _, password = service.accounts.add("g1", "grid:grid-01")
    service.registry.add("T001", "grid-01", "officer")
    incidents = service.incidents
    wait_until(lambda: "T001" in incidents.officers.officers)
    lon, lat = service.org.grids["grid-01"].centre
    incidents.observe_hub([GatewayEvent("position", "T001", int(time.time() * 1000),
                                        {"lat": lat, "lon": lon})])  # fmt: skip
    mine = incidents.report("police", "fight at the market", source="api", reporter="c",
                            place=Place(lat=lat + 0.0005, lon=lon + 0.0005))  # fmt: skip
    other = incidents.report("police", "elsewhere", source="api", reporter="c",
                             place=Place("grid-07"))  # fmt: skip
    # A mediation reported three hours ago (the service's clock, injected): not accepted within
    # its two hours, so overdue.
    incidents.clock = lambda: time.time() - 3 * 3600
    late = incidents.report(
        "mediation", "noise", source="api", reporter="c", place=Place("grid-01")
    )
    incidents.clock = time.time
    browser.sign_in(url, "g1", password)
    browser.wait(f"{_row(mine.id)} !== null")
    dom = browser.dom()
    assert f'data-incident="{other.id}"' not in dom  # another grid's incident is not shown
    browser.wait(f"{_row(late.id)}.classList.contains('overdue')")
    assert not browser.eval(f"{_row(mine.id)}.classList.contains('overdue')")
    browser.wait(f"document.querySelector('.inc-marker[data-incident=\"{mine.id}\"]') !== null")
    # Open it: the timeline and the nearest officer; one click assigns.
    browser.eval(f"{_row(mine.id)}.click(); true")
    browser.wait("document.querySelector('.inc-timeline li') !== null")
    browser.wait("document.querySelector('button.inc-assign') !== null")
    assert "T001" in browser.eval("document.querySelector('button.inc-assign').textContent")
    browser.eval("document.querySelector('button.inc-assign').click(); true")
    wait_until(lambda: incidents.incidents[mine.id].officers == ("T001",))
    browser.wait(f"{_row(mine.id)}.textContent.includes('已派单')")
    browser.wait("document.querySelectorAll('.inc-timeline li').length >= 3")
    # Escalate with a reason (the prompt answered): now at the area, still shown to the grid.
    browser.eval("window.prompt = () => 'armed suspects'; true")
    browser.eval("document.querySelector('button.inc-escalate').click(); true")
    wait_until(lambda: incidents.incidents[mine.id].tier == "area")
    browser.wait(f"{_row(mine.id)}.textContent.includes('片区')")
    shot = tmp_path / "board.png"
    browser.screenshot(shot)
    assert shot.stat().st_size > 10_000
    assert (
        json.loads(json.dumps(browser.eval("document.querySelector('.inc-msg').textContent"))) == ""
    )
