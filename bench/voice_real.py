"""The real path of bench/voice.py: softphones and a simulator probe on a live broker + gateway.

Runs in a process of its own (the gateway and mosquitto run in the parent and in theirs), so the
terminals' event loop does not share an interpreter lock with the gateway's. For each job (one
clip under one network condition) it connects fresh terminals of one grid: a talker softphone,
one listening softphone per phase offset (its 20 ms playout clock that far behind the talker's
capture clock) and one decoding probe of the simulator (firmware_sim: its jitter buffer, its
mouth-to-ear histogram). Every listener's frames pass the simulator's impairment layer
(firmware_sim.impairment.Impairment, on its downlink), all with the same seed, so at any phase
they lose and delay the same frames. The talker talks the clip twice with `talk_once` (floor
request, the file at real-time pace, release): burst 1 is every listener's first, burst 2 is
steady state. Returned: what each listener played during each burst (PCM), the softphones' own
mouth-to-ear per burst, the probe's histogram, the talker's access times and bit rate on air.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from devices.aio_client import AsyncTerminalClient
from firmware_sim.audio import NullSpeaker, SilentMicrophone, WavMicrophone
from firmware_sim.firmware import Firmware
from firmware_sim.impairment import Impairment, ImpairmentConfig
from firmware_sim.model import FirmwareConfig, TerminalProfile
from firmware_sim.reception import Histogram
from firmware_sim.softphone import Softphone
from firmware_sim.terminal import Scheduler, SimTerminal
from transport.loop import freeze_startup_heap

log = logging.getLogger("bench.voice")
GAP_S = 1.5  # between the two bursts: the listeners finish playing the first


@dataclass(frozen=True, slots=True)
class RealJob:
    host: str
    port: int
    talkgroup: str
    unit: str
    talker: tuple[str, str]  # (id, secret)
    listeners: tuple[tuple[str, str], ...]  # one per phase
    probe: tuple[str, str]
    clip: str  # WAV path
    loss_pct: float
    jitter_ms: float
    seed: int
    phases_ms: tuple[float, ...]


class RecordingSpeaker:
    """A sound card stand-in that keeps what is played, with the time it was handed over."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.chunks: list[np.ndarray] = []

    def play(self, pcm: np.ndarray) -> None:
        self.times.append(time.monotonic())
        self.chunks.append(pcm.copy())

    def close(self) -> None:
        pass

    def between(self, start: float, end: float) -> np.ndarray:
        parts = [c for t, c in zip(self.times, self.chunks, strict=True) if start <= t < end]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


def _gate(config: ImpairmentConfig, seed: int) -> Impairment | None:
    return Impairment(config, random.Random(seed)) if config.active else None


async def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _job(job: RealJob) -> dict[str, Any]:
    config = ImpairmentConfig(loss_pct=job.loss_pct, jitter_ms=job.jitter_ms)
    talker = Softphone(
        AsyncTerminalClient(job.talker[0], job.talker[1], job.host, job.port),
        [job.talkgroup],
        SilentMicrophone(),
        NullSpeaker(),
    )
    speakers = [RecordingSpeaker() for _ in job.listeners]
    listeners = [
        Softphone(
            AsyncTerminalClient(ident, secret, job.host, job.port, gate=_gate(config, job.seed)),
            [job.talkgroup],
            SilentMicrophone(),
            speaker,
        )
        for (ident, secret), speaker in zip(job.listeners, speakers, strict=True)
    ]
    origin = time.monotonic()
    talker.clock_origin = origin
    for phone, phase in zip(listeners, job.phases_ms, strict=True):
        phone.clock_origin = origin - phase / 1000.0  # the talker ticks `phase` after it
    scheduler = Scheduler()
    probe_client = AsyncTerminalClient(
        job.probe[0],
        job.probe[1],
        job.host,
        job.port,
        decode_frames=True,
        gate=_gate(config, job.seed),
    )
    firmware = Firmware(
        TerminalProfile(job.probe[0], job.unit, "officer", (job.talkgroup,), job.talkgroup),
        FirmwareConfig(impairment=config, beacons=False, probe=True),
        probe_client.session,
        now=time.monotonic(),
        wall_offset=time.time() - time.monotonic(),
        rng=random.Random(job.seed),
    )
    probe = SimTerminal(firmware, probe_client, scheduler)
    phones = [talker, *listeners]
    try:
        for phone in phones:
            await phone.start()
        scheduler.start()
        probe.power_on()
        await _wait(
            lambda: (
                all(p.ready for p in phones) and job.talkgroup in probe_client.session.talkgroups
            ),
            30.0,
            "the terminals to affiliate",
        )
        freeze_startup_heap()  # as `xixin terminal` does once started
        result = await _talk_twice(job, talker, listeners, speakers, firmware.stats.mouth_to_ear)
        result["probe_m2a_counts"] = firmware.stats.meter.mouth_to_arrival.to_dict()
        player = firmware.listener.probe.player if firmware.listener.probe else None
        result["probe_jitter"] = jitter_stats(player.jitter.stats()) if player else {}
        result["listener_jitter"] = [
            playout_counts(p.voice.player.jitter.stats()) for p in listeners
        ]
        return result
    finally:
        scheduler.stop()
        await probe.shutdown()
        for phone in phones:
            await phone.stop()
        gc.unfreeze()  # this job's terminals may be collected with the next job's start-up


async def _talk_twice(
    job: RealJob,
    talker: Softphone,
    listeners: list[Softphone],
    speakers: list[RecordingSpeaker],
    probe_m2e: Histogram,
) -> dict[str, Any]:
    windows: list[tuple[float, float]] = []
    probe_counts: list[dict[str, int]] = []
    seconds = len(WavMicrophone(Path(job.clip), loop=False).pcm) / 16000
    for _burst in range(2):
        talker.voice.sender.reset_counters()  # the bit rate of the last burst is reported
        before = Histogram()
        before.merge(probe_m2e)
        mic = WavMicrophone(Path(job.clip), loop=False)
        grants = len(talker.access_ms)
        started = time.monotonic()
        if not talker.talk_once(mic):
            raise RuntimeError("the talker could not request the floor")
        await _wait(lambda: not talker.talking_once, seconds + 20.0, "the talker to finish")
        if len(talker.access_ms) == grants:
            raise RuntimeError(f"the floor was not granted: {talker.messages[-1:]}")
        ended = time.monotonic()
        await asyncio.sleep(GAP_S)
        windows.append((started, ended + GAP_S))
        after = {k: v - before.counts.get(k, 0) for k, v in probe_m2e.counts.items()}
        probe_counts.append({str(k): v for k, v in after.items() if v})
    counters = talker.voice.sender.counters()
    return {
        "heard": [[s.between(a, b) for a, b in windows] for s in speakers],
        "softphone_m2e": [
            [_p95(h.mouth_to_ear_ms) for h in phone.heard[-2:]] for phone in listeners
        ],
        "probe_m2e_counts": probe_counts,
        "access_ms": list(talker.access_ms[-2:]),
        "kbps_on_air": counters.kbps_on_air,
        "sent_frames": talker.sent_frames,
    }


def jitter_stats(stats: Any) -> dict[str, float]:
    """The jitter buffer's waiting-time figures, whichever of them its statistics carry."""
    names = ("p95_waiting_ms", "mean_waiting_ms", "target_delay_ms", "current_delay_ms")
    found = {name: getattr(stats, name, None) for name in names}
    return {name: round(float(v), 1) for name, v in found.items() if isinstance(v, int | float)}


def playout_counts(stats: Any) -> dict[str, int]:
    """How a listener's jitter buffer played: concealment, stretching, late packets."""
    names = ("expand_frames", "accelerate", "preemptive_expand", "late_discarded", "concealed",
             "packets_played")  # fmt: skip
    found = {name: getattr(stats, name, None) for name in names}
    return {name: int(v) for name, v in found.items() if isinstance(v, int)}


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, -(-95 * len(ordered) // 100))) - 1]


def run_jobs(jobs: list[RealJob]) -> list[dict[str, Any]]:
    """The entry point of the child process: every job in turn, on a fresh event loop each."""
    logging.basicConfig(level=logging.WARNING)
    results = []
    for job in jobs:
        started = time.monotonic()
        results.append(asyncio.run(_job(job)))
        print(
            f"  real: {Path(job.clip).stem} loss {job.loss_pct:g} % jitter {job.jitter_ms:g} ms "
            f"in {time.monotonic() - started:.0f} s",
            flush=True,
        )
    return results
