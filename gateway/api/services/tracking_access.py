"""Tracking resources within the caller's scope (gateway.auth.scope): devices' tracks and
events by the device's unit, geofences by the unit they lie in, checkpoints by their grid."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from gateway.api.services.access import SignedIn
from gateway.auth.scope import Action, geofence_unit
from gateway.tracking.checkpoints import Checkpoint
from gateway.tracking.geofence import GeofenceSpec
from gateway.tracking.service import TrackingService

T = TypeVar("T")


class TrackingAccess:
    def __init__(self, tracking: TrackingService, caller: SignedIn) -> None:
        self.tracking = tracking
        self.caller = caller
        self.scope = caller.scope

    def unit_of(self, device: str) -> str | None:
        found = self.tracking.devices.get(device)
        return found.unit if found is not None else None

    def sees_device(self, device: str | None) -> bool:
        return self.scope.whole or (
            device is not None and self.scope.sees_device(device, self.unit_of)
        )

    def require(self, action: Action) -> None:
        self.caller.require(action)

    def device(self, device: str, action: Action = "read") -> None:
        """ForbiddenError unless the caller may `action` on the (known) device's track."""
        self.caller.require(action, self.sees_device(device), f"device {device}")

    def rows(self, rows: Iterable[T], device_of: Any) -> list[T]:
        self.caller.require("read")
        return [row for row in rows if self.sees_device(device_of(row))]

    def fence_unit(self, spec: GeofenceSpec) -> str:
        return geofence_unit(spec.kind, spec.id, spec.coordinates, self.tracking.org)

    def geofences(self, specs: Sequence[GeofenceSpec]) -> list[GeofenceSpec]:
        self.caller.require("read")
        return [s for s in specs if self.scope.sees_geofence(self.fence_unit(s))]

    def change_geofence(self, spec: GeofenceSpec) -> None:
        unit = self.fence_unit(spec)
        self.caller.require("command", self.scope.sees_geofence(unit), f"geofence {spec.id}")

    def checkpoints(self, found: Iterable[Checkpoint]) -> list[Checkpoint]:
        self.caller.require("read")
        return [c for c in found if self.scope.sees_checkpoint(c.grid)]

    def change_checkpoint(self, grid: str, what: str) -> None:
        self.caller.require("command", self.scope.sees_checkpoint(grid), what)

    def device_grids(self, grids: dict[str, str | None]) -> dict[str, str | None]:
        return {d: g for d, g in grids.items() if self.sees_device(d)}
