"""The position filter chain, in the spirit of Traccar's `filter.*` settings.

Every rule is off when its setting is None/False. A filtered point is still acknowledged (the
broker's PUBACK already went out); it is counted per reason and not stored. The chain keeps, per
device, the last accepted point: duplicate, implied-speed, minimum distance and minimum period
rules compare against it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from gateway.tracking.geo import distance_m
from gateway.tracking.model import Fix

REASONS: Final = (
    "invalid",
    "zero",
    "duplicate",
    "future",
    "past",
    "accuracy",
    "speed",
    "distance",
    "period",
)


@dataclass(slots=True)
class FilterConfig:
    invalid: bool = True  # drop fixes the receiver flagged invalid (RMC V, GGA quality 0)
    zero: bool = True  # drop (0, 0): receivers report it when they have nothing
    duplicate: bool = True  # drop a fix with the same time as the last accepted one
    future_s: float | None = 300.0  # drop fixes more than this ahead of the server clock
    past_s: float | None = 7 * 86_400.0  # drop fixes older than this (offline buffers are kept)
    max_accuracy_m: float | None = 200.0  # drop fixes whose reported accuracy is worse
    max_speed_mps: float | None = 70.0  # drop fixes implying a faster move from the last one
    min_distance_m: float | None = None  # drop fixes closer than this to the last accepted...
    min_period_s: float | None = None  # ...or sooner than this after it
    skip_limit_s: float | None = None  # ...unless this long has passed since it (a heartbeat)


@dataclass(slots=True)
class _Last:
    fix_time: float
    lat: float
    lon: float


@dataclass(slots=True)
class FilterChain:
    config: FilterConfig = field(default_factory=FilterConfig)
    counts: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    _last: dict[str, _Last] = field(default_factory=dict)

    def check(self, fix: Fix, now: float) -> str | None:
        """The reason `fix` is filtered, or None if it passes. Does not change any state."""
        return self._reason(fix, now, self._last.get(fix.device))

    def _reason(self, fix: Fix, now: float, last: _Last | None) -> str | None:
        config = self.config
        if config.invalid and not fix.valid:
            return "invalid"
        if config.zero and fix.lat == 0.0 and fix.lon == 0.0:
            return "zero"
        if config.future_s is not None and fix.fix_time - now > config.future_s:
            return "future"
        if config.past_s is not None and now - fix.fix_time > config.past_s:
            return "past"
        if (
            config.max_accuracy_m is not None
            and fix.accuracy is not None
            and fix.accuracy > config.max_accuracy_m
        ):
            return "accuracy"
        if last is None:
            return None
        elapsed = fix.fix_time - last.fix_time
        if config.duplicate and elapsed == 0.0:
            return "duplicate"
        if elapsed < 0:
            # A late point (e.g. from an offline buffer) is history, not a move from `last`:
            # the consecutive-point rules do not apply to it.
            return None
        if config.skip_limit_s is not None and elapsed >= config.skip_limit_s:
            return None if config.max_speed_mps is None else self._speed(fix, last, elapsed)
        if config.min_period_s is not None and elapsed < config.min_period_s:
            return "period"
        needs_distance = config.max_speed_mps is not None or config.min_distance_m is not None
        if not needs_distance:
            return None
        distance = distance_m(last.lat, last.lon, fix.lat, fix.lon)
        if config.max_speed_mps is not None and distance > config.max_speed_mps * elapsed:
            return "speed"
        if config.min_distance_m is not None and distance < config.min_distance_m:
            return "distance"
        return None

    def _speed(self, fix: Fix, last: _Last, elapsed: float) -> str | None:
        assert self.config.max_speed_mps is not None
        distance = distance_m(last.lat, last.lon, fix.lat, fix.lon)
        return "speed" if distance > self.config.max_speed_mps * elapsed else None

    def apply(self, fix: Fix, now: float) -> str | None:
        """check(), then count the outcome and remember an accepted newest point."""
        last = self._last.get(fix.device)
        reason = self._reason(fix, now, last)
        if reason is not None:
            self.counts[reason] += 1
            return reason
        self.accepted += 1
        if last is None:
            self._last[fix.device] = _Last(fix.fix_time, fix.lat, fix.lon)
        elif fix.fix_time > last.fix_time:
            last.fix_time, last.lat, last.lon = fix.fix_time, fix.lat, fix.lon
        return None

    def record_duplicates(self, count: int) -> None:
        """Duplicates the database refused (an older point already stored): move the count."""
        if count > 0:
            self.counts["duplicate"] += count
            self.accepted -= count

    def forget(self, device: str) -> None:
        self._last.pop(device, None)
