"""Loss-adaptive protection on the real path: mosquitto + gateway, a listener behind loss.

The listener's receiver reports (§9.1) go up to the gateway, which forwards them to the talker
(§9.2); the talker's controller raises protection (§9.3), so its frames carry RED and what the
listener decodes is closer to what was said than when the talker does not protect.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from codec.frame import VoiceFrame
from codec.opus import Pcm16
from codec.protection import ProtectionPolicy, ProtectMode
from devices.aio_client import AsyncTerminalClient
from devices.client import TerminalClient
from devices.session import FrameIn
from devices.voice import VoiceSession
from gateway.broker import ManagedBroker
from tests.codec.speech import speak
from tests.devices.test_client_async import gateway

TG = "grid-01"
RATE = 16000
LOSS = 0.15


class DownlinkLoss:
    """A FrameGate: the listener's downlink loses a seeded random share of the frames."""

    def __init__(self, share: float, seed: int) -> None:
        self.share = share
        self.rng = random.Random(seed)
        self.dropped = 0

    def reseed(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def uplink(self, now: float) -> float | None:
        return 0.0

    def downlink(self, now: float) -> float | None:
        if self.rng.random() < self.share:
            self.dropped += 1
            return None
        return 0.0


@dataclass
class Heard:
    """What a listener played, per burst."""

    pcm: dict[int, list[Pcm16]] = field(default_factory=dict)

    def of(self, burst: int) -> Pcm16:
        return np.concatenate(self.pcm.get(burst, [np.zeros(0, dtype=np.int16)]))


async def play_out(voice: VoiceSession, heard: Heard, stop: asyncio.Event) -> None:
    """Pull the listener's jitter buffer at playout pace, as a speaker would."""
    next_pull = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(max(0.0, next_pull - time.monotonic()))
        chunk = voice.pull(time.monotonic())
        if chunk.item.burst is not None and chunk.item.kind.value != "silence":
            heard.pcm.setdefault(chunk.item.burst, []).append(chunk.pcm)
        next_pull += max(chunk.item.duration_ms, 10.0) / 1000.0


def pesq_wb(reference: Pcm16, degraded: Pcm16) -> float:
    from pesq import pesq

    return float(pesq(RATE, reference.astype(np.float64), degraded.astype(np.float64), "wb"))


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def speech() -> Pcm16:
    pcm = speak("en", "The patrol team reached the north gate. Please confirm the location.")
    return np.concatenate([np.zeros(RATE // 5, dtype=np.int16), pcm])


def test_listener_reports_raise_the_talkers_protection(
    mosquitto: ManagedBroker, speech: Pcm16
) -> None:
    gw = gateway(mosquitto)
    bursts: dict[int, list[VoiceFrame]] = {}

    def watch(incoming: FrameIn, now: float) -> None:
        if incoming.frame is not None:
            bursts.setdefault(incoming.burst, []).append(incoming.frame)

    async def talk(talker: AsyncTerminalClient, gate: DownlinkLoss) -> int:
        gate.reseed(7)  # the same losses for every measured burst
        granted = await talker.request_floor(tg=TG)
        assert granted["type"] == "floor_granted"
        await talker.send_speech(speech, granted["burst"], tg=TG)
        await asyncio.sleep(0.5)  # the tail plays out and the END report goes up
        assert (await talker.release_floor(tg=TG))["type"] == "floor_released"
        return int(granted["burst"])

    async def main() -> None:
        gate = DownlinkLoss(LOSS, seed=7)
        listening = VoiceSession(RATE)
        protected = VoiceSession(RATE)  # policy auto
        plain = VoiceSession(RATE, policy=ProtectionPolicy(mode=ProtectMode.OFF))
        talker = AsyncTerminalClient("T001", None, mosquitto.host, mosquitto.port, voice=protected)
        listener = AsyncTerminalClient(
            "T002", None, mosquitto.host, mosquitto.port, voice=listening, gate=gate
        )
        observer = AsyncTerminalClient("T003", None, mosquitto.host, mosquitto.port, on_frame=watch)
        heard, stop = Heard(), asyncio.Event()
        clients = (talker, listener, observer)
        for client in clients:
            await client.start()
            await client.affiliate([TG])
        player = asyncio.create_task(play_out(listening, heard, stop))
        try:
            # A cold start: unprotected until the first forwarded report, then RED.
            first = await talk(talker, gate)
            assert listening.counters.reports_sent >= 2
            assert protected.counters.reports_applied >= 1
            frames = [f for f in bursts[first] if f.packets]
            assert frames[0].redundant is None
            assert (
                sum(f.redundant is not None for f in frames[-len(frames) // 2 :])
                >= len(frames) // 2 - 1
            ), "protected once the reports came"
            # The controller remembers the channel: the next burst is protected from the start.
            warm = await talk(talker, gate)
            frames = [f for f in bursts[warm] if f.packets]
            assert all(f.redundant is not None for f in frames[1:])
            # The same talker without protection, over the same losses.
            talker.voice = plain
            unprotected = await talk(talker, gate)
            assert not any(f.redundant or f.fec for f in bursts[unprotected])
            assert plain.counters.reports_applied >= 1  # it heard them, and did not protect
            await wait_for(lambda: len(heard.of(unprotected)) >= len(speech) * 0.9)
        finally:
            stop.set()
            await player
            for client in clients:
                await client.stop()
        assert gate.dropped >= 0.08 * sum(len(b) for b in bursts.values())
        good, bad = pesq_wb(speech, heard.of(warm)), pesq_wb(speech, heard.of(unprotected))
        assert good > bad + 0.3, f"protected {good:.2f} vs unprotected {bad:.2f}"

    try:
        asyncio.run(main())
    finally:
        gw.stop()


def test_the_paho_client_reports_and_adapts(mosquitto: ManagedBroker, speech: Pcm16) -> None:
    """The blocking client: its listener reports by itself; its talker applies what the gateway
    forwards (here the listener is the asyncio client behind loss)."""
    gw = gateway(mosquitto)
    protected = VoiceSession(RATE)
    talker = TerminalClient("T001", None, mosquitto.host, mosquitto.port, voice=protected)
    talker.connect()
    try:
        talker.affiliate([TG])

        async def listen() -> int:
            gate = DownlinkLoss(LOSS, seed=3)
            listening = VoiceSession(RATE)
            listener = AsyncTerminalClient(
                "T002", None, mosquitto.host, mosquitto.port, voice=listening, gate=gate
            )
            await listener.start()
            await listener.affiliate([TG])
            try:
                burst = talker.request_floor(tg=TG)["burst"]
                await asyncio.to_thread(talker.send_speech, speech, burst, TG)
                await wait_for(lambda: protected.counters.reports_applied >= 1)
                talker.release_floor(tg=TG)
                return listening.counters.reports_sent
            finally:
                await listener.stop()

        assert asyncio.run(listen()) >= 2
        assert protected.protection(time.monotonic()).red
    finally:
        talker.disconnect()
        gw.stop()
