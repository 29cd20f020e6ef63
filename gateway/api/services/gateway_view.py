"""A read facade over the running gateway for the API (same event loop as the runner)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.api.schemas import DeviceOut, FloorOut, Health, QueueEntry, TalkgroupOut
from gateway.api.services.access import ForbiddenError, SignedIn
from gateway.auth.audit import AuditWriter
from gateway.auth.scope import Action
from gateway.control.commands import CommandRecord
from gateway.floor import Floor
from gateway.runner import GatewayRunner
from gateway.store.registry import Device

#: Remote monitor (protocol §5.4) is bounded: at most this long per command.
MAX_MONITOR_S = 60
MAX_REASON_CHARS = 200


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
    """Devices, talkgroups and floors as the API shows them, and the few actions it may take,
    limited to what the caller's scope allows (gateway.auth.scope; out of scope:
    ForbiddenError, 403). Without a caller (tests of the view itself) everything is allowed."""

    def __init__(
        self,
        runner: GatewayRunner,
        problems: Callable[[], list[str]] = list,
        broker_restarts: Callable[[], int] = int,
        caller: SignedIn | None = None,
        audit: AuditWriter | None = None,
        battery: Callable[[str], int | None] = lambda device: None,
    ) -> None:
        """`problems`: what else degrades the gateway (broker, database writers:
        GatewayService.problems); `broker_restarts`: the managed broker's restart count."""
        self._runner = runner
        self._control = runner.control
        self._problems = problems
        self._broker_restarts = broker_restarts
        self._caller = caller
        self._audit = audit
        self._battery = battery  # tracking's newest level (beacons and status)

    # ---- scope -----------------------------------------------------------------------------

    def unit_of(self, device_id: str) -> str | None:
        info = self._control.directory.get(device_id)
        return info.unit if info is not None else None

    def _record(self, action: str, target: str, result: str, detail: dict[str, Any]) -> None:
        if self._audit is not None and self._caller is not None:
            self._audit.record(self._caller.account.name, action, target, result, detail)

    def require(self, action: Action, in_scope: bool = True, what: str = "") -> None:
        if self._caller is not None:
            self._caller.require(action, in_scope, what)

    def sees_unit(self, unit: str) -> bool:
        return self._caller is None or self._caller.scope.sees_unit(unit)

    def sees_device(self, device_id: str) -> bool:
        return self._caller is None or self._caller.scope.sees_device(device_id, self.unit_of)

    def sees_floor(self, key: str) -> bool:
        return self._caller is None or self._caller.scope.sees_floor(key, self.unit_of)

    def visible(self, devices: list[Device]) -> list[DeviceOut]:
        """The caller's devices among `devices`, with their live state."""
        return [self.device(d) for d in devices if self.sees_unit(d.unit)]

    def check_device(self, device: Device, action: Action = "read") -> None:
        """ForbiddenError unless the caller may `action` on `device`."""
        self.require(action, self.sees_unit(device.unit), f"device {device.id}")

    def check_provision(self, device_id: str, unit: str, action: str) -> None:
        """Only administrators provision; the attempt is audited either way."""
        try:
            self.require("provision", self.sees_unit(unit), f"unit {unit}")
        except ForbiddenError:
            self._record(f"device_{action}", device_id, "denied", {"unit": unit})
            raise

    def provisioned(self, device_id: str, action: str, detail: dict[str, Any]) -> None:
        self._record(f"device_{action}", device_id, "ok", detail)

    def health(self) -> Health:
        """`ok` only when connected to the broker and nothing else is wrong."""
        connected = self._runner.is_connected
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
            battery=_first(self._battery(device.id), presence.battery),
            talkgroups=sorted(info.talkgroups) if info else [],
            sos=device.id in control.alarms,
            online=device.enabled and presence.state == "online",
            stunned=device.id in control.stunned,
        )

    def talkgroups(self) -> list[TalkgroupOut]:
        control = self._control
        directory = control.directory
        floors = control.floors.talkgroups
        result = []
        for tg, name in sorted(directory.talkgroups.items()):
            if self._caller is not None and not self._caller.scope.sees_talkgroup(tg):
                continue
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
        return [
            floor_out(floor) for key, floor in self._control.floors.items() if self.sees_floor(key)
        ]

    def revoke(self, key: str) -> FloorOut | None:
        """A dispatcher's revoke of floor `key`; the floor after it, or None if there is none."""
        floor = self._control.floors.get(key)
        if floor is None:
            return None
        try:
            self.require("command", self.sees_floor(key), f"floor {key}")
        except ForbiddenError:
            self._record("floor_revoke", key, "denied", {})
            raise
        holder = floor.holder
        self._runner.revoke(key)
        self._record("floor_revoke", key, "ok", {"holder": holder})
        return floor_out(floor)

    def send_command(self, device_id: str, cmd: str, fields: Mapping[str, Any]) -> CommandRecord:
        """Send a command to a terminal, or queue it while the terminal is offline; its record
        (ControlError if it cannot be sent).

        `monitor` is a controlled power: centre and area dispatchers only, a terminal in their
        scope, to the caller's own talker identity only (never another device), for at most
        MAX_MONITOR_S seconds, with a reason; always audited."""
        detail: dict[str, Any] = {"cmd": cmd}
        try:
            if cmd == "monitor":
                fields = self._monitor_fields(device_id, fields)
                detail |= {"seconds": fields["seconds"], "reason": fields["reason"]}
            else:
                self.require("command", self.sees_device(device_id), f"device {device_id}")
        except ForbiddenError as exc:
            self._record("command", device_id, "denied", detail | {"why": str(exc)})
            raise
        by = self._caller.account.name if self._caller is not None else "gateway"
        command_id = self._runner.send_command(device_id, cmd, by, **fields)
        record = self._control.command_log.get(command_id)
        self._record(
            "command", device_id, "sent", detail | {"id": command_id, "state": record.state}
        )
        return record

    def commands(self, device_id: str, stored: list[CommandRecord]) -> list[CommandRecord]:
        """The device's commands, newest first: `stored` ones, as they are now when this
        process knows better (a change may still be on its way to the database)."""
        live = {r.id: r for r in self._control.command_log.records(device_id)}
        merged = {r.id: live.get(r.id, r) for r in stored}
        merged.update((k, r) for k, r in live.items() if k not in merged)
        return sorted(merged.values(), key=lambda r: r.seq, reverse=True)

    def _monitor_fields(self, device_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        self.require("monitor", self.sees_device(device_id), f"device {device_id}")
        if self._caller is None:
            return dict(fields)
        own = self._caller.account.talker
        if fields.get("by", own) != own:
            raise ForbiddenError("monitor goes only to the requesting account, never a device")
        seconds = fields.get("seconds")
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            raise ForbiddenError("monitor needs whole `seconds`")
        if not 1 <= seconds <= MAX_MONITOR_S:
            raise ForbiddenError(f"monitor lasts 1-{MAX_MONITOR_S} seconds")
        reason = fields.get("reason")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON_CHARS:
            raise ForbiddenError(f"monitor needs a `reason` (1-{MAX_REASON_CHARS} characters)")
        return {"seconds": seconds, "by": own, "reason": reason.strip()}


def _first(*values: int | None) -> int | None:
    """The first value that is known."""
    return next((v for v in values if v is not None), None)
