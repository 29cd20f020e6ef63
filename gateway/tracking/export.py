"""Track exports: GPX 1.1 (gpxpy), GeoJSON (RFC 7946: [lon, lat], WGS 84) and CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import gpxpy
import gpxpy.gpx

from gateway.tracking.history import Segment

CSV_COLUMNS: Final = (
    "device", "segment", "time", "epoch_s", "lat", "lon", "speed_mps", "course_deg",
    "altitude_m", "accuracy_m", "battery_pct",
)  # fmt: skip


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def to_gpx(device: str, segments: Sequence[Segment], name: str | None = None) -> str:
    """GPX 1.1: one <trk> with one <trkseg> per segment; points carry time and elevation."""
    gpx = gpxpy.gpx.GPX()
    gpx.creator = "Xixin gateway"
    track = gpxpy.gpx.GPXTrack(name=name or device)
    track.description = f"track of device {device}"
    gpx.tracks.append(track)
    for segment in segments:
        gpx_segment = gpxpy.gpx.GPXTrackSegment()
        for point in segment.points:
            gpx_point = gpxpy.gpx.GPXTrackPoint(
                latitude=point.lat,
                longitude=point.lon,
                elevation=point.altitude,
                time=datetime.fromtimestamp(point.t, UTC),
            )
            gpx_segment.points.append(gpx_point)
        track.segments.append(gpx_segment)
    return gpx.to_xml(version="1.1")


def to_geojson(device: str, segments: Sequence[Segment]) -> dict[str, Any]:
    """A FeatureCollection: one LineString per segment (a lone point becomes a Point), with
    per-vertex times in `properties.times` (epoch seconds)."""
    features: list[dict[str, Any]] = []
    for index, segment in enumerate(segments):
        coordinates = [_position(p.lon, p.lat, p.altitude) for p in segment.points]
        geometry: dict[str, Any]
        if len(coordinates) == 1:
            geometry = {"type": "Point", "coordinates": coordinates[0]}
        else:
            geometry = {"type": "LineString", "coordinates": coordinates}
        features.append(
            {
                "type": "Feature",
                "geometry": geometry,
                "properties": {
                    "device": device,
                    "segment": index,
                    "start": _iso(segment.start),
                    "end": _iso(segment.end),
                    "times": [p.t for p in segment.points],
                    "source_points": segment.source_points,
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def _position(lon: float, lat: float, altitude: float | None) -> list[float]:
    # RFC 7946 §3.1.1: longitude first; an optional third element is the altitude.
    return [lon, lat] if altitude is None else [lon, lat, altitude]


def geojson_text(device: str, segments: Sequence[Segment]) -> str:
    return json.dumps(to_geojson(device, segments), separators=(",", ":"))


def to_csv(device: str, segments: Sequence[Segment]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for index, segment in enumerate(segments):
        for p in segment.points:
            writer.writerow(
                [device, index, _iso(p.t), f"{p.t:.3f}", p.lat, p.lon,
                 _blank(p.speed), _blank(p.course), _blank(p.altitude), _blank(p.accuracy),
                 _blank(p.battery)]
            )  # fmt: skip
    return out.getvalue()


def _blank(value: float | int | None) -> str:
    return "" if value is None else str(value)
