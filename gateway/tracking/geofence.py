"""Geofences: the organisation's grid polygons plus custom polygons, circles and corridors.

Geometries live in a local metric projection (metres around the organisation's centre) so a
circle's radius and a corridor's half-width are metres. Membership of a whole batch of points is
computed with shapely's vectorised `contains_xy` per fence; per device the tracker remembers
which fences it was in and emits `enter` / `exit` when that changes. A device's first position
only establishes where it is (no event): after a gateway restart nobody "enters" again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

from gateway.tracking.errors import GeofenceError
from gateway.tracking.geo import FloatArray, LocalProjection
from gateway.tracking.model import Fix, TrackingEvent
from protocol.org import Organisation

FenceKind = Literal["grid", "polygon", "circle", "corridor"]
KINDS: Final = ("grid", "polygon", "circle", "corridor")
MAX_RADIUS_M: Final = 100_000.0


@dataclass(frozen=True, slots=True)
class GeofenceSpec:
    """A fence as stored/exchanged: coordinates are (lon, lat) pairs (RFC 7946 order)."""

    id: str
    name: str
    kind: FenceKind
    coordinates: tuple[tuple[float, float], ...]
    radius_m: float | None = None  # circle radius; corridor half-width


def _check_lonlat(
    coordinates: Iterable[Sequence[float]], what: str
) -> tuple[tuple[float, float], ...]:
    points: list[tuple[float, float]] = []
    for pair in coordinates:
        if len(pair) != 2 or not all(isinstance(v, int | float) and math.isfinite(v) for v in pair):
            raise GeofenceError(f"{what}: each coordinate must be [lon, lat], got {pair!r}")
        lon, lat = float(pair[0]), float(pair[1])
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise GeofenceError(f"{what}: [{lon}, {lat}] is not a valid [lon, lat]")
        points.append((lon, lat))
    return tuple(points)


def make_spec(
    fence_id: str,
    name: str,
    kind: str,
    coordinates: Iterable[Sequence[float]],
    radius_m: float | None = None,
) -> GeofenceSpec:
    """Validate a fence definition; raise GeofenceError with what is wrong."""
    if not fence_id or len(fence_id) > 64 or not fence_id.isprintable():
        raise GeofenceError(f"geofence id must be 1-64 printable characters, got {fence_id!r}")
    if kind not in KINDS:
        raise GeofenceError(f"geofence kind must be one of {', '.join(KINDS)}, got {kind!r}")
    points = _check_lonlat(coordinates, f"geofence {fence_id!r}")
    if kind in ("grid", "polygon") and points and points[0] != points[-1]:
        points = (*points, points[0])  # close the ring
    needed = {"grid": 4, "polygon": 4, "circle": 1, "corridor": 2}[kind]
    if len(points) < needed:
        raise GeofenceError(
            f"a {kind} geofence needs at least {needed} coordinates (a closed ring for polygons)"
        )
    if kind in ("circle", "corridor"):
        if radius_m is None or not (0 < radius_m <= MAX_RADIUS_M):
            raise GeofenceError(f"a {kind} geofence needs radius_m in (0, {MAX_RADIUS_M:.0f}]")
        if kind == "circle" and len(points) != 1:
            raise GeofenceError("a circle geofence has exactly one coordinate: its centre")
    elif radius_m is not None:
        raise GeofenceError(f"a {kind} geofence takes no radius_m")
    return GeofenceSpec(fence_id, name or fence_id, kind, points, radius_m)  # type: ignore[arg-type]


def grid_specs(org: Organisation) -> list[GeofenceSpec]:
    """Every grid of the organisation as a fence with the grid's id."""
    return [
        GeofenceSpec(grid.id, grid.name, "grid", tuple(grid.polygon)) for grid in org.grids.values()
    ]


def org_projection(org: Organisation) -> LocalProjection:
    """A projection centred on the organisation's grids (or 0,0 for an empty organisation)."""
    points = [p for grid in org.grids.values() for p in grid.polygon]
    if not points:
        return LocalProjection(0.0, 0.0)
    lons = [p[0] for p in points]
    lats = [p[1] for p in points]
    return LocalProjection((min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2)


def build_geometry(spec: GeofenceSpec, projection: LocalProjection) -> BaseGeometry:
    xy = [projection.to_xy(lon, lat) for lon, lat in spec.coordinates]
    geometry: BaseGeometry
    if spec.kind in ("grid", "polygon"):
        geometry = Polygon(xy)
        if not geometry.is_valid:
            raise GeofenceError(
                f"geofence {spec.id!r}: polygon is invalid ({shapely.is_valid_reason(geometry)})"
            )
    elif spec.kind == "circle":
        assert spec.radius_m is not None
        geometry = Point(xy[0]).buffer(spec.radius_m, quad_segs=16)
    else:
        assert spec.radius_m is not None
        line = LineString(xy)
        if line.length == 0:
            raise GeofenceError(f"geofence {spec.id!r}: corridor has zero length")
        geometry = line.buffer(spec.radius_m, quad_segs=8)
    if geometry.area <= 0:
        raise GeofenceError(f"geofence {spec.id!r} has no area")
    shapely.prepare(geometry)
    return geometry


class GeofenceSet:
    """Prepared fence geometries and vectorised membership tests."""

    def __init__(self, specs: Iterable[GeofenceSpec], projection: LocalProjection) -> None:
        self.projection = projection
        self.specs: list[GeofenceSpec] = []
        self.geometries: list[BaseGeometry] = []
        seen: set[str] = set()
        for spec in specs:
            if spec.id in seen:
                raise GeofenceError(f"duplicate geofence id {spec.id!r}")
            seen.add(spec.id)
            self.geometries.append(build_geometry(spec, projection))
            self.specs.append(spec)
        self.index = {spec.id: i for i, spec in enumerate(self.specs)}

    def __len__(self) -> int:
        return len(self.specs)

    def project(self, lons: FloatArray, lats: FloatArray) -> tuple[FloatArray, FloatArray]:
        return self.projection.arrays_to_xy(lons, lats)

    def membership(self, xs: FloatArray, ys: FloatArray) -> npt.NDArray[np.bool_]:
        """A (points x fences) boolean matrix: point i is inside fence j."""
        matrix = np.zeros((len(xs), len(self.geometries)), dtype=bool)
        for j, geometry in enumerate(self.geometries):
            matrix[:, j] = shapely.contains_xy(geometry, xs, ys)
        return matrix

    def fences_at(self, lon: float, lat: float) -> list[str]:
        x, y = self.projection.to_xy(lon, lat)
        row = self.membership(np.array([x]), np.array([y]))[0]
        return [self.specs[j].id for j in np.flatnonzero(row)]


def membership_codes(matrix: npt.NDArray[np.bool_]) -> list[int]:
    """Each row of a (points x fences) matrix as an int bitmask (bit j = inside fence j)."""
    count, fences = matrix.shape
    if fences == 0:
        return [0] * count
    if fences <= 62:
        weights = np.left_shift(np.int64(1), np.arange(fences, dtype=np.int64))
        codes: list[int] = (matrix.astype(np.int64) @ weights).tolist()
        return codes
    packed = np.packbits(matrix, axis=1, bitorder="little")
    width = packed.shape[1]
    raw = packed.tobytes()
    return [int.from_bytes(raw[i * width : (i + 1) * width], "little") for i in range(count)]


def _bits(code: int) -> list[int]:
    return [j for j in range(code.bit_length()) if code >> j & 1]


class GeofenceTracker:
    """Per device, the fences it is inside (a bitmask); `update` turns fixes into transitions."""

    def __init__(self, fences: GeofenceSet) -> None:
        self.fences = fences
        self._inside: dict[str, int] = {}

    def replace(self, fences: GeofenceSet) -> None:
        """New fence definitions: keep each device's state for fences that still exist."""
        old_specs = self.fences.specs
        for device, code in self._inside.items():
            ids = (old_specs[j].id for j in _bits(code))
            self._inside[device] = sum(1 << fences.index[i] for i in ids if i in fences.index)
        self.fences = fences

    def inside(self, device: str) -> list[str]:
        return sorted(self.fences.specs[j].id for j in _bits(self._inside.get(device, 0)))

    def update(self, fixes: Sequence[Fix], xs: FloatArray, ys: FloatArray) -> list[TrackingEvent]:
        """Transitions caused by `fixes` (in order; xs/ys are their projected coordinates)."""
        if not fixes or not len(self.fences):
            return []
        codes = membership_codes(self.fences.membership(xs, ys))
        events: list[TrackingEvent] = []
        specs = self.fences.specs
        inside = self._inside
        for fix, code in zip(fixes, codes, strict=True):
            previous = inside.get(fix.device)
            if previous == code:
                continue
            inside[fix.device] = code
            if previous is None:
                continue
            for j in _bits(previous & ~code):
                events.append(_event("exit", fix, specs[j]))
            for j in _bits(code & ~previous):
                events.append(_event("enter", fix, specs[j]))
        return events


def _event(kind: str, fix: Fix, spec: GeofenceSpec) -> TrackingEvent:
    return TrackingEvent(
        "geofence",
        kind,
        fix.device,
        fix.fix_time,
        active=kind == "enter",
        geofence=spec.id,
        lat=fix.lat,
        lon=fix.lon,
        data={"name": spec.name, "fence_kind": spec.kind},
    )
