"""The console in headless Chromium, as a grid dispatcher uses it: the map, the tables, the
events panel, the device panel, fonts, layout and the self-hosted API docs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.gateway.console import console_site as fixtures
from tests.gateway.console.console_site import OpenConsole, Site

pytestmark = fixtures.pytestmark
artifacts = fixtures.artifacts
open_console = fixtures.open_console
site = fixtures.site

#: Pixels of two CJK glyphs drawn in the page's font: equal if both are the same missing-glyph
#: box ("tofu"), different if the font has them.
GLYPHS_DIFFER = """(font) => {
  const draw = (text) => {
    const c = document.createElement("canvas"); c.width = 64; c.height = 64;
    const g = c.getContext("2d"); g.font = font; g.fillStyle = "#000"; g.fillText(text, 4, 48);
    return Array.from(g.getImageData(0, 0, 64, 64).data).join(",");
  };
  const a = draw("民"), b = draw("盛");
  return {differ: a !== b, inked: /[1-9]/.test(a)};
}"""


def test_map_shows_the_grid_its_area_and_the_officers_in_scope(
    site: Site, open_console: OpenConsole
) -> None:
    page = open_console("grid01")
    page.wait_for_selector(".officer[data-device='T001']")
    page.wait_for_selector(".officer[data-device='T002'][data-state='talking'].talker")
    # the grid dispatcher's scope: grid-01 and its area's outline, not the other 12 grids
    paths = page.eval_on_selector_all(".leaflet-overlay-pane path", "ps => ps.length")
    assert paths == 2
    grid_ids = page.evaluate(
        "[...window.xixinMap.grids.getLayers()].flatMap(g => g.getLayers())"
        ".map(l => l.feature.properties.id)"
    )
    assert grid_ids == ["grid-01"]
    labels = page.inner_text(".leaflet-marker-pane")
    assert "民盛社区" in labels and "Minsheng Community" in labels
    assert "仁西片区社会治理中心" in labels
    assert page.locator(".officer[data-device='T003']").count() == 0
    t001 = page.locator(".officer[data-device='T001']")
    assert t001.get_attribute("data-state") == "available"
    assert "民警 陈" in page.inner_text(".leaflet-marker-pane")
    assert page.errors == []


def test_tables_show_names_battery_and_chinese_talkgroup_names(
    site: Site, open_console: OpenConsole
) -> None:
    page = open_console("grid01")
    row = page.locator("#devices tr[data-device='T001']")
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "民警 陈"
    assert cells[4] == "87%"  # from the terminal's position report
    assert page.locator("#devices tr[data-device='T003']").count() == 0
    tg = page.locator("#talkgroups tr[data-tg='grid-01'].taken td").all_inner_texts()
    assert tg[1] == f"民盛社区 · {site.service.org.talkgroups['grid-01'].name}"
    assert tg[4] == "辅警 王 (T002)"


def test_cjk_text_renders_with_a_cjk_font(open_console: OpenConsole) -> None:
    page = open_console("grid01")
    font = page.evaluate("getComputedStyle(document.body).font")
    assert page.evaluate("document.fonts.check('14px \"Noto Sans CJK SC\"', '民盛社区')")
    drawn = page.evaluate(GLYPHS_DIFFER, font)
    assert drawn == {"differ": True, "inked": True}, f"CJK glyphs are boxes in {font}"


def test_no_horizontal_scroll_and_screenshots(
    open_console: OpenConsole, artifacts: Path, capsys: Any
) -> None:
    for width in (1280, 1600):
        page = open_console("grid01", width=width)
        page.wait_for_selector(".officer[data-device='T001']")
        scroll = page.evaluate(
            "({w: document.scrollingElement.scrollWidth, c: document.scrollingElement.clientWidth})"
        )
        assert scroll["w"] <= scroll["c"], f"horizontal scroll at {width} px: {scroll}"
        path = artifacts / f"console-{width}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 20_000
        with capsys.disabled():
            print(f"\nscreenshot: {path}")


#: The visible map labels' boxes that overlap another's (none, if placement works).
OVERLAPS = """() => {
  const boxes = [...document.querySelectorAll('.map-label')]
    .filter(n => getComputedStyle(n.parentElement).visibility !== 'hidden')
    .map(n => n.getBoundingClientRect());
  let overlaps = 0;
  boxes.forEach((a, i) => boxes.slice(i + 1).forEach(b => {
    if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) overlaps++;
  }));
  return {shown: boxes.length, overlaps};
}"""


def test_the_centre_sees_every_grid_labelled_without_overlaps(
    open_console: OpenConsole, artifacts: Path, capsys: Any
) -> None:
    page = open_console("centre", width=1600)
    page.wait_for_selector(".officer[data-device='T003']")
    grids = page.evaluate(
        "[...window.xixinMap.grids.getLayers()].flatMap(g => g.getLayers()).length"
    )
    assert grids == 13
    labels = page.evaluate(OVERLAPS)
    assert labels["overlaps"] == 0 and labels["shown"] >= 8, labels
    page.evaluate("window.xixinMap.map.zoomIn(1, {animate: false})")
    assert page.evaluate(OVERLAPS)["overlaps"] == 0
    path = artifacts / "console-centre-1600.png"
    page.evaluate("window.xixinMap.map.zoomOut(1, {animate: false})")
    page.screenshot(path=str(path), full_page=True)
    with capsys.disabled():
        print(f"\nscreenshot: {path}")


def test_click_an_officer_opens_its_panel_with_battery_fix_and_track(
    site: Site, open_console: OpenConsole
) -> None:
    page = open_console("grid01")
    page.click(".officer[data-device='T001']")
    panel = page.locator("#device-panel[data-device='T001']")
    panel.wait_for()
    facts = page.inner_text("#device-facts")
    assert "87%" in facts and "民警 陈" in facts and "grid-01" in facts
    assert "Last fix" in facts and "none" not in facts.split("Last fix", 1)[1].split("\n")[1]
    page.wait_for_selector("#replay-slider:not([disabled])")
    assert "· 30." in page.inner_text("#replay-info")  # a point of the track, with its position
    assert page.locator("#cmd-radio-check").is_visible()
    assert page.locator("#cmd-stun").is_visible() and page.locator("#cmd-revive").is_visible()


def test_events_are_readable_lines_and_a_quick_queue_and_release_is_one(
    site: Site, open_console: OpenConsole
) -> None:
    page = open_console("grid01")
    page.wait_for_selector("body[data-stream='open']")
    t001 = site.terminals["T001"]
    assert t001.request_floor(tg="grid-01")["type"] == "floor_queued"
    t001.release_floor(tg="grid-01")
    line = page.locator("#events li[data-kind='floor']", has_text="民警 陈 (T001)")
    line.first.wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#events li')]"
        ".some(li => li.textContent.includes('→'))"
    )
    texts = page.locator("#events li").all_inner_texts()
    mine = [t for t in texts if "T001" in t]
    assert len(mine) == 1, texts
    assert "queued → released" in mine[0] and "grid-01" in mine[0]
    assert not any("{" in t for t in texts)


def test_docs_render_offline_for_the_signed_in(site: Site, open_console: OpenConsole) -> None:
    page = open_console("grid01")
    outside: list[str] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith(site.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(f"{site.url}/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "Xixin gateway" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".opblock-tag-section")
    assert "/api/org" in page.content()
    assert outside == []
    assert page.errors == []
