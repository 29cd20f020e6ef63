"""Who may see and do what (pure, sans-I/O): an account's role applied to the organisation.

A grid dispatcher sees and commands its grid; an area dispatcher its area and the area's grids;
the centre, administrators and viewers see everything. Resources are placed in units:

- a device: its unit;
- a talkgroup: the unit it belongs to (``all`` is the centre's); an incident's own talkgroup
  (``inc-<n>``): its incident's (below), found by the caller's :data:`IncidentOf`;
- a floor: a talkgroup's floor is the talkgroup's; a private call (``call:a:b``) is in scope
  when either party is;
- a recording: its floor's, or its talker's;
- a geofence: a grid fence is its grid; a custom fence is the grid holding its first point
  (the centre when outside every grid);
- a checkpoint: its grid;
- an incident: its handling unit (the grid, its area or the centre, by its tier) or its grid.

What a role may do at all is an :data:`Action` set (:data:`ABILITIES`); doing it on a resource
takes both the action and the resource being in scope. Routes and streams ask this module
through the API's services; it is tested as a table (every role x resource kind).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from gateway.auth.roles import Role, RoleKind
from protocol.org import ALL_CALL, Organisation

Action = Literal[
    "read",  # lists, live state, tracks, events, streams
    "listen",  # recordings and their audio
    "command",  # commands to terminals, floor revokes, geofences and checkpoints
    "monitor",  # open a terminal's microphone to oneself (protocol §5.4)
    "provision",  # add, disable, enable, rotate devices
    "accounts",  # manage accounts
    "audit",  # read the audit trail
    "metrics",  # Prometheus metrics
]
ACTIONS: Final[tuple[Action, ...]] = (
    "read", "listen", "command", "monitor", "provision", "accounts", "audit", "metrics",
)  # fmt: skip

ABILITIES: Final[Mapping[RoleKind, frozenset[Action]]] = {
    "admin": frozenset({"read", "listen", "command", "provision", "accounts", "audit", "metrics"}),
    "centre": frozenset({"read", "listen", "command", "monitor", "audit", "metrics"}),
    "area": frozenset({"read", "listen", "command", "monitor"}),
    "grid": frozenset({"read", "listen", "command"}),
    "viewer": frozenset({"read"}),
}

UnitOf = Callable[[str], str | None]  # device id -> its unit (None: unknown device)
#: Talkgroup -> its incident's (grid, handling unit); None: not an incident's talkgroup.
IncidentOf = Callable[[str], tuple[str | None, str] | None]


def no_incidents(_tg: str) -> tuple[str | None, str] | None:
    return None


@dataclass(frozen=True, slots=True)
class Scope:
    """What one role sees: every unit (`whole`), or exactly `units` and their `talkgroups`."""

    role: Role
    whole: bool
    units: frozenset[str]
    talkgroups: frozenset[str]

    def may(self, action: Action) -> bool:
        return action in ABILITIES[self.role.kind]

    def sees_unit(self, unit: str | None) -> bool:
        return self.whole or (unit is not None and unit in self.units)

    def sees_device(self, device: str, unit_of: UnitOf) -> bool:
        return self.whole or self.sees_unit(unit_of(device))

    def sees_talkgroup(self, tg: str, incident_of: IncidentOf = no_incidents) -> bool:
        """A talkgroup of its units, or an incident's talkgroup whose incident it sees."""
        if self.whole or tg in self.talkgroups:
            return True
        placed = incident_of(tg)
        return placed is not None and self.sees_incident(*placed)

    def sees_floor(self, key: str, unit_of: UnitOf, incident_of: IncidentOf = no_incidents) -> bool:
        if self.whole:
            return True
        parties = call_parties(key)
        if parties is None:
            return self.sees_talkgroup(key, incident_of)
        return any(self.sees_device(p, unit_of) for p in parties)

    def sees_recording(
        self, floor_key: str, talker: str, unit_of: UnitOf, incident_of: IncidentOf = no_incidents
    ) -> bool:
        return self.sees_floor(floor_key, unit_of, incident_of) or self.sees_device(talker, unit_of)

    def sees_geofence(self, unit: str | None) -> bool:
        return self.sees_unit(unit)

    def sees_checkpoint(self, grid: str) -> bool:
        return self.sees_unit(grid)

    def sees_incident(self, grid: str | None, unit: str) -> bool:
        """An incident: where it is handled (its grid, area or the centre), or its grid — a
        grid keeps sight of its incident when it is escalated; acting on it takes the
        handling unit (:meth:`handles_incident`)."""
        return self.sees_unit(unit) or self.sees_unit(grid)

    def handles_incident(self, unit: str) -> bool:
        return self.sees_unit(unit)

    def allows(self, action: Action, in_scope: bool = True) -> bool:
        """Whether `action` on a resource that is (or is not) in scope is allowed."""
        return self.may(action) and in_scope


def call_parties(key: str) -> tuple[str, str] | None:
    """The two devices of a private call's floor key ``call:a:b``; None for a talkgroup's."""
    if not key.startswith("call:"):
        return None
    parts = key.split(":")
    return (parts[1], parts[2]) if len(parts) == 3 else None


def scope_of(role: Role, org: Organisation) -> Scope:
    if role.kind in ("admin", "centre", "viewer"):
        units = org.units()
        return Scope(role, True, units, frozenset(org.talkgroup_of(u) for u in units))
    assert role.unit is not None
    units = frozenset((role.unit, *org.descendants(role.unit)))
    return Scope(role, False, units, frozenset(org.talkgroup_of(u) for u in units))


def geofence_unit(
    kind: str, fence_id: str, coordinates: Sequence[Sequence[float]], org: Organisation
) -> str:
    """The unit a geofence belongs to (module docstring)."""
    if kind == "grid" and fence_id in org.grids:
        return fence_id
    if coordinates:
        first = coordinates[0]
        grid = org.grid_at(float(first[0]), float(first[1]))
        if grid is not None:
            return grid
    return org.centre.id


def talkgroup_unit(tg: str, org: Organisation) -> str:
    return org.centre.id if tg == ALL_CALL else tg


def event_visible(
    scope: Scope,
    message: Mapping[str, object],
    unit_of: UnitOf,
    incident_of: IncidentOf = no_incidents,
) -> bool:
    """Whether a live event (the event hub's message) is in scope: a floor event by its floor
    (an incident talkgroup's by its incident), anything else by its device; events of neither
    only for whole-organisation scopes."""
    if scope.whole:
        return True
    incident = message.get("incident")
    if message.get("kind") == "incident" and isinstance(incident, Mapping):
        grid, unit = incident.get("grid"), incident.get("unit")
        return isinstance(unit, str) and scope.sees_incident(
            grid if isinstance(grid, str) else None, unit
        )
    floor = message.get("floor")
    if isinstance(floor, str):
        return scope.sees_floor(floor, unit_of, incident_of)
    device = message.get("device")
    if isinstance(device, str):
        return scope.sees_device(device, unit_of)
    return False
