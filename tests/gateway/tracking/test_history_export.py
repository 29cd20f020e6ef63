"""Replay segments, simplification, trips/stops, distance; GPX/GeoJSON/CSV exports."""

from __future__ import annotations

import csv
import io
import json
import math

import gpxpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.tracking.errors import HistoryError
from gateway.tracking.export import geojson_text, to_csv, to_geojson, to_gpx
from gateway.tracking.geo import haversine_m, simplify_lonlat
from gateway.tracking.history import (
    HistoryConfig,
    Segment,
    check_range,
    path_length_m,
    replay_rows,
    replay_segments,
    split_segments,
    summarise,
    tolerance_m,
)
from gateway.tracking.model import TrackPoint
from gateway.tracking.store import PositionReader

T0 = 1_764_300_000.0
LAT, LON = 30.8712, 120.1305
M_LAT = 1 / 111_195.0


def walk(start: float, n: int, step_s: float = 5.0, north_m: float = 6.0) -> list[TrackPoint]:
    return [
        TrackPoint(start + i * step_s, LAT + i * north_m * M_LAT, LON, speed=north_m / step_s,
                   altitude=12.0, battery=80)
        for i in range(n)
    ]  # fmt: skip


def test_haversine_known_distances() -> None:
    assert haversine_m(0, 0, 1, 0) == pytest.approx(111_195, rel=1e-4)
    assert haversine_m(LAT, LON, LAT, LON) == 0.0
    # Hangzhou -> Shanghai (~165 km)
    assert haversine_m(30.2741, 120.1551, 31.2304, 121.4737) == pytest.approx(164_800, rel=0.01)


def test_segments_split_at_gaps() -> None:
    points = walk(T0, 10) + walk(T0 + 45 + 400, 10)
    runs = split_segments(points, gap_s=300)
    assert [len(r) for r in runs] == [10, 10]
    assert split_segments([], 300) == []


def test_simplification_depends_on_zoom() -> None:
    # A zig-zag: 4 m side steps on a 600 m walk north.
    points = [
        TrackPoint(T0 + i * 5, LAT + i * 6 * M_LAT, LON + (4 if i % 2 else 0) / 95_500)
        for i in range(100)
    ]
    config = HistoryConfig()
    full = replay_segments(points, None, config)
    far = replay_segments(points, 12, config)  # ~33 m per pixel: the wiggle disappears
    near = replay_segments(points, 20, config)  # ~0.13 m per pixel: every wiggle stays
    assert len(full[0].points) == 100
    assert len(far[0].points) == 2 and far[0].source_points == 100
    assert len(near[0].points) == 100
    with pytest.raises(HistoryError, match="zoom"):
        replay_segments(points, 30, config)


def test_straight_line_keeps_its_ends() -> None:
    points = walk(T0, 50)
    (segment,) = replay_segments(points, 18, HistoryConfig())
    assert [p.t for p in segment.points] == [points[0].t, points[-1].t]


def test_trips_stops_and_distance() -> None:
    config = HistoryConfig(stop_radius_m=30, stop_min_s=180)
    first = walk(T0, 61)  # 300 s, 360 m north
    end = first[-1]
    stop = [TrackPoint(end.t + 5 * (i + 1), end.lat + (i % 2) * 3 * M_LAT, LON, speed=0.0)
            for i in range(60)]  # 300 s within 3 m  # fmt: skip
    second = [TrackPoint(stop[-1].t + 5 * (i + 1), end.lat + (i + 1) * 6 * M_LAT, LON, speed=1.2)
              for i in range(60)]  # fmt: skip
    summary = summarise(first + stop + second, config)
    assert len(summary.stops) == 1
    (found,) = summary.stops
    assert found.duration_s >= 295 and abs(found.lat - end.lat) < 10 * M_LAT
    assert len(summary.trips) == 2
    # A stop begins at the first point from which the device stayed within the radius, so each
    # trip is 360 m give or take the stop radius.
    assert summary.trips[0].distance_m == pytest.approx(360, abs=30)
    assert summary.trips[1].distance_m == pytest.approx(360, abs=30)
    assert summary.trips[0].end <= found.start and summary.trips[1].start >= found.end
    assert summary.distance_m == pytest.approx(720 + 59 * 3, rel=0.03)  # jitter counts too
    assert summary.max_speed_mps == pytest.approx(1.2)
    assert summary.moving_s + summary.stopped_s == pytest.approx(summary.duration_s)


def test_range_checks() -> None:
    check_range(T0, T0 + 1)
    with pytest.raises(HistoryError, match="empty"):
        check_range(T0, T0)
    with pytest.raises(HistoryError, match="exceeds"):
        check_range(T0, T0 + 40 * 86_400)


def two_segments():  # type: ignore[no-untyped-def]
    points = walk(T0, 10) + walk(T0 + 1000, 5)
    return replay_segments(points, None, HistoryConfig())


def test_gpx_parses_back_with_gpxpy() -> None:
    segments = two_segments()
    gpx = gpxpy.parse(to_gpx("T001", segments))
    assert gpx.version == "1.1"
    (track,) = gpx.tracks
    assert track.name == "T001"
    assert [len(s.points) for s in track.segments] == [10, 5]
    first = track.segments[0].points[0]
    assert (first.latitude, first.longitude, first.elevation) == (LAT, LON, 12.0)
    assert first.time is not None and first.time.timestamp() == T0
    assert track.segments[1].points[0].time.timestamp() == T0 + 1000
    assert track.length_2d() == pytest.approx(
        sum(path_length_m(s.points) for s in segments), rel=0.01
    )


def test_geojson_is_rfc7946() -> None:
    segments = two_segments()
    doc = json.loads(geojson_text("T001", segments))
    assert doc == to_geojson("T001", segments)
    assert doc["type"] == "FeatureCollection"
    assert len(doc["features"]) == 2
    for feature, segment in zip(doc["features"], segments, strict=True):
        assert feature["type"] == "Feature"
        geometry = feature["geometry"]
        assert geometry["type"] == "LineString" and len(geometry["coordinates"]) >= 2
        lon, lat, alt = geometry["coordinates"][0]
        assert (lon, lat, alt) == (segment.points[0].lon, segment.points[0].lat, 12.0)
        assert all(-180 <= c[0] <= 180 and -90 <= c[1] <= 90 for c in geometry["coordinates"])
        assert feature["properties"]["times"][0] == segment.points[0].t
        assert "crs" not in doc  # RFC 7946 drops it: WGS 84 always


def test_geojson_single_point_segment_is_a_point() -> None:
    (segment,) = replay_segments([TrackPoint(T0, LAT, LON)], None, HistoryConfig())
    feature = to_geojson("T001", [segment])["features"][0]
    assert feature["geometry"] == {"type": "Point", "coordinates": [LON, LAT]}


def test_csv_export() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv("T001", two_segments()))))
    assert len(rows) == 15
    assert rows[0]["time"] == "2025-11-28T03:20:00Z"
    assert float(rows[0]["lat"]) == LAT and rows[0]["course_deg"] == ""
    assert {r["segment"] for r in rows} == {"0", "1"}
    assert math.isclose(float(rows[-1]["epoch_s"]), T0 + 1000 + 20)


@pytest.mark.parametrize(
    ("lat1", "lon1", "lat2", "lon2"),
    [(LAT, LON, LAT + 0.001, LON + 0.001), (LAT, LON, LAT + 0.04, LON - 0.03),
     (-60.0, 170.0, -60.01, 170.02), (LAT, LON, LAT + 1.0, LON + 1.0)],
)  # fmt: skip
def test_fast_distance_agrees_with_haversine(
    lat1: float, lon1: float, lat2: float, lon2: float
) -> None:
    from gateway.tracking.geo import distance_m

    assert distance_m(lat1, lon1, lat2, lon2) == pytest.approx(
        haversine_m(lat1, lon1, lat2, lon2), rel=1e-4
    )


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from([1.0, 5.0, 5.0, 5.0, 400.0]),  # 400 s: a gap (gap_s is 300)
            st.floats(-30.0, 30.0),  # metres north
            st.floats(-30.0, 30.0),  # metres east
            st.one_of(st.none(), st.floats(0.0, 40.0)),  # speed, NULL allowed
        ),
        max_size=300,
    ),
    zoom=st.sampled_from([None, 8, 14, 16, 20]),
)
def test_replay_from_rows_equals_replay_from_points(
    steps: list[tuple[float, float, float, float | None]], zoom: int | None
) -> None:
    """The API's row path (TrackPoints only for kept points) draws exactly what the
    point path draws: same segments, same points, same source counts."""
    rows: list[tuple[float, float, float, float | None, float | None]] = []
    t, lat, lon = T0, LAT, LON
    for dt, north, east, speed in steps:
        t, lat, lon = t + dt, lat + north * M_LAT, lon + east * M_LAT * 1.16
        rows.append((t, lat, lon, speed, None))
    points = [PositionReader.point(row) for row in rows]
    config = HistoryConfig()
    expected = _replay_by_definition(points, zoom, config)
    assert replay_rows(rows, zoom, config, PositionReader.point) == expected
    assert replay_segments(points, zoom, config) == expected


def _replay_by_definition(
    points: list[TrackPoint], zoom: int | None, config: HistoryConfig
) -> list[Segment]:
    """Split at gaps, then Douglas-Peucker each run on plain lists: the reference."""
    segments = []
    for run in split_segments(points, config.gap_s):
        if zoom is None or len(run) <= 2:
            segments.append(Segment(run, len(run)))
            continue
        tolerance = tolerance_m(zoom, run[0].lat, config.pixel_tolerance)
        keep = simplify_lonlat([p.lon for p in run], [p.lat for p in run], tolerance)
        segments.append(Segment([run[i] for i in keep.tolist()], len(run)))
    return segments


def test_replay_from_rows_keeps_the_zoom_check() -> None:
    rows = [(T0 + i * 5, LAT + i * M_LAT, LON, None, None) for i in range(5)]
    with pytest.raises(HistoryError, match="zoom"):
        replay_rows(rows, 30, HistoryConfig(), PositionReader.point)
    assert replay_rows([], 30, HistoryConfig(), PositionReader.point) == []
