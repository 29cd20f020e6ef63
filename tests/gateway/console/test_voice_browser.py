"""Dispatcher voice in a real headless Chromium (playwright on Debian's chromium) against a
running gateway: talking with a fake microphone that plays a speech file, listening to an
officer, and the scope of a grid dispatcher."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from codec.frame import VoiceFrame
from codec.opus import Pcm16
from codec.pcm import write_wav
from codec.stream import VoiceSender
from devices.client import TerminalClient
from gateway.service import GatewayService
from tests.codec.speech import SENTENCES, speak
from tests.gateway.console.conftest import (
    BROWSER_READY,
    BrowserFactory,
    sign_in,
    wait_for_device,
)
from tests.gateway.voice.audio import (
    best_alignment,
    decode_frames,
    pesq_score,
    window_alignments,
)

pytestmark = pytest.mark.skipif(not BROWSER_READY, reason="chromium or playwright missing")


@pytest.fixture(scope="module")
def speech() -> Pcm16:
    return speak("en", SENTENCES["en"])


@pytest.fixture
def speech_wav(tmp_path: Path, speech: Pcm16) -> Path:
    path = tmp_path / "speech.wav"
    path.write_bytes(write_wav(speech, 16000))
    return path


@pytest.fixture
def officer(served: tuple[str, GatewayService]) -> Iterator[TerminalClient]:
    _, service = served
    _, secret = service.registry.add("T0701", "grid-07", "officer", "民警 王")
    wait_for_device(service, "T0701")
    assert service.broker is not None
    terminal = TerminalClient("T0701", secret, service.broker.host, service.broker.port)
    terminal.connect()
    terminal.affiliate(["grid-07"])
    try:
        yield terminal
    finally:
        terminal.disconnect()


def _burst(terminal: TerminalClient, timeout: float = 20.0) -> list[VoiceFrame]:
    frames: list[VoiceFrame] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = terminal.frames.get(timeout=deadline - time.monotonic()).frame
        frames.append(frame)
        if frame.end:
            return frames
    raise AssertionError("no end of burst")


def test_a_grid_dispatcher_talks_from_the_browser_and_the_terminal_hears_it(
    served: tuple[str, GatewayService],
    chromium: BrowserFactory,
    officer: TerminalClient,
    speech_wav: Path,
    speech: Pcm16,
) -> None:
    url, service = served
    _, password = service.accounts.add("g07", "grid:grid-07")
    wait_for_device(service, "xixin-u-g07")
    page = chromium(fake_audio=speech_wav).new_page()
    sign_in(page, url, "g07", password)
    page.wait_for_selector("#voice-target option[value='tg:grid-07']", state="attached")
    page.select_option("#voice-target", "tg:grid-07")
    page.click("#voice-panel h3")  # focus off the select: the space bar talks
    page.keyboard.down("Space")
    page.wait_for_function(
        "() => window.xixinVoice.floor && window.xixinVoice.floor.state === 'granted'"
    )
    assert page.text_content("#voice-floor") == "granted"
    page.wait_for_function("() => window.xixinVoice.framesSent >= 200")  # 4 s of microphone
    page.keyboard.up("Space")
    page.wait_for_function("() => window.xixinVoice.floor.state === 'released'")
    frames = _burst(officer)
    heard = decode_frames(frames)
    assert len(heard) > 3 * 16000
    middle = heard[8000:-8000]  # the press and release edges may cut a word
    score, offset = best_alignment(speech, middle, looped=True)
    quality = pesq_score(speech, middle[: len(speech) - 16000], offset)
    windows = window_alignments(speech, middle)
    print(
        f"browser microphone -> terminal: correlation {score:.3f}, PESQ {quality}, "
        f"per second {[round(w, 2) for w in windows]}"
    )
    # Each second of speech is the source's, each aligned on its own (robust to a stalled
    # capture on a loaded machine, which shifts what follows); garbage or silence scores ~0.
    assert len(windows) >= 2 and float(np.median(windows)) > 0.8, windows
    # Out of scope: the gateway refuses, the page says so.
    page.evaluate(
        "document.getElementById('voice-target').append(new Option('grid-02', 'tg:grid-02'))"
    )
    page.select_option("#voice-target", "tg:grid-02")
    page.hover("#voice-talk")
    page.mouse.down()
    page.wait_for_function("() => window.xixinVoice.floor.state === 'denied'")
    page.mouse.up()
    assert "not_in_scope" in (page.text_content("#voice-floor") or "")


def test_the_page_decodes_an_officer_talking_in_its_grid(
    served: tuple[str, GatewayService],
    chromium: BrowserFactory,
    officer: TerminalClient,
    speech: Pcm16,
) -> None:
    url, service = served
    _, password = service.accounts.add("g07", "grid:grid-07")
    page = chromium().new_page()
    sign_in(page, url, "g07", password)
    page.wait_for_function("() => window.xixinVoice && window.xixinVoice.listening")
    grant = officer.request_floor(tg="grid-07")
    sender = VoiceSender()
    sender.start_burst(grant["burst"], 0.0)
    frames = [*sender.push_pcm(speech, 0.0), sender.end_burst(0.0)]
    officer.send_burst(frames, tg="grid-07")
    officer.release_floor(tg="grid-07")
    page.wait_for_function("() => window.xixinVoice.bursts.length >= 1", timeout=20_000)
    burst = page.evaluate(
        "(() => { const b = window.xixinVoice.bursts[0];"
        " return {talker: b.talker, name: b.talker_name, tg: b.talkgroup,"
        " samples: Array.from(b.samples)}; })()"
    )
    assert burst["talker"] == "T0701" and burst["name"] == "民警 王" and burst["tg"] == "grid-07"
    heard = np.asarray(burst["samples"], dtype=np.int16)
    score, offset = best_alignment(speech, heard)
    quality = pesq_score(speech, heard, offset)
    print(f"terminal -> browser: correlation {score:.3f}, PESQ {quality}")
    assert len(heard) >= len(speech) * 0.95
    assert score > 0.7, score
