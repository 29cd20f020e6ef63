"""Per-terminal network impairment for voice frames: loss, jitter, reordering, outages.

:class:`Impairment` is a :class:`devices.aio_client.FrameGate`: for each frame it answers
"drop" (None) or "deliver after this many seconds". Jitter is a normal delay around `jitter_ms`
(truncated at zero, so it never sends early); reordering holds a frame back long enough for the
next one to overtake it. Outages (disconnect / reconnect) are scheduled by :class:`OutagePlan`
and carried out by the firmware, which goes offline for their length.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from firmware_sim.errors import SimError


@dataclass(frozen=True, slots=True)
class ImpairmentConfig:
    loss_pct: float = 0.0
    jitter_ms: float = 0.0  # standard deviation of the extra delay
    delay_ms: float = 0.0  # fixed extra one-way delay
    reorder_pct: float = 0.0
    reorder_hold_ms: float = 50.0
    outage_every_s: float = 0.0  # mean time between disconnects; 0 = never
    outage_s: tuple[float, float] = (5.0, 30.0)

    def __post_init__(self) -> None:
        for name in ("loss_pct", "reorder_pct"):
            if not 0.0 <= getattr(self, name) <= 100.0:
                raise SimError(f"{name} must be within 0..100")
        for name in ("jitter_ms", "delay_ms", "reorder_hold_ms", "outage_every_s"):
            if getattr(self, name) < 0:
                raise SimError(f"{name} must not be negative")
        if not 0 < self.outage_s[0] <= self.outage_s[1]:
            raise SimError("outage_s must be (min, max) with 0 < min <= max")

    @property
    def active(self) -> bool:
        return bool(self.loss_pct or self.jitter_ms or self.delay_ms or self.reorder_pct)


@dataclass(slots=True)
class ImpairmentCounters:
    frames: int = 0
    dropped: int = 0
    reordered: int = 0


class Impairment:
    """The frame gate of one terminal (the same rules both ways, separate counters)."""

    def __init__(self, config: ImpairmentConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng or random.Random()
        self.up = ImpairmentCounters()
        self.down = ImpairmentCounters()

    def _decide(self, counters: ImpairmentCounters) -> float | None:
        cfg, rng = self.config, self.rng
        counters.frames += 1
        if cfg.loss_pct and rng.random() * 100.0 < cfg.loss_pct:
            counters.dropped += 1
            return None
        delay = cfg.delay_ms
        if cfg.jitter_ms:
            delay += abs(rng.gauss(0.0, cfg.jitter_ms))
        if cfg.reorder_pct and rng.random() * 100.0 < cfg.reorder_pct:
            counters.reordered += 1
            delay += cfg.reorder_hold_ms
        return delay / 1000.0

    def uplink(self, now: float) -> float | None:
        return self._decide(self.up)

    def downlink(self, now: float) -> float | None:
        return self._decide(self.down)


class OutagePlan:
    """When this terminal loses its connection next, and for how long (Poisson arrivals)."""

    def __init__(self, config: ImpairmentConfig, rng: random.Random, now: float) -> None:
        self.config = config
        self.rng = rng
        self.next_at = self._draw(now)

    def _draw(self, now: float) -> float:
        every = self.config.outage_every_s
        return now + self.rng.expovariate(1.0 / every) if every else float("inf")

    def due(self, now: float) -> float | None:
        """Seconds of outage if one starts now, else None."""
        if now < self.next_at:
            return None
        length = self.rng.uniform(*self.config.outage_s)
        self.next_at = self._draw(now + length)
        return length
