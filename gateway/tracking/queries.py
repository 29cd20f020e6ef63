"""Read-side operations of the tracking API: live view, replay, summaries, exports, coverage.

Blocking (database) functions take the reader/repository explicitly so the API can run them in
its thread pool; nothing here touches the pipeline's live state, which belongs to the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any, Final, Literal

from gateway.tracking.checkpoints import Checkpoint, CoverageReport, Shift, ShiftPattern, coverage
from gateway.tracking.errors import CheckpointError, HistoryError
from gateway.tracking.export import geojson_text, to_csv, to_gpx
from gateway.tracking.history import (
    HistoryConfig,
    Segment,
    Summary,
    check_range,
    replay_rows,
    summarise,
)
from gateway.tracking.live import LiveTracker
from gateway.tracking.model import TrackPoint
from gateway.tracking.store import PositionReader

ExportFormat = Literal["gpx", "geojson", "csv"]
MEDIA_TYPES: Final = {
    "gpx": "application/gpx+xml",
    "geojson": "application/geo+json",
    "csv": "text/csv; charset=utf-8",
}
MAX_REPLAY_POINTS: Final = 500_000


def load_track(
    reader: PositionReader, device: str, start: float, end: float, *, full: bool = True
) -> list[TrackPoint]:
    check_range(start, end)
    return reader.track(device, start, end, MAX_REPLAY_POINTS, full=full)


def replay(
    reader: PositionReader,
    config: HistoryConfig,
    device: str,
    start: float,
    end: float,
    zoom: float | None,
    *,
    full: bool = False,
) -> list[Segment]:
    """Segments for the map (time, position, speed, course); `full` adds altitude, accuracy
    and battery (exports). Straight from the rows: only the points drawn become TrackPoints."""
    check_range(start, end)
    rows = reader.track_rows(device, start, end, MAX_REPLAY_POINTS, full=full)
    return replay_rows(rows, zoom, config, reader.point)


def summary(
    reader: PositionReader, config: HistoryConfig, device: str, start: float, end: float
) -> Summary:
    return summarise(load_track(reader, device, start, end), config)


def export(
    reader: PositionReader,
    config: HistoryConfig,
    device: str,
    start: float,
    end: float,
    fmt: str,
    zoom: float | None = None,
) -> tuple[str, str]:
    """(body, media type) of a GPX 1.1 / GeoJSON / CSV export."""
    if fmt not in MEDIA_TYPES:
        raise HistoryError(f"export format must be gpx, geojson or csv, not {fmt!r}")
    segments = replay(reader, config, device, start, end, zoom, full=True)
    if fmt == "gpx":
        body = to_gpx(device, segments)
    elif fmt == "geojson":
        body = geojson_text(device, segments)
    else:
        body = to_csv(device, segments)
    return body, MEDIA_TYPES[fmt]


def shifts_for(
    patterns: Iterable[ShiftPattern],
    utc_offset_h: float,
    day: date | None,
    name: str | None,
    start: float | None,
    end: float | None,
) -> list[Shift]:
    """An explicit window, or the day's configured shifts (optionally one of them by name).

    Checked before any query: each window within the epoch range reports can print and no
    longer than a replay's (CheckpointError otherwise)."""
    if start is not None or end is not None:
        if start is None or end is None:
            raise CheckpointError("give both start and end, or a date")
        shifts = [Shift(name or "custom", start, end)]
    elif day is None:
        raise CheckpointError("give a date (and optionally a shift name) or start and end")
    else:
        shifts = [p.window(day, utc_offset_h) for p in patterns if name is None or p.name == name]
    if not shifts:
        raise CheckpointError(f"no shift named {name!r}")
    for shift in shifts:
        try:
            check_range(shift.start, shift.end)
        except HistoryError as exc:
            raise CheckpointError(f"shift {shift.name!r}: {exc}") from exc
    return shifts


def coverage_reports(
    reader: PositionReader,
    checkpoints: list[Checkpoint],
    devices: Mapping[str, str | None],
    shifts: list[Shift],
    revisit_s: float,
) -> list[CoverageReport]:
    """Coverage per shift; `devices` maps each device to its assigned grid (or None)."""
    reports: list[CoverageReport] = []
    for shift in shifts:
        tracks = {
            device: reader.track(device, shift.start, shift.end, MAX_REPLAY_POINTS)
            for device in devices
        }
        assigned = {d: g for d, g in devices.items() if g is not None}
        reports.append(
            coverage(checkpoints, tracks, shift, assigned_grid=assigned, revisit_s=revisit_s)
        )
    return reports


def live_view(
    live: LiveTracker, fences_of: Any, alarms: Mapping[tuple[str, str], Any]
) -> list[dict[str, Any]]:
    """Every device the tracker knows: status, newest position, fences, active alarms."""
    active: dict[str, list[str]] = {}
    for device, alarm in alarms:
        active.setdefault(device, []).append(alarm)
    out: list[dict[str, Any]] = []
    for device, state in sorted(live.devices.items()):
        fix = state.fix
        out.append(
            {
                "device": device,
                "state": state.state,
                "since": state.since or None,
                "last_seen": state.last_seen or None,
                "battery": state.battery,
                "position": None
                if fix is None
                else {
                    "t": fix.fix_time,
                    "lat": fix.lat,
                    "lon": fix.lon,
                    "speed": fix.speed,
                    "course": fix.course,
                    "accuracy": fix.accuracy,
                    "source": fix.source,
                },
                "geofences": fences_of(device),
                "alarms": sorted(active.get(device, [])),
            }
        )
    return out
