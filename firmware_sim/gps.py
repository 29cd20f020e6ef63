"""Simulated GPS: patrol routes inside a grid, walking or e-bike movement, realistic fixes.

Sans-I/O: :meth:`GpsModel.fix` takes the simulation time and the wall-clock milliseconds and
returns a :class:`Fix`. Positions are computed on a local flat-earth plane around the route
(grids are about a kilometre across, where that is accurate to centimetres).

Fix errors are a slowly wandering bias plus white noise scaled by the reported accuracy, as a
phone-grade receiver shows. A small share of fixes is deliberately bad so the server's filters
are exercised: ``zero`` (0, 0 "null island"), ``jump`` (a multipath outlier hundreds of metres
off with an optimistic accuracy) and ``stale`` (the previous fix repeated with its old time).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.session import Beacon
from firmware_sim.errors import RouteError
from protocol.geometry import Point, ring_centroid
from protocol.org import Grid

M_PER_DEG_LAT = 111_320.0
SPEEDS = {"walk": (1.0, 1.6), "ebike": (4.0, 7.0)}  # m/s, drawn per leg
BAD_KINDS = ("zero", "jump", "stale")


@dataclass(frozen=True, slots=True)
class Route:
    """A patrol route as (lon, lat) points; a loop returns to its first point."""

    points: tuple[Point, ...]
    loop: bool = True

    def __post_init__(self) -> None:
        if len(self.points) < 2:
            raise RouteError("a route needs at least two points")
        for lon, lat in self.points:
            if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
                raise RouteError(f"route point {lon}, {lat} is out of range")

    @classmethod
    def from_grid(cls, grid: Grid, inset: float = 0.25) -> Route:
        """A perimeter patrol: the grid's polygon pulled `inset` of the way to its centroid."""
        if not 0.0 <= inset < 1.0:
            raise RouteError("inset must be in [0, 1)")
        cx, cy = ring_centroid(grid.polygon)
        ring = grid.polygon[:-1] if grid.polygon[0] == grid.polygon[-1] else grid.polygon
        points = tuple((x + (cx - x) * inset, y + (cy - y) * inset) for x, y in ring)
        return cls(points, loop=True)

    def legs(self) -> list[tuple[Point, Point]]:
        pts = list(self.points)
        if self.loop:
            pts.append(pts[0])
        else:  # out and back
            pts.extend(reversed(pts[:-1]))
        return [(pts[i], pts[i + 1]) for i in range(len(pts) - 1) if pts[i] != pts[i + 1]]


def load_geojson_routes(path: Path) -> list[Route]:
    """Routes from a GeoJSON file: LineString, MultiLineString or Polygon (its outer ring),
    bare or in Features / a FeatureCollection. Coordinates are [lon, lat(, alt)]."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RouteError(f"cannot read GeoJSON {path}: {exc}") from exc
    routes = _routes(data)
    if not routes:
        raise RouteError(f"{path}: no LineString or Polygon to patrol")
    return routes


def _routes(node: Any) -> list[Route]:
    if not isinstance(node, dict):
        raise RouteError("GeoJSON objects must be JSON objects")
    kind = node.get("type")
    if kind == "FeatureCollection":
        return [r for feature in node.get("features", []) for r in _routes(feature)]
    if kind == "Feature":
        return _routes(node.get("geometry"))
    coords = node.get("coordinates")
    if kind == "LineString":
        return [_route(coords, loop=False)]
    if kind == "MultiLineString":
        return [_route(line, loop=False) for line in coords or []]
    if kind == "Polygon":
        return [_route((coords or [[]])[0], loop=True)]
    raise RouteError(f"unsupported GeoJSON type {kind!r}")


def _route(coords: Any, loop: bool) -> Route:
    if not isinstance(coords, Sequence):
        raise RouteError("coordinates must be a list of [lon, lat]")
    try:
        points = [(float(c[0]), float(c[1])) for c in coords]
    except (TypeError, ValueError, IndexError) as exc:
        raise RouteError(f"bad coordinate: {exc}") from exc
    if loop and len(points) > 2 and points[0] == points[-1]:
        points.pop()
    closed = len(points) > 2 and points[0] == points[-1]
    return Route(tuple(points[:-1] if closed else points), loop=loop or closed)


@dataclass(frozen=True, slots=True)
class GpsConfig:
    mode: str = "walk"  # walk | ebike
    stop_chance: float = 0.3  # chance of a stop at each turn of the route
    stop_s: tuple[float, float] = (20.0, 180.0)
    accuracy_m: tuple[float, float] = (3.0, 8.0)
    bad_fix_rate: float = 0.02
    moving_interval_s: float = 5.0
    stationary_interval_s: float = 30.0
    adaptive: bool = True  # False: always moving_interval_s

    def __post_init__(self) -> None:
        if self.mode not in SPEEDS:
            raise RouteError(f"mode must be one of {', '.join(SPEEDS)}")
        if not 0.0 <= self.bad_fix_rate <= 1.0 or not 0.0 <= self.stop_chance <= 1.0:
            raise RouteError("rates must be within 0..1")
        if self.moving_interval_s <= 0 or self.stationary_interval_s <= 0:
            raise RouteError("beacon intervals must be positive")


@dataclass(frozen=True, slots=True)
class Fix:
    beacon: Beacon
    true_lon: float
    true_lat: float
    moving: bool
    bad: str | None = None  # zero | jump | stale for a deliberately bad fix


class GpsModel:
    """One terminal's movement along a route and the fixes its receiver reports."""

    def __init__(
        self,
        route: Route,
        config: GpsConfig | None = None,
        rng: random.Random | None = None,
        start: float = 0.0,
    ) -> None:
        self.config = config or GpsConfig()
        self.rng = rng or random.Random()
        lon0, lat0 = route.points[0]
        self._origin = (lon0, lat0)
        self._m_per_deg_lon = M_PER_DEG_LAT * math.cos(math.radians(lat0))
        self._legs = [(self._to_xy(a), self._to_xy(b)) for a, b in route.legs()]
        if not self._legs:
            raise RouteError("the route has no length")
        self._leg = self.rng.randrange(len(self._legs))
        self._along = self.rng.uniform(0.0, self._leg_length(self._leg))
        self._speed = self._draw_speed()
        self._stop_until = start
        self._last_time = start
        self._bias = (0.0, 0.0)
        self._last_fix: Fix | None = None
        self.accuracy = self.rng.uniform(*self.config.accuracy_m)

    # ---- plane helpers ------------------------------------------------------------------

    def _to_xy(self, point: Point) -> tuple[float, float]:
        lon, lat = point
        return (
            (lon - self._origin[0]) * self._m_per_deg_lon,
            (lat - self._origin[1]) * M_PER_DEG_LAT,
        )

    def _to_lonlat(self, x: float, y: float) -> Point:
        return (self._origin[0] + x / self._m_per_deg_lon, self._origin[1] + y / M_PER_DEG_LAT)

    def _leg_length(self, leg: int) -> float:
        (x0, y0), (x1, y1) = self._legs[leg]
        return math.hypot(x1 - x0, y1 - y0)

    def _draw_speed(self) -> float:
        return self.rng.uniform(*SPEEDS[self.config.mode])

    # ---- movement ---------------------------------------------------------------------

    def moving(self, now: float) -> bool:
        return now >= self._stop_until

    def advance(self, now: float) -> None:
        """Walk/ride along the route up to `now`, stopping at some turns."""
        t = self._last_time
        while t < now:
            if t < self._stop_until:
                t = min(now, self._stop_until)
                continue
            left = self._leg_length(self._leg) - self._along
            step = (now - t) * self._speed
            if step < left:
                self._along += step
                t = now
                break
            t += left / self._speed
            self._leg = (self._leg + 1) % len(self._legs)
            self._along = 0.0
            self._speed = self._draw_speed()
            if self.rng.random() < self.config.stop_chance:
                self._stop_until = t + self.rng.uniform(*self.config.stop_s)
        self._last_time = max(self._last_time, now)

    def true_position(self) -> tuple[float, float, float]:
        """(x, y, course in degrees) on the local plane."""
        (x0, y0), (x1, y1) = self._legs[self._leg]
        length = self._leg_length(self._leg) or 1.0
        f = self._along / length
        course = math.degrees(math.atan2(x1 - x0, y1 - y0)) % 360.0
        return x0 + (x1 - x0) * f, y0 + (y1 - y0) * f, course

    def here(self, now: float) -> Point:
        """Where the terminal truly is on its route at `now` (lon, lat)."""
        self.advance(now)
        x, y, _ = self.true_position()
        return self._to_lonlat(x, y)

    def next_interval(self, now: float) -> float:
        """Seconds to the next beacon: short while moving, long while standing."""
        cfg = self.config
        if not cfg.adaptive or self.moving(now):
            return cfg.moving_interval_s
        return min(cfg.stationary_interval_s, max(cfg.moving_interval_s, self._stop_until - now))

    # ---- fixes ------------------------------------------------------------------------

    def fix(
        self,
        now: float,
        wall_ms: int,
        battery: int | None = None,
        detour: tuple[Point, bool] | None = None,
    ) -> Fix:
        """A fix at `now`; `detour` ((lon, lat), moving): the terminal is away from its route
        there (sent to an incident); the patrol resumes where it was left."""
        if detour is not None:
            self._stop_until = self._last_time = max(self._last_time, now)
            x, y = self._to_xy(detour[0])
            course = 0.0
            moving = detour[1]
        else:
            self.advance(now)
            x, y, course = self.true_position()
            moving = self.moving(now)
        true_lon, true_lat = self._to_lonlat(x, y)
        rng = self.rng
        # Correlated error: a bias that wanders (AR(1)) plus white noise, both ~ accuracy.
        sigma = self.accuracy / 1.5
        bx, by = self._bias
        self._bias = (0.9 * bx + rng.gauss(0, sigma * 0.44), 0.9 * by + rng.gauss(0, sigma * 0.44))
        ex = self._bias[0] + rng.gauss(0, sigma * 0.5)
        ey = self._bias[1] + rng.gauss(0, sigma * 0.5)
        lon, lat = self._to_lonlat(x + ex, y + ey)
        speed = self._speed if moving else 0.0
        beacon = Beacon(
            ts=wall_ms,
            lat=round(lat, 7),
            lon=round(lon, 7),
            acc=round(self.accuracy * rng.uniform(0.8, 1.25), 1),
            spd=round(max(0.0, speed + rng.gauss(0, 0.2)), 1) if moving else 0.0,
            crs=round(course, 1) if moving else None,
            alt=round(12.0 + rng.gauss(0, 2.0), 1),
            bat=battery,
            sat=rng.randint(7, 12),
        )
        fix = Fix(beacon, true_lon, true_lat, moving)
        if rng.random() < self.config.bad_fix_rate:
            fix = self._bad(fix, rng.choice(BAD_KINDS), x, y)
        if fix.bad != "stale":
            self._last_fix = fix
        return fix

    def _bad(self, fix: Fix, kind: str, x: float, y: float) -> Fix:
        b = fix.beacon
        if kind == "zero":
            beacon = Beacon(ts=b.ts, lat=0.0, lon=0.0, acc=b.acc, bat=b.bat, sat=3)
        elif kind == "jump":
            angle = self.rng.uniform(0, 2 * math.pi)
            dist = self.rng.uniform(300.0, 3000.0)
            lon, lat = self._to_lonlat(x + dist * math.sin(angle), y + dist * math.cos(angle))
            beacon = Beacon(
                ts=b.ts, lat=round(lat, 7), lon=round(lon, 7), acc=4.0, bat=b.bat, sat=4
            )
        else:
            if self._last_fix is None:
                return fix
            beacon = self._last_fix.beacon
        return Fix(beacon, fix.true_lon, fix.true_lat, fix.moving, kind)


def routes_for_grids(grids: Sequence[Grid]) -> dict[str, Route]:
    return {grid.id: Route.from_grid(grid) for grid in grids}
