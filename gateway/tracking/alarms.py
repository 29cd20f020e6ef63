"""Alarms, sans-I/O: SOS, low battery, offline too long, left the assigned grid, no movement.

Each alarm is raised once (active=True) and cleared once (active=False) per episode; both are
`TrackingEvent`s of kind "alarm" to be stored and streamed. Inputs are accepted fixes (in fix-time
order per device), status changes, SOS from the control plane, and `tick(now)` for time-outs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.tracking.geo import distance_m
from gateway.tracking.model import DeviceState, Fix, TrackingEvent

ALARM_TYPES = ("sos", "low_battery", "offline_too_long", "left_grid", "no_movement")


@dataclass(slots=True)
class AlarmConfig:
    low_battery_pct: int | None = 20  # raise at or below
    low_battery_clear_pct: int = 25  # clear at or above (hysteresis: a sagging cell flickers)
    offline_too_long_s: float | None = 900.0  # not online for this long
    no_movement_s: float | None = 600.0  # possible man-down: still while reporting
    no_movement_radius_m: float = 25.0  # GPS wander of a device lying still stays inside this
    left_grid: bool = True


@dataclass(slots=True)
class _Anchor:
    lat: float
    lon: float
    since: float


@dataclass(slots=True)
class AlarmEngine:
    config: AlarmConfig = field(default_factory=AlarmConfig)
    active: dict[tuple[str, str], TrackingEvent] = field(default_factory=dict)
    _anchors: dict[str, _Anchor] = field(default_factory=dict)
    _not_online_since: dict[str, float] = field(default_factory=dict)
    _last_fix: dict[str, Fix] = field(default_factory=dict)

    def _raise(
        self, alarm: str, device: str, ts: float, fix: Fix | None, **data: object
    ) -> list[TrackingEvent]:
        key = (device, alarm)
        if key in self.active:
            return []
        event = TrackingEvent(
            "alarm",
            alarm,
            device,
            ts,
            active=True,
            lat=None if fix is None else fix.lat,
            lon=None if fix is None else fix.lon,
            data=dict(data),
        )
        self.active[key] = event
        return [event]

    def _clear(self, alarm: str, device: str, ts: float, fix: Fix | None) -> list[TrackingEvent]:
        if self.active.pop((device, alarm), None) is None:
            return []
        return [
            TrackingEvent(
                "alarm",
                alarm,
                device,
                ts,
                active=False,
                lat=None if fix is None else fix.lat,
                lon=None if fix is None else fix.lon,
            )
        ]

    def on_fix(self, fix: Fix, in_assigned_grid: bool | None) -> list[TrackingEvent]:
        """An accepted fix. `in_assigned_grid` is None when the device has no grid to keep to."""
        events: list[TrackingEvent] = []
        device, ts, config = fix.device, fix.fix_time, self.config
        previous = self._last_fix.get(device)
        if previous is not None and fix.fix_time < previous.fix_time:
            return events  # a late point from an offline buffer says nothing about now
        self._last_fix[device] = fix
        if config.low_battery_pct is not None and fix.battery is not None:
            if fix.battery <= config.low_battery_pct:
                events += self._raise("low_battery", device, ts, fix, battery=fix.battery)
            elif fix.battery >= config.low_battery_clear_pct:
                events += self._clear("low_battery", device, ts, fix)
        if config.left_grid and in_assigned_grid is not None:
            if in_assigned_grid:
                events += self._clear("left_grid", device, ts, fix)
            else:
                events += self._raise("left_grid", device, ts, fix)
        if config.no_movement_s is not None:
            events += self._movement(fix, config.no_movement_s)
        return events

    def _movement(self, fix: Fix, limit_s: float) -> list[TrackingEvent]:
        anchor = self._anchors.get(fix.device)
        if anchor is None:
            self._anchors[fix.device] = _Anchor(fix.lat, fix.lon, fix.fix_time)
            return []
        moved = distance_m(anchor.lat, anchor.lon, fix.lat, fix.lon)
        if moved > self.config.no_movement_radius_m:
            self._anchors[fix.device] = _Anchor(fix.lat, fix.lon, fix.fix_time)
            return self._clear("no_movement", fix.device, fix.fix_time, fix)
        still = fix.fix_time - anchor.since
        if still >= limit_s:
            return self._raise("no_movement", fix.device, fix.fix_time, fix, still_s=round(still))
        return []

    def on_status(self, device: str, state: DeviceState, ts: float) -> list[TrackingEvent]:
        fix = self._last_fix.get(device)
        if state == "online":
            self._not_online_since.pop(device, None)
            return self._clear("offline_too_long", device, ts, fix)
        self._not_online_since.setdefault(device, ts)
        # A device that went away cannot be "still": start counting afresh when it is back.
        self._anchors.pop(device, None)
        return []

    def on_sos(self, device: str, active: bool, ts: float) -> list[TrackingEvent]:
        fix = self._last_fix.get(device)
        if active:
            return self._raise("sos", device, ts, fix)
        return self._clear("sos", device, ts, fix)

    def tick(self, now: float) -> list[TrackingEvent]:
        limit = self.config.offline_too_long_s
        if limit is None:
            return []
        events: list[TrackingEvent] = []
        for device, since in self._not_online_since.items():
            if now - since >= limit:
                events += self._raise(
                    "offline_too_long", device, now, self._last_fix.get(device),
                    offline_s=round(now - since),
                )  # fmt: skip
        return events
