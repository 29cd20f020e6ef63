"""Battery: drains by what the radio does (transmit > receive > idle); raises a low alarm once.

Rates are percent per hour for a typical 2,500 mAh public-safety handheld with GPS on: about a
12-hour shift at 5/5/90 transmit/receive/idle duty. `speedup` compresses a shift for tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_sim.errors import SimError

RATES_PER_HOUR = {"idle": 5.0, "receive": 15.0, "transmit": 45.0, "offline": 3.0}


@dataclass(frozen=True, slots=True)
class BatteryConfig:
    start_pct: float = 100.0
    low_pct: float = 15.0
    speedup: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.start_pct <= 100.0 or not 0.0 <= self.low_pct <= 100.0:
            raise SimError("battery percentages must be within 0..100")
        if self.speedup <= 0:
            raise SimError("battery speedup must be positive")


class Battery:
    def __init__(self, config: BatteryConfig | None = None, now: float = 0.0) -> None:
        self.config = config or BatteryConfig()
        self.level = self.config.start_pct
        self.activity = "idle"
        self._since = now
        self.low_alarmed = self.level <= self.config.low_pct

    def set_activity(self, activity: str, now: float) -> None:
        if activity not in RATES_PER_HOUR:
            raise SimError(f"unknown battery activity {activity!r}")
        self.update(now)
        self.activity = activity

    def update(self, now: float) -> None:
        """Drain up to `now` at the current activity's rate."""
        elapsed = max(0.0, now - self._since)
        self._since = max(self._since, now)
        rate = RATES_PER_HOUR[self.activity] * self.config.speedup / 3600.0
        self.level = max(0.0, self.level - rate * elapsed)

    def take_alarm(self, now: float) -> bool:
        """True exactly once: when the level has first fallen to the low mark."""
        self.update(now)
        if not self.low_alarmed and self.level <= self.config.low_pct:
            self.low_alarmed = True
            return True
        return False

    @property
    def percent(self) -> int:
        return round(self.level)

    @property
    def empty(self) -> bool:
        return self.level <= 0.0
