"""The incident board inside the console, on its Leaflet map: the board is drawn by the
console itself, open incidents are markers on the map (an overdue one highlighted), a marker
selects its incident, and the selected incident's assigned officers' tracks are drawn; no page
errors. A screenshot at 1280 px goes to tests/artifacts/console/."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.incidents.model import Place
from tests.gateway.console import console_site as fixtures
from tests.gateway.console.console_site import OpenConsole, Site

pytestmark = fixtures.pytestmark
open_console = fixtures.open_console
site = fixtures.site
artifacts = fixtures.artifacts


def test_incidents_on_the_map_select_and_officer_tracks(
    site: Site, open_console: OpenConsole, artifacts: Path
) -> None:
    incidents = site.service.incidents
    lon, lat = site.service.org.grids["grid-01"].centre
    fight = incidents.report("police", "fight at the market 市场斗殴", source="api", reporter="c",
                             place=Place(lat=lat + 0.0015, lon=lon - 0.0015))  # fmt: skip
    # Reported three hours ago by the service's (injected) clock: not accepted in time.
    incidents.clock = lambda: time.time() - 3 * 3600
    try:
        late = incidents.report("mediation", "noise 噪音", source="api", reporter="c",
                                place=Place(lat=lat - 0.0012, lon=lon + 0.002))  # fmt: skip
    finally:
        incidents.clock = time.time
    page = open_console("grid01")
    page.wait_for_selector(f"tr.inc-row[data-incident='{fight.id}']")
    marker = page.locator(f"#map .inc-marker[data-incident='{fight.id}']")
    marker.wait_for()
    page.wait_for_selector(f"#map .inc-marker.overdue[data-incident='{late.id}']")
    assert "overdue" not in (marker.get_attribute("class") or "")
    late_row = page.get_attribute(f"tr.inc-row[data-incident='{late.id}']", "class")
    assert "overdue" in (late_row or "")
    # The marker sits where the incident is (the map's own projection of its position).
    box = marker.bounding_box()
    where = page.evaluate(
        "([lat, lon]) => { const m = window.xixinMap.map;"
        " const p = m.latLngToContainerPoint([lat, lon]);"
        " const r = m.getContainer().getBoundingClientRect();"
        " return {x: r.left + p.x, y: r.top + p.y}; }",
        [lat + 0.0015, lon - 0.0015],
    )
    assert box is not None
    assert abs(box["x"] + box["width"] / 2 - where["x"]) < 3
    assert abs(box["y"] + box["height"] / 2 - where["y"]) < 3

    # A click on the marker selects the incident on the board; one click assigns T001.
    marker.click()
    page.wait_for_selector(f"tr.inc-row.selected[data-incident='{fight.id}']")
    page.wait_for_selector(f"#map .inc-marker.selected[data-incident='{fight.id}']")
    page.locator("button.inc-assign", has_text="T001").click()
    site.wait_for(lambda: incidents.incidents[fight.id].officers == ("T001",), "T001 assigned")
    # T001 moves after the assignment: its track since then is drawn on the map.
    start = time.time()
    for step in range(3):
        site.beacon_at("T001", lon + 0.001 - 0.0002 * step, lat + 0.0003 * step, 80, start + step)
    page.wait_for_selector("#map path.inc-track[data-device='T001']", timeout=20_000)
    page.wait_for_selector(f"tr.inc-row[data-incident='{fight.id}'] >> text=已派单")
    shot = artifacts / "console-incident-1280.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert page.inner_text(".inc-msg") == ""
    assert "null" not in page.inner_text(".inc-detail")
    assert page.errors == []
