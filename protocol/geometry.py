"""Plane geometry for grid polygons: validation, area, centroid and point-in-polygon.

Pure functions on (lon, lat) rings. Grids span at most a few kilometres, so treating degrees as a
plane is accurate enough for containment and centroids (shapely checks the same in the tests).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from protocol.errors import OrgError

Point = tuple[float, float]


def check_polygon(raw: object, what: str) -> tuple[Point, ...]:
    """Validate a (lon, lat) ring, close it if open, and return it as tuples.

    Rejects fewer than 3 distinct vertices, coordinates out of range, repeated consecutive
    vertices, zero area and self-intersection.
    """
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise OrgError(f"{what}: polygon must be a list of [lon, lat] pairs")
    points: list[Point] = []
    for index, pair in enumerate(raw):
        if (
            not isinstance(pair, Sequence)
            or isinstance(pair, str)
            or len(pair) != 2
            or not all(_is_number(c) for c in pair)
        ):
            raise OrgError(f"{what}: polygon point {index} must be a [lon, lat] pair of numbers")
        lon, lat = float(pair[0]), float(pair[1])
        if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
            raise OrgError(
                f"{what}: polygon point {index} longitude {lon} is out of range -180..180"
            )
        if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
            raise OrgError(f"{what}: polygon point {index} latitude {lat} is out of range -90..90")
        points.append((lon, lat))
    if points and points[0] != points[-1]:
        points.append(points[0])
    if len(points) < 4 or len(set(points)) < 3:
        raise OrgError(f"{what}: polygon needs at least 3 distinct vertices")
    for index in range(len(points) - 1):
        if points[index] == points[index + 1]:
            raise OrgError(f"{what}: polygon repeats vertex {index} consecutively")
    if all(_orientation(points[0], points[1], p) == 0 for p in points[2:]):
        raise OrgError(f"{what}: polygon has no area (all vertices on one line)")
    crossing = _self_intersection(points)
    if crossing is not None:
        raise OrgError(f"{what}: polygon edges {crossing[0]} and {crossing[1]} intersect")
    if abs(ring_area(points)) < 1e-14:
        raise OrgError(f"{what}: polygon has no area")
    return tuple(points)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _local(ring: Sequence[Point]) -> list[Point]:
    # Shoelace sums of raw coordinates (~120, ~30) cancel catastrophically for rings a few
    # hundred metres wide; working relative to the first vertex keeps full precision.
    x0, y0 = ring[0]
    return [(x - x0, y - y0) for x, y in ring]


def ring_area(ring: Sequence[Point]) -> float:
    """Signed shoelace area of a closed ring in squared degrees (positive when anticlockwise)."""
    local = _local(ring)
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in itertools.pairwise(local))


def ring_centroid(ring: Sequence[Point]) -> Point:
    """Area centroid of a closed ring, in the same (lon, lat) plane (fine for small polygons)."""
    area = ring_area(ring)
    cx = cy = 0.0
    for (x0, y0), (x1, y1) in itertools.pairwise(_local(ring)):
        cross = x0 * y1 - x1 * y0
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    origin_x, origin_y = ring[0]
    return (origin_x + cx / (6.0 * area), origin_y + cy / (6.0 * area))


def point_in_ring(lon: float, lat: float, ring: Sequence[Point]) -> bool:
    """Even-odd ray casting; points exactly on an edge may fall either way."""
    inside = False
    for (x0, y0), (x1, y1) in itertools.pairwise(ring):
        if (y0 > lat) != (y1 > lat):
            x_cross = x0 + (lat - y0) * (x1 - x0) / (y1 - y0)
            if lon < x_cross:
                inside = not inside
    return inside


def _orientation(a: Point, b: Point, c: Point) -> int:
    value = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    return 0 if abs(value) < 1e-18 else (1 if value > 0 else -1)


def _on_segment(a: Point, b: Point, p: Point) -> bool:
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def _segments_intersect(a: Point, b: Point, c: Point, d: Point) -> bool:
    o1, o2, o3, o4 = (
        _orientation(a, b, c),
        _orientation(a, b, d),
        _orientation(c, d, a),
        _orientation(c, d, b),
    )
    if o1 != o2 and o3 != o4:
        return True
    return (
        (o1 == 0 and _on_segment(a, b, c))
        or (o2 == 0 and _on_segment(a, b, d))
        or (o3 == 0 and _on_segment(c, d, a))
        or (o4 == 0 and _on_segment(c, d, b))
    )


def _folds_back(a: Point, b: Point, c: Point) -> bool:
    """Edges a->b and b->c overlap (a spike that doubles back along itself)."""
    return _orientation(a, b, c) == 0 and (_on_segment(a, b, c) or _on_segment(b, c, a))


def _self_intersection(ring: Sequence[Point]) -> tuple[int, int] | None:
    edges = len(ring) - 1
    for i in range(edges):
        for j in range(i + 1, edges):
            # Neighbouring edges share a vertex by construction (the last neighbours the first);
            # they only intersect wrongly when one folds back along the other.
            if j == i + 1 or (i == 0 and j == edges - 1):
                first, second = (i, j) if j == i + 1 else (j, i)
                if _folds_back(ring[first], ring[first + 1], ring[second + 1]):
                    return (i, j)
                continue
            if _segments_intersect(ring[i], ring[i + 1], ring[j], ring[j + 1]):
                return (i, j)
    return None
