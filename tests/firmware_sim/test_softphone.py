"""The softphone end to end: WAV in -> Opus -> broker -> gateway -> broker -> jitter buffer ->
WAV out, with keyboard PTT as the UI sees it (the sound card replaced by WAV files)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np

from codec.pcm import level_dbfs, read_wav, write_wav
from devices.aio_client import AsyncTerminalClient
from firmware_sim.audio import (
    RATE,
    NullSpeaker,
    SilentMicrophone,
    WavMicrophone,
    WavSpeaker,
    open_audio,
)
from firmware_sim.softphone import Softphone
from firmware_sim.voice import synthesize
from gateway.broker import ManagedBroker
from gateway.directory import build_directory
from gateway.runner import GatewayRunner, GatewaySettings
from protocol.org import default_org
from tests.gateway.harness import GatewayThread
from xixin.commands.terminal import KeyboardPtt

DEVICES = [("T001", "grid-01", "officer", True), ("T002", "grid-01", "guard", True)]


def test_talk_from_a_wav_file_and_hear_it_in_another(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    speech = synthesize("Control, unit seven. On scene at the Minsheng gate.")
    wav_in = tmp_path / "in.wav"
    wav_in.write_bytes(write_wav(speech, RATE))
    wav_out = tmp_path / "out.wav"
    settings = GatewaySettings(broker=mosquitto.address)
    gw = GatewayThread(GatewayRunner(settings, build_directory(default_org(), DEVICES))).start()

    async def main() -> tuple[Softphone, Softphone]:
        talker = Softphone(
            AsyncTerminalClient("T001", None, mosquitto.host, mosquitto.port),
            ["grid-01", "all"],
            WavMicrophone(wav_in),
            NullSpeaker(),
        )
        listener = Softphone(
            AsyncTerminalClient("T002", None, mosquitto.host, mosquitto.port),
            ["grid-01"],
            WavMicrophone(wav_in),
            WavSpeaker(wav_out),
        )
        await talker.start()
        await listener.start()
        await asyncio.sleep(0.5)
        stop = asyncio.Event()
        keys = KeyboardPtt(talker, stop)
        loop = asyncio.get_running_loop()
        start = loop.time()
        while loop.time() - start < 2.0:  # a held space bar: repeats every 40 ms
            keys.key(" ", loop.time())
            if loop.time() - start > 0.5:
                assert talker.status().endswith("TALKING on grid-01")
                assert "T001 talking" in listener.status()
            await asyncio.sleep(0.04)
        while talker.ptt is not None:
            keys.poll(loop.time())
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)
        await talker.stop()
        await listener.stop()
        return talker, listener

    try:
        talker, listener = asyncio.run(main())
    finally:
        gw.stop()
    assert talker.sent_frames >= 90
    heard = read_wav(wav_out.read_bytes())
    assert heard.rate == RATE
    samples = heard.samples
    # The speech has pauses, and how much of it went out depends on how long the key was
    # really held on this machine: compare with the loud part of what the talker sent.
    sent = np.resize(speech, talker.sent_frames * 320)
    loud_in = _loud_seconds(sent)
    loud_out = _loud_seconds(samples)
    assert loud_in >= 1.0
    assert abs(loud_out - loud_in) <= 0.2, (loud_in, loud_out)
    assert listener.heard_ms >= 1800
    # Receiver reports went up while it listened, and the gateway forwarded them to the talker,
    # whose protection controller took them in (§9.3; whether it protected depends on what a
    # loaded machine made arrive late).
    assert listener.voice.counters.reports_sent >= 2
    assert talker.voice.counters.reports_applied >= 1
    # What came out is the speech that went in: envelopes (20 ms) correlate at some lag.
    env_in = _envelope(speech[: 2 * RATE])
    env_out = _envelope(samples)
    best = max(
        np.corrcoef(env_in[: len(env_in) - 10], env_out[lag : lag + len(env_in) - 10])[0, 1]
        for lag in range(0, len(env_out) - len(env_in) + 10)
    )
    assert best > 0.7, best


def _loud_seconds(pcm: np.ndarray) -> float:
    frames = range(0, len(pcm) - 320 + 1, 320)
    return sum(level_dbfs(pcm[i : i + 320]) > -40 for i in frames) * 0.02


def _envelope(pcm: np.ndarray) -> np.ndarray:
    chunks = pcm[: len(pcm) // 320 * 320].astype(float).reshape(-1, 320)
    return np.sqrt((chunks**2).mean(axis=1))


def test_without_a_sound_card_it_says_so(tmp_path: Path) -> None:
    mic, speaker, note = open_audio(None, tmp_path / "o.wav")
    assert "PyAudio is not installed" in note or "no sound card" in note
    assert "microphone: silence" in note and isinstance(speaker, WavSpeaker)
    assert not mic.read(320).any()


def test_talk_a_file_once_with_access_time_and_mouth_to_ear(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    """talk_once: floor request, the whole file, release; the talker knows its access time and
    the listener the mouth-to-ear delay of the burst, from the capture times frames carry."""
    speech = synthesize("Unit seven, north gate.")
    wav_in = tmp_path / "in.wav"
    wav_in.write_bytes(write_wav(speech, RATE))
    settings = GatewaySettings(broker=mosquitto.address)
    gw = GatewayThread(GatewayRunner(settings, build_directory(default_org(), DEVICES))).start()

    async def wait_for(condition: Callable[[], bool]) -> None:
        for _ in range(3000):  # a readiness signal, not a latency bound
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("timed out")

    async def main() -> tuple[Softphone, Softphone, WavSpeaker]:
        speaker = WavSpeaker(tmp_path / "out.wav")
        talker = Softphone(
            AsyncTerminalClient("T001", None, mosquitto.host, mosquitto.port),
            ["grid-01"], SilentMicrophone(), NullSpeaker(),
        )  # fmt: skip
        listener = Softphone(
            AsyncTerminalClient("T002", None, mosquitto.host, mosquitto.port),
            ["grid-01"], SilentMicrophone(), speaker,
        )  # fmt: skip
        await talker.start()
        await listener.start()
        await wait_for(lambda: talker.ready and listener.ready)
        assert talker.talk_once(WavMicrophone(wav_in, loop=False))
        assert talker.talking_once and not talker.talk_once(WavMicrophone(wav_in, loop=False))
        await wait_for(lambda: not talker.talking_once)
        await wait_for(lambda: bool(listener.heard))
        await talker.stop()
        await listener.stop()
        return talker, listener, speaker

    try:
        talker, listener, speaker = asyncio.run(main())
    finally:
        gw.stop()
    assert talker.ptt is None and len(talker.access_ms) == 1
    assert any("access time" in m for m in talker.messages)
    # The whole file went out once (20 ms a frame, the last one padded), nothing more.
    assert talker.sent_frames == -(-len(speech) // 320) + 1
    heard = listener.heard[-1]
    assert heard.played_ms >= 1000 * len(speech) / RATE - 100
    p50 = heard.percentile(0.5)
    # A frame's audio cannot be played before its 20 ms were captured.
    assert p50 is not None and p50 >= 19.0
    summary = next(m for m in listener.messages if m.startswith("heard burst"))
    assert summary.startswith(f"heard burst {heard.burst} on grid-01: ")
    assert "mouth-to-ear p50" in summary
    loud_out = _loud_seconds(speaker.samples)
    assert abs(loud_out - _loud_seconds(speech)) <= 0.1, loud_out


def test_a_wav_microphone_once_ends_in_silence(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    wav.write_bytes(write_wav(np.full(500, 1000, dtype=np.int16), RATE))
    once, looping = WavMicrophone(wav, loop=False), WavMicrophone(wav)
    assert once.read(320).all() and once.remaining == 180
    second = once.read(320)
    assert second[:180].all() and not second[180:].any() and once.remaining == 0
    assert not once.read(320).any()
    looping.read(320)
    assert looping.read(320).all() and looping.remaining == 500 - 140
