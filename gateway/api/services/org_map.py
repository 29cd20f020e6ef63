"""The organisation as the console's base map: GeoJSON (RFC 7946) of the grids the caller sees
and the boundaries of their areas, with Chinese and English names and label anchors."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.auth.scope import Scope
from protocol.geometry import Point, ring_centroid
from protocol.org import Organisation

Edge = tuple[Point, Point]


def _edges(ring: Sequence[Point]) -> Iterable[Edge]:
    for a, b in itertools.pairwise(ring):
        if a != b:
            yield a, b


def _key(edge: Edge) -> Edge:
    a, b = edge
    return (a, b) if a <= b else (b, a)


def outline(rings: Iterable[Sequence[Point]]) -> list[list[Point]]:
    """The outer boundary of adjacent rings (shared edges exact, as in an org file) as lines:
    the edges used by one ring only, chained where they meet."""
    rings = list(rings)
    uses = Counter(_key(e) for ring in rings for e in _edges(ring))
    loose = [e for ring in rings for e in _edges(ring) if uses[_key(e)] == 1]
    starts: dict[Point, list[Edge]] = {}
    for edge in loose:
        starts.setdefault(edge[0], []).append(edge)
    done: set[Edge] = set()
    lines: list[list[Point]] = []
    for edge in loose:
        if edge in done:
            continue
        done.add(edge)
        line = [edge[0], edge[1]]
        while True:
            following = [e for e in starts.get(line[-1], []) if e not in done]
            if not following:
                break
            done.add(following[0])
            line.append(following[0][1])
        lines.append(line)
    return lines


def _feature(geometry: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def org_geojson(org: Organisation, scope: Scope) -> dict[str, Any]:
    """Grid polygons (kind "grid") and area outlines (kind "area", a MultiLineString) in
    `scope`; every feature has id, name, name_zh and its label point `label` [lon, lat]."""
    features: list[dict[str, Any]] = []
    grids = [g for g in org.grids.values() if scope.sees_unit(g.id)]
    for grid in grids:
        area = org.areas[grid.area]
        features.append(
            _feature(
                {"type": "Polygon", "coordinates": [[list(p) for p in grid.polygon]]},
                {"kind": "grid", "id": grid.id, "name": grid.name, "name_zh": grid.name_zh,
                 "area": area.id, "label": list(grid.centre)},
            )
        )  # fmt: skip
    for area in org.areas.values():
        rings = [g.polygon for g in grids if g.area == area.id]
        if not rings:
            continue
        lines = outline(rings)
        points = [p for ring in rings for p in ring]
        label = ring_centroid(rings[0]) if len(rings) == 1 else _mean(points)
        features.append(
            _feature(
                {"type": "MultiLineString", "coordinates": [[list(p) for p in ln] for ln in lines]},
                {"kind": "area", "id": area.id, "name": area.name, "name_zh": area.name_zh,
                 "grids": [g.id for g in grids if g.area == area.id], "label": list(label)},
            )
        )  # fmt: skip
    return {
        "type": "FeatureCollection",
        "centre": {"id": org.centre.id, "name": org.centre.name, "name_zh": org.centre.name_zh},
        "features": features,
    }


def _mean(points: Sequence[Point]) -> Point:
    return (sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points))
