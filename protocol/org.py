"""The organisation: centre, areas, grids, their talkgroups and who may talk and listen where.

Pure data and rules; no I/O except :func:`load_org` / :func:`default_org`, which read a YAML org
file (format in ``protocol/orgs/longxi.yaml``, the shipped demo: the Longxi "1-3-13" network).

Talkgroups are derived from the units: one per grid (same id as the grid), one per area (same id
as the area) and the all-call ``all`` for the centre. Membership follows the hierarchy: everyone is
a member of their own unit's talkgroup and of every ancestor's (grid -> area -> all); dispatchers
are also members of every descendant's talkgroup, so a centre dispatcher is in every talkgroup.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from protocol.errors import InvalidRoleError, OrgError, UnknownUnitError
from protocol.geometry import Point, check_polygon, point_in_ring, ring_centroid
from protocol.ids import UNIT_ID_RE

ALL_CALL: Final = "all"
CENTRE_ID: Final = "centre"
ROLES: Final = ("officer", "guard", "dispatcher")
# Tokens usable in an org file's `affiliations` section, resolved relative to a device's unit.
AFFILIATION_TOKENS: Final = ("own", "parent", "ancestors", "all", "children", "descendants")
# Only dispatchers are members of talkgroups below their unit (see member_talkgroups).
_DISPATCHER_ONLY_TOKENS: Final = frozenset({"children", "descendants"})
DEFAULT_AFFILIATIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "officer": ("own", "ancestors"),
    "guard": ("own", "all"),
    "dispatcher": ("own", "ancestors", "children"),
}
MAX_NAME_CHARS: Final = 64

TalkgroupKind = Literal["grid", "area", "all"]


@dataclass(frozen=True, slots=True)
class Centre:
    id: str = CENTRE_ID
    name: str = "Centre"
    name_zh: str = ""


@dataclass(frozen=True, slots=True)
class Area:
    id: str
    name: str
    name_zh: str
    grids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Grid:
    """A grid with its boundary as a closed (lon, lat) ring and its centroid."""

    id: str
    name: str
    name_zh: str
    area: str
    polygon: tuple[Point, ...]
    centre: Point = field(default=(0.0, 0.0))


@dataclass(frozen=True, slots=True)
class Talkgroup:
    id: str
    name: str
    kind: TalkgroupKind
    unit: str


class Organisation:
    """The validated organisation. Build it with :func:`load_org` or directly (it validates)."""

    def __init__(
        self,
        centre: Centre,
        areas: Iterable[Area],
        grids: Iterable[Grid],
        *,
        talkgroup_names: Mapping[str, str] | None = None,
        affiliations: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.centre = centre
        self.areas: dict[str, Area] = {}
        self.grids: dict[str, Grid] = {}
        _check_id(centre.id, "centre id")
        for area in areas:
            _check_id(area.id, "area id")
            if area.id in self.areas:
                raise OrgError(f"duplicate area id {area.id!r}")
            self.areas[area.id] = area
        for grid in grids:
            _check_id(grid.id, "grid id")
            if grid.id in self.grids:
                raise OrgError(f"duplicate grid id {grid.id!r}")
            if grid.area not in self.areas:
                raise OrgError(f"grid {grid.id!r} names unknown area {grid.area!r}")
            self.grids[grid.id] = grid
        self._check_unique_units()
        self._check_area_grid_lists()
        self.talkgroups: dict[str, Talkgroup] = self._build_talkgroups(talkgroup_names or {})
        self.affiliations: dict[str, tuple[str, ...]] = _check_affiliations(
            DEFAULT_AFFILIATIONS if affiliations is None else affiliations
        )

    def _check_unique_units(self) -> None:
        ids = [self.centre.id, *self.areas, *self.grids]
        seen: set[str] = set()
        for unit in ids:
            if unit in seen:
                raise OrgError(
                    f"unit id {unit!r} is used twice "
                    "(centre, area and grid ids share one namespace)"
                )
            if unit == ALL_CALL:
                raise OrgError(f"unit id {ALL_CALL!r} is reserved for the all-call talkgroup")
            seen.add(unit)

    def _check_area_grid_lists(self) -> None:
        for area in self.areas.values():
            expected = tuple(g.id for g in self.grids.values() if g.area == area.id)
            if set(area.grids) != set(expected) or len(area.grids) != len(expected):
                raise OrgError(
                    f"area {area.id!r} lists grids {list(area.grids)} but the grids naming it are "
                    f"{list(expected)}"
                )

    def _build_talkgroups(self, names: Mapping[str, str]) -> dict[str, Talkgroup]:
        talkgroups = {
            ALL_CALL: Talkgroup(ALL_CALL, f"{self.centre.name} all-call", "all", self.centre.id)
        }
        for area in self.areas.values():
            talkgroups[area.id] = Talkgroup(area.id, f"{area.name} area", "area", area.id)
        for grid in self.grids.values():
            talkgroups[grid.id] = Talkgroup(grid.id, grid.name, "grid", grid.id)
        for tg_id, name in names.items():
            if tg_id not in talkgroups:
                raise OrgError(f"talkgroups section names unknown talkgroup {tg_id!r}")
            talkgroups[tg_id] = Talkgroup(
                tg_id,
                _check_name(name, f"talkgroup {tg_id} name"),
                talkgroups[tg_id].kind,
                talkgroups[tg_id].unit,
            )
        return talkgroups

    # ---- hierarchy -------------------------------------------------------------------------

    def units(self) -> frozenset[str]:
        """Every valid unit id: the centre's, the areas' and the grids'."""
        return frozenset((self.centre.id, *self.areas, *self.grids))

    def kind_of(self, unit: str) -> TalkgroupKind:
        """``all`` for the centre, ``area`` or ``grid``."""
        if unit == self.centre.id:
            return "all"
        if unit in self.areas:
            return "area"
        if unit in self.grids:
            return "grid"
        raise UnknownUnitError(f"unknown unit {unit!r}; known: centre, areas and grids of the org")

    def unit_name(self, unit: str) -> str:
        kind = self.kind_of(unit)
        if kind == "all":
            return self.centre.name
        return self.areas[unit].name if kind == "area" else self.grids[unit].name

    def parent(self, unit: str) -> str | None:
        kind = self.kind_of(unit)
        if kind == "grid":
            return self.grids[unit].area
        return self.centre.id if kind == "area" else None

    def ancestors(self, unit: str) -> tuple[str, ...]:
        """Units above `unit`, nearest first."""
        chain: list[str] = []
        parent = self.parent(unit)
        while parent is not None:
            chain.append(parent)
            parent = self.parent(parent)
        return tuple(chain)

    def children(self, unit: str) -> tuple[str, ...]:
        kind = self.kind_of(unit)
        if kind == "all":
            return tuple(self.areas)
        return self.areas[unit].grids if kind == "area" else ()

    def descendants(self, unit: str) -> tuple[str, ...]:
        """Units below `unit`, breadth first (areas before grids)."""
        found: list[str] = []
        frontier = list(self.children(unit))
        while frontier:
            found.extend(frontier)
            frontier = [c for u in frontier for c in self.children(u)]
        return tuple(found)

    # ---- talkgroups ------------------------------------------------------------------------

    def talkgroup_of(self, unit: str) -> str:
        """The talkgroup id of a unit: ``all`` for the centre, else the unit's own id."""
        return ALL_CALL if self.kind_of(unit) == "all" else unit

    def member_talkgroups(self, unit: str, role: str) -> frozenset[str]:
        """Talkgroups a device of `role` at `unit` may talk and listen on."""
        check_role(role)
        units = [unit, *self.ancestors(unit)]
        if role == "dispatcher":
            units.extend(self.descendants(unit))
        return frozenset(self.talkgroup_of(u) for u in units)

    def default_affiliation(self, unit: str, role: str) -> tuple[str, ...]:
        """Talkgroups a terminal listens to right after connecting, in a stable order."""
        check_role(role)
        ordered: list[str] = []
        for token in self.affiliations.get(role, DEFAULT_AFFILIATIONS[role]):
            for member in self._resolve_token(unit, token):
                tg = self.talkgroup_of(member)
                if tg not in ordered:
                    ordered.append(tg)
        return tuple(ordered)

    def _resolve_token(self, unit: str, token: str) -> tuple[str, ...]:
        if token == "own":
            return (unit,)
        if token == "parent":
            parent = self.parent(unit)
            return () if parent is None else (parent,)
        if token == "ancestors":
            return self.ancestors(unit)
        if token == "all":
            return (self.centre.id,)
        if token == "children":
            return self.children(unit)
        return self.descendants(unit)

    # ---- geography -------------------------------------------------------------------------

    def grid_at(self, lon: float, lat: float) -> str | None:
        """The id of the grid whose polygon contains the point, or None."""
        for grid in self.grids.values():
            if point_in_ring(lon, lat, grid.polygon):
                return grid.id
        return None


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidRoleError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    return role


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not UNIT_ID_RE.fullmatch(value):
        raise OrgError(f"{what} {value!r} must match {UNIT_ID_RE.pattern}")
    return value


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_CHARS:
        raise OrgError(f"{what} must be a non-empty string of at most {MAX_NAME_CHARS} characters")
    if any(not ch.isprintable() for ch in value):
        raise OrgError(f"{what} {value!r} contains control characters")
    return value


def _check_affiliations(raw: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    result = dict(DEFAULT_AFFILIATIONS)
    for role, tokens in raw.items():
        if role not in ROLES:
            raise OrgError(f"affiliations names unknown role {role!r}; expected {', '.join(ROLES)}")
        if isinstance(tokens, str) or not isinstance(tokens, Sequence):
            raise OrgError(f"affiliations.{role} must be a list of {', '.join(AFFILIATION_TOKENS)}")
        for token in tokens:
            if token not in AFFILIATION_TOKENS:
                raise OrgError(
                    f"affiliations.{role}: unknown entry {token!r}; "
                    f"expected {', '.join(AFFILIATION_TOKENS)}"
                )
            if token in _DISPATCHER_ONLY_TOKENS and role != "dispatcher":
                raise OrgError(
                    f"affiliations.{role}: {token!r} is only for dispatchers "
                    "(others are not members of talkgroups below their unit)"
                )
        result[role] = tuple(tokens)
    return result


# ---- org files -------------------------------------------------------------------------------

_TOP_KEYS: Final = frozenset({"version", "centre", "areas", "grids", "talkgroups", "affiliations"})
_CENTRE_KEYS: Final = frozenset({"id", "name", "name_zh"})
_AREA_KEYS: Final = frozenset({"id", "name", "name_zh"})
_GRID_KEYS: Final = frozenset({"id", "name", "name_zh", "area", "polygon"})
DEFAULT_ORG_RESOURCE: Final = "longxi.yaml"


def load_org(path: Path) -> Organisation:
    """Read and validate an org file; every problem is an :class:`OrgError` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OrgError(f"cannot read org file {path}: {exc}") from exc
    return parse_org(text, source=str(path))


def default_org() -> Organisation:
    """The shipped demo organisation (Longxi sub-district, 1 centre, 3 areas, 13 grids)."""
    resource = importlib.resources.files("protocol.orgs").joinpath(DEFAULT_ORG_RESOURCE)
    return parse_org(
        resource.read_text(encoding="utf-8"), source=f"protocol/orgs/{DEFAULT_ORG_RESOURCE}"
    )


def parse_org(text: str, *, source: str = "<org>") -> Organisation:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise OrgError(f"{source}: not valid YAML: {exc}") from exc
    try:
        return _build_org(data)
    except OrgError as exc:
        raise OrgError(f"{source}: {exc}") from exc


def _build_org(data: object) -> Organisation:
    top = _mapping(data, "the org file", _TOP_KEYS, required=("centre", "areas", "grids"))
    if top.get("version", 1) != 1:
        raise OrgError(f"unsupported org file version {top.get('version')!r}; expected 1")
    raw_centre = _mapping(top["centre"], "centre", _CENTRE_KEYS, required=("name",))
    centre = Centre(
        id=_check_id(raw_centre.get("id", CENTRE_ID), "centre id"),
        name=_check_name(raw_centre["name"], "centre name"),
        name_zh=_check_name(raw_centre.get("name_zh", raw_centre["name"]), "centre name_zh"),
    )
    raw_areas = _list(top["areas"], "areas")
    raw_grids = _list(top["grids"], "grids")
    grids = [_build_grid(raw, index) for index, raw in enumerate(raw_grids)]
    areas = []
    for index, raw in enumerate(raw_areas):
        fields = _mapping(raw, f"areas[{index}]", _AREA_KEYS, required=("id", "name"))
        area_id = _check_id(fields["id"], f"areas[{index}] id")
        areas.append(
            Area(
                id=area_id,
                name=_check_name(fields["name"], f"area {area_id} name"),
                name_zh=_check_name(
                    fields.get("name_zh", fields["name"]), f"area {area_id} name_zh"
                ),
                grids=tuple(g.id for g in grids if g.area == area_id),
            )
        )
    return Organisation(
        centre,
        areas,
        grids,
        talkgroup_names=_talkgroup_names(top.get("talkgroups")),
        affiliations=_affiliations(top.get("affiliations")),
    )


def _build_grid(raw: object, index: int) -> Grid:
    fields = _mapping(
        raw, f"grids[{index}]", _GRID_KEYS, required=("id", "name", "area", "polygon")
    )
    grid_id = _check_id(fields["id"], f"grids[{index}] id")
    polygon = check_polygon(fields["polygon"], f"grid {grid_id}")
    return Grid(
        id=grid_id,
        name=_check_name(fields["name"], f"grid {grid_id} name"),
        name_zh=_check_name(fields.get("name_zh", fields["name"]), f"grid {grid_id} name_zh"),
        area=_check_id(fields["area"], f"grid {grid_id} area"),
        polygon=polygon,
        centre=ring_centroid(polygon),
    )


def _talkgroup_names(raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    names: dict[str, str] = {}
    for tg_id, entry in _mapping(raw, "talkgroups", None).items():
        fields = _mapping(entry, f"talkgroups.{tg_id}", frozenset({"name"}), required=("name",))
        names[str(tg_id)] = _check_name(fields["name"], f"talkgroup {tg_id} name")
    return names


def _affiliations(raw: object) -> dict[str, Sequence[str]] | None:
    if raw is None:
        return None
    return {str(role): tokens for role, tokens in _mapping(raw, "affiliations", None).items()}


def _mapping(
    value: object, what: str, allowed: frozenset[str] | None, required: Sequence[str] = ()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise OrgError(f"{what} must be a mapping")
    if allowed is not None:
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            raise OrgError(f"{what} has unknown keys {unknown}; allowed: {sorted(allowed)}")
    missing = [key for key in required if key not in value]
    if missing:
        raise OrgError(f"{what} is missing required keys {missing}")
    return value


def _list(value: object, what: str) -> list[object]:
    if not isinstance(value, list) or not value:
        raise OrgError(f"{what} must be a non-empty list")
    return value
