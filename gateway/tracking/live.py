"""Live state, sans-I/O: each device's newest position and its online / unknown / offline status.

Status follows Traccar's idea: a device is `online` while it reports, `unknown` once it has been
silent for `online_timeout_s`, `offline` after `offline_timeout_s` or as soon as it says so (a
Last Will, a clean power-off). `tick(now)` applies the timeouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.tracking.model import DeviceState, Fix, StatusReport


@dataclass(slots=True)
class LiveConfig:
    online_timeout_s: float = 120.0
    offline_timeout_s: float = 600.0


@dataclass(frozen=True, slots=True)
class StatusChange:
    device: str
    state: DeviceState
    ts: float
    reason: str | None = None


@dataclass(slots=True)
class DeviceLive:
    state: DeviceState = "unknown"
    since: float = 0.0
    last_seen: float = 0.0  # server time of the last message from the device
    fix: Fix | None = None  # newest accepted position (by fix time)
    battery: int | None = None


@dataclass(slots=True)
class LiveTracker:
    config: LiveConfig = field(default_factory=LiveConfig)
    devices: dict[str, DeviceLive] = field(default_factory=dict)

    def _set(
        self, live: DeviceLive, device: str, state: DeviceState, now: float, reason: str | None
    ) -> list[StatusChange]:
        if live.state == state:
            return []
        live.state, live.since = state, now
        return [StatusChange(device, state, now, reason)]

    def on_fix(self, fix: Fix, now: float) -> list[StatusChange]:
        """An accepted position: remember it if newest; the device is online."""
        return self.on_fixes([fix], now)

    def on_fixes(self, fixes: list[Fix], now: float) -> list[StatusChange]:
        """`on_fix` for a batch (the ingest hot path: one call, locals, no list per fix)."""
        changes: list[StatusChange] = []
        devices = self.devices
        for fix in fixes:
            live = devices.get(fix.device)
            if live is None:
                live = devices[fix.device] = DeviceLive()
            if now > live.last_seen:
                live.last_seen = now
            newest = live.fix
            if newest is None or fix.fix_time >= newest.fix_time:
                live.fix = fix
                if fix.battery is not None:
                    live.battery = fix.battery
            if live.state != "online":
                changes += self._set(live, fix.device, "online", now, None)
        return changes

    def on_seen_many(self, seen: dict[str, float]) -> list[StatusChange]:
        """`on_seen` for every (device, server time) of a batch."""
        changes: list[StatusChange] = []
        devices = self.devices
        for device, now in seen.items():
            live = devices.get(device)
            if live is None:
                live = devices[device] = DeviceLive()
            if now > live.last_seen:
                live.last_seen = now
            if live.state != "online":
                changes += self._set(live, device, "online", now, None)
        return changes

    def on_seen(self, device: str, now: float) -> list[StatusChange]:
        """Any message from the device (even a filtered point) proves it is connected."""
        return self.on_seen_many({device: now})

    def on_status(self, report: StatusReport, now: float) -> list[StatusChange]:
        live = self.devices.setdefault(report.device, DeviceLive())
        if report.battery is not None:
            live.battery = report.battery
        if report.state == "online":
            live.last_seen = max(live.last_seen, now)
        return self._set(live, report.device, report.state, now, report.reason)

    def tick(self, now: float) -> list[StatusChange]:
        changes: list[StatusChange] = []
        config = self.config
        for device, live in self.devices.items():
            silent = now - live.last_seen
            if live.state == "online" and silent >= config.online_timeout_s:
                changes += self._set(live, device, "unknown", now, "timeout")
            if live.state == "unknown" and live.last_seen and silent >= config.offline_timeout_s:
                changes += self._set(live, device, "offline", now, "timeout")
        return changes

    def state(self, device: str) -> DeviceState:
        live = self.devices.get(device)
        return "unknown" if live is None else live.state

    def seed(self, fix: Fix, now: float) -> None:
        """A position from the database at start-up: known place, status still unknown."""
        live = self.devices.setdefault(fix.device, DeviceLive())
        if live.fix is None or fix.fix_time > live.fix.fix_time:
            live.fix = fix
            live.battery = fix.battery if fix.battery is not None else live.battery
        live.since = live.since or now
