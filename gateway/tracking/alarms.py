"""Alarms, sans-I/O: SOS, low battery, offline too long, left the assigned grid, no movement.

Each alarm is raised once (active=True) and cleared once (active=False) per episode; both are
`TrackingEvent`s of kind "alarm" to be stored and streamed. Inputs are accepted fixes (in fix-time
order per device), status changes, SOS from the control plane, and `tick(now)` for time-outs.
"""

from __future__ import annotations

from collections.abc import Sequence
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
        return self.on_fixes([fix], [in_assigned_grid])

    def on_fixes(  # noqa: C901 - one inlined loop: the ingest hot path makes no call per fix
        self, fixes: Sequence[Fix], in_assigned_grid: Sequence[bool | None]
    ) -> list[TrackingEvent]:
        """`on_fix` for a batch, in order (the ingest hot path: the common case of no change
        costs a few dictionary look-ups per fix and no call)."""
        events: list[TrackingEvent] = []
        config = self.config
        low, clear_at = config.low_battery_pct, config.low_battery_clear_pct
        left_grid = config.left_grid
        limit_s, radius = config.no_movement_s, config.no_movement_radius_m
        active, last_fixes, anchors = self.active, self._last_fix, self._anchors
        for fix, inside in zip(fixes, in_assigned_grid, strict=True):
            device, ts = fix.device, fix.fix_time
            previous = last_fixes.get(device)
            if previous is not None and ts < previous.fix_time:
                continue  # a late point from an offline buffer says nothing about now
            last_fixes[device] = fix
            battery = fix.battery
            if low is not None and battery is not None:
                if battery <= low:
                    if (device, "low_battery") not in active:
                        events += self._raise("low_battery", device, ts, fix, battery=battery)
                elif battery >= clear_at and (device, "low_battery") in active:
                    events += self._clear("low_battery", device, ts, fix)
            if left_grid and inside is not None:
                if (device, "left_grid") in active:
                    if inside:
                        events += self._clear("left_grid", device, ts, fix)
                elif not inside:
                    events += self._raise("left_grid", device, ts, fix)
            if limit_s is None:
                continue
            anchor = anchors.get(device)
            if anchor is None:
                anchors[device] = _Anchor(fix.lat, fix.lon, ts)
                continue
            if distance_m(anchor.lat, anchor.lon, fix.lat, fix.lon) > radius:
                anchor.lat, anchor.lon, anchor.since = fix.lat, fix.lon, ts
                if (device, "no_movement") in active:
                    events += self._clear("no_movement", device, ts, fix)
            elif ts - anchor.since >= limit_s and (device, "no_movement") not in active:
                still = round(ts - anchor.since)
                events += self._raise("no_movement", device, ts, fix, still_s=still)
        return events

    def on_status(self, device: str, state: DeviceState, ts: float) -> list[TrackingEvent]:
        fix = self._last_fix.get(device)
        if state == "online":
            self._not_online_since.pop(device, None)
            return self._clear("offline_too_long", device, ts, fix)
        self._not_online_since.setdefault(device, ts)
        # A device that went away cannot be "still": start counting afresh when it is back.
        self._anchors.pop(device, None)
        return []

    def on_sos(
        self,
        device: str,
        active: bool,
        ts: float,
        lat: float | None = None,
        lon: float | None = None,
    ) -> list[TrackingEvent]:
        """An SOS raised or cancelled: at the position it carried (lat, lon), else at the
        device's last fix."""
        fix = self._last_fix.get(device)
        if lat is not None and lon is not None:
            fix = Fix(device, ts, lat, lon)
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
