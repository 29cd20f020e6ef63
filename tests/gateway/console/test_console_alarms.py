"""Alarms and commands in the console, as a grid dispatcher handles them: an SOS is a banner and
a repeating sound until acknowledged, shows its last position, opens its talkgroup's audio and
is still there after a page load; acknowledge, close with an outcome and a note; commands show
their live state.

The acknowledge/close and command-state tests need the alarms and commands API
(`/api/alarms`, `GET /api/devices/{id}/commands`); on a gateway without it they are skipped."""

from __future__ import annotations

from typing import Any

import pytest

from tests.gateway.console import console_site as fixtures
from tests.gateway.console.console_site import OpenConsole, Site

pytestmark = fixtures.pytestmark
open_console = fixtures.open_console
site = fixtures.site


def _voice_ready(page: Any) -> None:
    """Until the voice panel's listen stream has said which talkgroups it carries."""
    page.wait_for_function("() => window.xixinVoice && window.xixinVoice.listening")


def _levels(page: Any) -> dict[str, str]:
    """The voice panel's listen level of each talkgroup, as its selects show them."""
    return dict(
        page.evaluate(
            "() => [...document.querySelectorAll('#voice-tgs select')]"
            ".map((s) => [s.dataset.tg, s.value])"
        )
    )


def _needs(page: Any, site: Site, path: str) -> None:
    status = page.request.get(f"{site.url}{path}").status
    if status in (404, 405):
        pytest.skip(f"this gateway has no {path} ({status})")
    assert status == 200, f"{path}: {status}"


@pytest.fixture(scope="module")
def sos(site: Site) -> Site:
    """T001 in SOS (once per module; the tests below run in order on it)."""
    answer = site.terminals["T001"].sos(True)  # returns once the gateway has answered it
    assert answer.get("type") != "error", answer
    return site


def test_sos_is_a_banner_and_a_sound_shown_on_the_map_and_after_a_reload(
    sos: Site, open_console: OpenConsole
) -> None:
    page = open_console("grid01")
    page.wait_for_selector("#alarm-banner:not([hidden])")
    assert "民警 陈 (T001)" in page.inner_text("#alarm-banner")
    page.wait_for_function("() => window.xixinAlarms.sounding && window.xixinAlarms.beeps >= 1")
    page.wait_for_selector(".alarm-row.unattended[data-kind='sos']")
    page.wait_for_selector(".officer[data-device='T001'][data-state='sos']")
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_selector("#alarm-banner:not([hidden])")
    page.wait_for_selector(".alarm-row.unattended[data-kind='sos']")
    page.wait_for_function("() => window.xixinAlarms.sounding")
    assert page.errors == []


def test_sos_row_locates_and_opens_the_talkgroup_audio(
    sos: Site, open_console: OpenConsole
) -> None:
    page = open_console("grid01")
    _needs(page, sos, "/api/alarms")
    _voice_ready(page)
    page.select_option("#voice-tgs select[data-tg='grid-01']", "muted")
    row = page.locator(".alarm-row[data-kind='sos']").first
    assert "last fix 30." in row.inner_text()
    page.evaluate("window.xixinMap.map.setView([0, 0], 3)")
    row.locator("button.locate").click()
    centre = page.evaluate("window.xixinMap.map.getCenter()")
    assert abs(centre["lat"] - 30.86) < 0.05 and abs(centre["lng"] - 120.11) < 0.05
    row.locator("button.listen").click()
    assert _levels(page)["grid-01"] == "selected"
    assert page.evaluate("window.xixinVoice.focused") == "grid-01"
    page.wait_for_selector("#device-panel[data-device='T001']")


def test_an_open_sos_opens_its_talkgroup_audio(sos: Site, open_console: OpenConsole) -> None:
    """With or without the alarms API: the voice panel hears T001's talkgroup (selected) and
    makes it the talk target."""
    page = open_console("grid01")
    _voice_ready(page)
    page.wait_for_function("() => window.xixinVoice.focused === 'grid-01'")
    levels = _levels(page)
    assert levels["grid-01"] == "selected"
    assert all(level == "softer" for tg, level in levels.items() if tg != "grid-01")
    assert page.input_value("#voice-target") == "tg:grid-01"
    assert page.errors == []


def test_acknowledge_silences_then_close_needs_an_outcome_and_a_note(
    sos: Site, open_console: OpenConsole
) -> None:
    page = open_console("grid01")
    _needs(page, sos, "/api/alarms")
    row = page.locator(".alarm-row[data-kind='sos']").first
    row.locator("button.ack").click()
    page.wait_for_selector(".alarm-row.acknowledged[data-kind='sos']")
    page.wait_for_selector("#alarm-banner[hidden]", state="attached")
    page.wait_for_function("() => !window.xixinAlarms.sounding")
    page.locator(".alarm-row[data-kind='sos'] button.close").first.click()
    page.check("input[name='outcome'][value='false_alarm']")
    page.fill("#close-note", "   ")
    page.click("#close-submit")
    assert "note" in page.inner_text("#close-error").lower()
    page.fill("#close-note", "pocket dial · 误触")
    page.click("#close-submit")
    page.wait_for_selector(".alarm-row[data-kind='sos']", state="detached")
    closed = page.request.get(f"{sos.url}/api/alarms?state=all&kind=sos").json()
    assert closed[0]["state"] == "closed" and closed[0]["outcome"] == "false_alarm"
    assert closed[0]["note"] == "pocket dial · 误触"
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator(".alarm-row[data-kind='sos']").count() == 0


def test_a_command_shows_its_live_state(sos: Site, open_console: OpenConsole) -> None:
    page = open_console("grid01")
    _needs(page, sos, "/api/devices/T002/commands")
    page.click("#devices tr[data-device='T002']")
    page.wait_for_selector("#device-panel[data-device='T002']")
    page.click("#cmd-radio-check")
    item = page.locator("#device-commands li[data-command]").first
    item.wait_for()
    assert item.get_attribute("data-state") in {"pending", "queued", "acknowledged", "timed_out"}
    page.fill("#device-text", "请到东门 · go to the east gate")
    page.click("#cmd-text")
    page.wait_for_selector("#device-commands li[data-command] >> text=请到东门")


def test_a_new_sos_raises_its_talkgroup_above_the_others(
    sos: Site, open_console: OpenConsole
) -> None:
    """The centre hears every talkgroup; T003's SOS (grid-02) arriving while the console is open
    makes grid-02 the selected one and every other talkgroup softer."""
    page = open_console("centre")
    _voice_ready(page)
    assert {"grid-01", "grid-02"} <= set(_levels(page))
    answer = sos.terminals["T003"].sos(True)
    try:
        assert answer.get("type") != "error", answer
        page.wait_for_function("() => window.xixinVoice.focused === 'grid-02'")
        levels = _levels(page)
        assert levels["grid-02"] == "selected"
        assert all(level == "softer" for tg, level in levels.items() if tg != "grid-02")
        assert page.errors == []
    finally:
        sos.terminals["T003"].sos(False)
