"""Track history, pure: segments split at gaps, zoom-aware simplification, trips and stops.

A *segment* is a run of points with no gap longer than `gap_s` between neighbours (a device that
was off, in a tunnel or filtered out starts a new segment: a replay must not draw a straight line
across the gap). A *stop* is a stretch of at least `stop_min_s` during which the device stayed
within `stop_radius_m` of where it stopped; a *trip* is what lies between stops.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, TypeVar

import numpy as np

from gateway.tracking.errors import HistoryError
from gateway.tracking.geo import (
    haversine_m,
    haversine_path_m,
    metres_per_pixel,
    simplify_lonlat,
)
from gateway.tracking.model import TrackPoint

MAX_ZOOM = 22
Row = TypeVar("Row", bound=Sequence[Any])  # (t, lat, lon, ...): a TrackPoint or a raw row


@dataclass(slots=True)
class HistoryConfig:
    gap_s: float = 300.0
    pixel_tolerance: float = 1.0  # Douglas–Peucker tolerance in screen pixels at the zoom
    stop_radius_m: float = 50.0
    stop_min_s: float = 180.0


@dataclass(frozen=True, slots=True)
class Segment:
    points: list[TrackPoint]
    source_points: int  # how many stored points the (simplified) segment stands for

    @property
    def start(self) -> float:
        return self.points[0].t

    @property
    def end(self) -> float:
        return self.points[-1].t


@dataclass(frozen=True, slots=True)
class Stop:
    start: float
    end: float
    lat: float
    lon: float
    points: int

    @property
    def duration_s(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Trip:
    start: float
    end: float
    distance_m: float
    max_speed_mps: float
    points: int

    @property
    def duration_s(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Summary:
    points: int
    segments: int
    distance_m: float
    duration_s: float
    moving_s: float
    stopped_s: float
    max_speed_mps: float
    trips: list[Trip] = field(default_factory=list)
    stops: list[Stop] = field(default_factory=list)


def check_range(start: float, end: float, max_span_s: float = 31 * 86_400.0) -> None:
    if not end > start:
        raise HistoryError(f"empty time range: end {end} is not after start {start}")
    if end - start > max_span_s:
        raise HistoryError(f"time range of {end - start:.0f} s exceeds {max_span_s:.0f} s")


def split_segments(points: Sequence[TrackPoint], gap_s: float) -> list[list[TrackPoint]]:
    """Consecutive runs of points whose neighbours are at most `gap_s` apart."""
    return [list(points[a:b]) for a, b in _runs(points, gap_s)]


def _runs(rows: Sequence[Sequence[Any]], gap_s: float) -> list[tuple[int, int]]:
    """[start, end) index ranges of the runs of time-ordered (t, ...) rows, split at gaps."""
    if not rows:
        return []
    times = np.fromiter(map(itemgetter(0), rows), np.float64, len(rows))
    cuts = np.flatnonzero(np.diff(times) > gap_s) + 1
    return list(itertools.pairwise([0, *cuts.tolist(), len(rows)]))


def tolerance_m(zoom: float, lat: float, pixels: float) -> float:
    if not 0 <= zoom <= MAX_ZOOM:
        raise HistoryError(f"zoom must be within 0-{MAX_ZOOM}, got {zoom}")
    return metres_per_pixel(zoom, lat) * pixels


def replay_segments(
    points: Sequence[TrackPoint], zoom: float | None, config: HistoryConfig
) -> list[Segment]:
    """Segments, each simplified for `zoom` (None = every point)."""
    return replay_rows(points, zoom, config, _same_point)


def replay_rows(
    rows: Sequence[Row],
    zoom: float | None,
    config: HistoryConfig,
    to_point: Callable[[Row], TrackPoint],
) -> list[Segment]:
    """`replay_segments` on raw (t, lat, lon, ...) rows in time order: gaps and simplification
    are found on column arrays and only the points kept become TrackPoints (a day's 17,280
    rows keep ~100 at zoom 16), which is about 3x cheaper than building every point first."""
    if zoom is not None:  # the columns simplification reads
        lats = np.fromiter(map(itemgetter(1), rows), np.float64, len(rows))
        lons = np.fromiter(map(itemgetter(2), rows), np.float64, len(rows))
    segments: list[Segment] = []
    for a, b in _runs(rows, config.gap_s):
        if zoom is None or b - a <= 2:
            segments.append(Segment([to_point(row) for row in rows[a:b]], b - a))
            continue
        tolerance = tolerance_m(zoom, float(lats[a]), config.pixel_tolerance)
        keep = simplify_lonlat(lons[a:b], lats[a:b], tolerance)
        segments.append(Segment([to_point(rows[a + i]) for i in keep.tolist()], b - a))
    return segments


def _same_point(point: TrackPoint) -> TrackPoint:
    return point


def path_length_m(points: Sequence[TrackPoint]) -> float:
    if len(points) < 2:
        return 0.0
    lats = np.fromiter((p.lat for p in points), dtype=np.float64, count=len(points))
    lons = np.fromiter((p.lon for p in points), dtype=np.float64, count=len(points))
    return float(haversine_path_m(lats, lons).sum())


def find_stops(points: Sequence[TrackPoint], config: HistoryConfig) -> list[Stop]:
    """Stops: maximal runs staying within `stop_radius_m` of their first point for long enough."""
    stops: list[Stop] = []
    i, n = 0, len(points)
    while i < n:
        anchor = points[i]
        j = i + 1
        while (
            j < n
            and points[j].t - points[j - 1].t <= config.gap_s
            and haversine_m(anchor.lat, anchor.lon, points[j].lat, points[j].lon)
            <= config.stop_radius_m
        ):
            j += 1
        last = points[j - 1]
        if last.t - anchor.t >= config.stop_min_s:
            run = points[i:j]
            stops.append(
                Stop(
                    anchor.t,
                    last.t,
                    sum(p.lat for p in run) / len(run),
                    sum(p.lon for p in run) / len(run),
                    len(run),
                )
            )
            i = j
        else:
            i += 1
    return stops


def summarise(points: Sequence[TrackPoint], config: HistoryConfig) -> Summary:
    """Distance (haversine), trips between stops, stops, moving/stopped time."""
    segments = split_segments(points, config.gap_s)
    distance = sum(path_length_m(run) for run in segments)
    stops = find_stops(points, config)
    trips: list[Trip] = []
    # Trips: the points of each segment outside stops (a stop's ends belong to the trip too,
    # so a trip starts where the device left the stop).
    for run in segments:
        times = [p.t for p in run]
        run_stops = [s for s in stops if run[0].t <= s.start <= run[-1].t]
        cursor = run[0].t
        for boundary in [*((s.start, s.end) for s in run_stops), (run[-1].t, run[-1].t)]:
            # points with cursor <= t <= boundary start (times are sorted)
            trip_points = run[bisect_left(times, cursor) : bisect_right(times, boundary[0])]
            if len(trip_points) >= 2 and trip_points[-1].t > trip_points[0].t:
                trips.append(_trip(trip_points))
            cursor = boundary[1]
    stopped = sum(s.duration_s for s in stops)
    duration = sum(run[-1].t - run[0].t for run in segments)
    speeds = [p.speed for p in points if p.speed is not None]
    max_speed = max(speeds) if speeds else max((t.max_speed_mps for t in trips), default=0.0)
    return Summary(
        points=len(points),
        segments=len(segments),
        distance_m=distance,
        duration_s=duration,
        moving_s=max(0.0, duration - stopped),
        stopped_s=stopped,
        max_speed_mps=max_speed,
        trips=trips,
        stops=stops,
    )


def _trip(points: Sequence[TrackPoint]) -> Trip:
    distance = path_length_m(points)
    reported = [p.speed for p in points if p.speed is not None]
    if reported:
        max_speed = max(reported)
    else:
        implied = [
            haversine_m(a.lat, a.lon, b.lat, b.lon) / (b.t - a.t)
            for a, b in itertools.pairwise(points)
            if b.t > a.t
        ]
        max_speed = max(implied, default=0.0)
    return Trip(points[0].t, points[-1].t, distance, max_speed, len(points))
