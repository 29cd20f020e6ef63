"""Presence (§4): each device's last known state and battery, from its retained status."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.control.output import Output
from protocol.control import DeviceStatus


@dataclass(slots=True)
class Presence:
    state: str = "unknown"
    since_ms: int = 0
    battery: int | None = None


class PresenceTable:
    def __init__(self, out: Output) -> None:
        self._out = out
        self._states: dict[str, Presence] = {}
        self.states: Mapping[str, Presence] = MappingProxyType(self._states)

    def update(self, device: str, status: DeviceStatus, wall_ms: int) -> bool:
        """Take a device's status; True if its state changed (a `presence` event is emitted)."""
        presence = self._states.setdefault(device, Presence())
        if status.battery is not None:
            presence.battery = status.battery
        if presence.state == status.state:
            return False
        presence.state, presence.since_ms = status.state, wall_ms
        self._out.event(
            "presence", device, wall_ms, {"state": status.state, "reason": status.reason}
        )
        return True

    def get(self, device: str) -> Presence:
        """The device's presence (state "unknown" if it never sent a status)."""
        return self._states.get(device, Presence())

    def devices(self) -> list[str]:
        """Every device that ever sent a status."""
        return list(self._states)

    def online(self) -> int:
        return sum(1 for p in self._states.values() if p.state == "online")
