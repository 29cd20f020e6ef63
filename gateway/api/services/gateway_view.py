"""A read facade over the running gateway for the API (same event loop as the runner)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.api.schemas import DeviceOut, FloorOut, Health, QueueEntry, TalkgroupOut
from gateway.floor import Floor
from gateway.runner import GatewayRunner
from gateway.store.registry import Device


def floor_out(floor: Floor) -> FloorOut:
    return FloorOut(
        key=floor.key,
        state=str(floor.state),
        holder=floor.holder,
        burst=floor.burst,
        priority=floor.priority.label if floor.priority is not None else None,
        queue=[QueueEntry(device=d, priority=p.label) for d, p in floor.queue()],
    )


class GatewayView:
    """Devices, talkgroups and floors as the API shows them, and the few actions it may take."""

    def __init__(
        self,
        runner: GatewayRunner,
        problems: Callable[[], list[str]] = list,
        broker_restarts: Callable[[], int] = int,
    ) -> None:
        """`problems`: what else degrades the gateway (broker, database writers:
        GatewayService.problems); `broker_restarts`: the managed broker's restart count."""
        self._runner = runner
        self._control = runner.control
        self._problems = problems
        self._broker_restarts = broker_restarts

    def health(self) -> Health:
        """`ok` only when connected to the broker and nothing else is wrong."""
        connected = self._runner.client.is_connected
        broker = self._runner.settings.broker.url
        problems = ([] if connected else [f"not connected to the broker at {broker}"]) + (
            self._problems()
        )
        return Health(
            status="degraded" if problems else "ok",
            broker=broker,
            mqtt_connected=connected,
            devices=len(self._control.directory.devices),
            devices_online=self._runner.gauges().devices_online,
            problems=problems,
            broker_restarts=self._broker_restarts(),
        )

    def is_known(self, device_id: str) -> bool:
        """Whether the gateway's directory has this device (it may be disabled)."""
        return self._control.directory.get(device_id) is not None

    def device(self, device: Device) -> DeviceOut:
        """A stored device with its live state (presence, battery, talkgroups, SOS)."""
        control = self._control
        presence = control.roster.get(device.id)
        info = control.directory.get(device.id)
        return DeviceOut(
            id=device.id,
            name=device.name,
            unit=device.unit,
            role=device.role,
            enabled=device.enabled,
            presence=presence.state,
            presence_since_ms=presence.since_ms or None,
            battery=presence.battery,
            talkgroups=sorted(info.talkgroups) if info else [],
            sos=device.id in control.alarms,
        )

    def talkgroups(self) -> list[TalkgroupOut]:
        control = self._control
        directory = control.directory
        floors = control.floors.talkgroups
        result = []
        for tg, name in sorted(directory.talkgroups.items()):
            floor = floors[tg]
            result.append(
                TalkgroupOut(
                    id=tg,
                    name=name,
                    members=len(directory.members(tg)),
                    affiliated=control.affiliation.count(tg),
                    floor=str(floor.state),
                    talker=floor.holder,
                )
            )
        return result

    def floors(self) -> list[FloorOut]:
        """Every floor: talkgroups, then live private calls."""
        return [floor_out(f) for f in self._control.floors.floors()]

    def revoke(self, key: str) -> FloorOut | None:
        """A dispatcher's revoke of floor `key`; the floor after it, or None if there is none."""
        floor = self._control.floors.get(key)
        if floor is None:
            return None
        self._runner.revoke(key)
        return floor_out(floor)

    def send_command(self, device_id: str, cmd: str, fields: Mapping[str, Any]) -> str:
        """Send a command to a terminal; its id (ControlError if it cannot be sent)."""
        return self._runner.send_command(device_id, cmd, **fields)
