"""Affiliation (§5.5): which talkgroups each device listens to, and SOS alarms (§8)."""

from __future__ import annotations

from collections.abc import Mapping, Set
from types import MappingProxyType

from gateway.control.output import Output
from gateway.directory import DeviceInfo
from gateway.floors import FloorTable
from protocol.control import Affiliate, Sos


class Affiliations:
    def __init__(self, floors: FloorTable, out: Output) -> None:
        self._floors = floors
        self._out = out
        self._by_device: dict[str, set[str]] = {}
        self.by_device: Mapping[str, Set[str]] = MappingProxyType(self._by_device)

    def join(self, device: str, tg: str) -> None:
        """A device that asks for a talkgroup's floor is affiliated to it."""
        self._by_device.setdefault(device, set()).add(tg)

    def count(self, tg: str) -> int:
        """How many devices are affiliated to `tg`."""
        return sum(1 for tgs in self._by_device.values() if tg in tgs)

    def affiliate(self, info: DeviceInfo, request: Affiliate, wall_ms: int) -> None:
        """Replace the device's affiliations by those of `request` it may have; tell it who is
        talking on each right now (late entry)."""
        talkgroups = self._floors.talkgroups
        accepted = [tg for tg in request.tgs if tg in info.talkgroups and tg in talkgroups]
        rejected = [tg for tg in request.tgs if tg not in accepted]
        self._by_device[info.id] = set(accepted)
        self._out.reply(info.id, "affiliated", re=request.id, tgs=accepted, rejected=rejected)
        for tg in accepted:
            floor = talkgroups[tg]
            if floor.holder is not None and floor.priority is not None:
                self._out.reply(
                    info.id,
                    "floor_taken",
                    tg=tg,
                    by=floor.holder,
                    burst=floor.burst,
                    priority=floor.priority.label,
                    call_no=floor.call,
                    ts=wall_ms,
                )


class SosAlarms:
    """Devices with an active SOS: their floor requests are emergencies."""

    def __init__(self, out: Output) -> None:
        self._out = out
        self._active: set[str] = set()

    @property
    def active(self) -> Set[str]:
        return self._active

    def __contains__(self, device: object) -> bool:
        return device in self._active

    def handle(self, info: DeviceInfo, request: Sos, wall_ms: int) -> None:
        if request.active:
            self._active.add(info.id)
        else:
            self._active.discard(info.id)
        self._out.event(
            "sos",
            info.id,
            wall_ms,
            {"active": request.active, "lat": request.lat, "lon": request.lon},
        )
        self._out.reply(info.id, "sos_ack", re=request.id)
