"""The simulated path of bench/voice.py: codec + channel only, as a discrete-event run.

The sender and the player are the ones a softphone is built with (taken from a Softphone, so the
protection it gets is what is measured); the channel is the simulator's impairment layer
(firmware_sim.impairment) plus a fixed base delay standing for loopback, broker and gateway. Like
the real path: the talker captures 20 ms on each tick of its clock and the listener pulls on each
tick of its own, `phase_ms` earlier; the clip is talked twice (a fresh listener's first burst,
then steady state) with the same gap; receiver reports go back to the sender after 50 ms.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codec.frame import VoiceFrame
from devices.aio_client import AsyncTerminalClient
from firmware_sim.audio import CHUNK, NullSpeaker, SilentMicrophone
from firmware_sim.impairment import Impairment, ImpairmentConfig
from firmware_sim.softphone import Softphone
from firmware_sim.voice import ts_to_wall, wall_to_ts

TICK_S = 0.02
BASE_DELAY_S = 0.002  # loopback + broker + gateway relay (bench/results/relay.json: ~1-2 ms)
GAP_S = 1.5
REPORT_DELAY_S = 0.05
WALL = 1_000_000.0  # simulated time -> a wall clock (for the 48 kHz capture timestamps)
_PLAYED = ("normal", "fec", "red")
ARRIVE, REPORT, PULL, CAPTURE = range(4)  # event kinds, in their order at the same instant


@dataclass(slots=True)
class SimRun:
    heard: list[np.ndarray]  # per burst: what the listener played
    mouth_to_ear_ms: list[float] = field(default_factory=list)
    mouth_to_ear_by_burst: dict[int, list[float]] = field(default_factory=dict)
    mouth_to_arrival_ms: list[float] = field(default_factory=list)
    kbps_on_air: float = 0.0
    jitter: object = None  # the player's jitter buffer statistics at the end


def _phone() -> Softphone:
    client = AsyncTerminalClient("SIM", None, "127.0.0.1", 1)  # never connected
    return Softphone(client, ["tg"], SilentMicrophone(), NullSpeaker())


class _Simulation:
    def __init__(self, clip: np.ndarray, loss: float, jitter: float, seed: int) -> None:
        self.clip = clip
        phone = _phone()
        self.sender, self.player = phone.voice.sender, phone.voice.player
        config = ImpairmentConfig(loss_pct=loss, jitter_ms=jitter)
        self.gate = Impairment(config, random.Random(seed))
        self.order = itertools.count()
        self.events: list[tuple[float, int, int, Any]] = []  # (time, kind, order, payload)
        self.heard: dict[int, list[np.ndarray]] = {1: [], 2: []}
        self.run = SimRun([])
        self.burst, self.position, self.resume_at = 1, -1, 0.0
        self.next_pull, self.next_report = 0.0, 1.0
        self.finished_at: float | None = None

    def push(self, at: float, kind: int, payload: Any = None) -> None:
        heapq.heappush(self.events, (at, kind, next(self.order), payload))

    def send(self, frame: VoiceFrame, now: float) -> None:
        delay = self.gate.downlink(now)
        if delay is not None:
            self.push(now + BASE_DELAY_S + delay, ARRIVE, frame)

    def go(self, phase_ms: float) -> SimRun:
        self.push(0.0, PULL)
        self.push(5 * TICK_S + phase_ms / 1000.0, CAPTURE)
        while self.events:
            now, kind, _, payload = heapq.heappop(self.events)
            if self.finished_at is not None and now > self.finished_at + GAP_S:
                break
            if kind == ARRIVE:
                if payload.packets:
                    wall = now + WALL
                    delay = wall - ts_to_wall(payload.timestamp, wall)
                    self.run.mouth_to_arrival_ms.append(delay * 1000)
                self.player.receive(payload, now)
            elif kind == REPORT:
                self.sender.on_report(payload, now)
            elif kind == PULL:
                self.pull(now)
            else:
                self.capture(now)
        self.run.jitter = self.player.jitter.stats()
        self.run.heard = [
            np.concatenate(self.heard[b]) if self.heard[b] else np.zeros(0, dtype=np.int16)
            for b in (1, 2)
        ]
        return self.run

    def pull(self, now: float) -> None:
        """The listener's tick: play what is due (as Softphone.tick does), maybe report."""
        while self.next_pull <= now + 1e-9:
            chunk = self.player.pull(now)
            item = chunk.item
            if item.burst in self.heard:
                self.heard[item.burst].append(chunk.pcm)
            if item.kind.value in _PLAYED and item.timestamp is not None:
                wall = now + WALL
                delay_ms = (wall - ts_to_wall(item.timestamp, wall)) * 1000
                self.run.mouth_to_ear_ms.append(delay_ms)
                self.run.mouth_to_ear_by_burst.setdefault(item.burst or 0, []).append(delay_ms)
            self.next_pull += max(item.duration_ms, 10.0) / 1000.0
        if now >= self.next_report:
            self.next_report = now + 1.0
            report = self.player.receiver_report(now, tg="tg")
            if report is not None:
                self.push(now + REPORT_DELAY_S, REPORT, report)
        self.push(now + TICK_S, PULL)

    def capture(self, now: float) -> None:
        """The talker's tick: 20 ms more of the clip (as Softphone talking a file once)."""
        sender = self.sender
        if self.position < 0 and now >= self.resume_at and self.finished_at is None:
            if self.burst == 2:
                sender.reset_counters()
            sender.start_burst(self.burst, now, timestamp=wall_to_ts(now + WALL - TICK_S))
            self.position = 0
        if self.position >= len(self.clip):
            self.send(sender.end_burst(now), now)
            self.position = -1
            if self.burst == 2:
                self.run.kbps_on_air = sender.counters().kbps_on_air
                self.finished_at = now
            self.burst, self.resume_at = self.burst + 1, now + GAP_S
        elif self.position >= 0:
            pcm = np.zeros(CHUNK, dtype=np.int16)
            piece = self.clip[self.position : self.position + CHUNK]
            pcm[: len(piece)] = piece
            self.position += CHUNK
            for frame in sender.push_pcm(pcm, now):
                self.send(frame, now)
        self.push(now + TICK_S, CAPTURE)


def simulate(clip: np.ndarray, loss: float, jitter: float, seed: int, phase_ms: float) -> SimRun:
    """Talk `clip` twice from talker to listener; the talker's clock is `phase_ms` behind."""
    return _Simulation(clip, loss, jitter, seed).go(phase_ms)
