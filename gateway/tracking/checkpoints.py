"""Patrol checkpoints and the coverage report, pure.

A checkpoint is a point with a radius in a grid and a number of visits required per shift. A
*visit* is a run of a device's points inside the radius; the device must leave and stay away for
`revisit_s` before another run counts again, so GPS wander at the edge is not counted twice.
The report says, per shift, which checkpoints were visited often enough and which were missed,
and sums this up per grid and per officer. JSON (dicts) and CSV.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, Final

from gateway.tracking.errors import CheckpointError
from gateway.tracking.geo import haversine_m
from gateway.tracking.model import MAX_EPOCH_S, TrackPoint

MAX_RADIUS_M: Final = 5000.0


@dataclass(frozen=True, slots=True)
class Checkpoint:
    id: str
    grid: str
    name: str
    lat: float
    lon: float
    radius_m: float = 30.0
    required_visits: int = 1


def make_checkpoint(
    checkpoint_id: str,
    grid: str,
    name: str,
    lat: float,
    lon: float,
    radius_m: float = 30.0,
    required_visits: int = 1,
    grids: Iterable[str] | None = None,
) -> Checkpoint:
    """Validate a checkpoint; `grids` (the organisation's grid ids) when known."""
    if not checkpoint_id or len(checkpoint_id) > 64 or not checkpoint_id.isprintable():
        raise CheckpointError(f"checkpoint id must be 1-64 printable characters: {checkpoint_id!r}")
    if grids is not None and grid not in set(grids):
        raise CheckpointError(f"checkpoint {checkpoint_id!r}: unknown grid {grid!r}")
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise CheckpointError(f"checkpoint {checkpoint_id!r}: bad position ({lat}, {lon})")
    if not 0 < radius_m <= MAX_RADIUS_M:
        raise CheckpointError(
            f"checkpoint {checkpoint_id!r}: radius must be in (0, {MAX_RADIUS_M}]"
        )
    if required_visits < 1:
        raise CheckpointError(f"checkpoint {checkpoint_id!r}: required_visits must be >= 1")
    return Checkpoint(
        checkpoint_id, grid, name or checkpoint_id, lat, lon, radius_m, required_visits
    )


@dataclass(frozen=True, slots=True)
class Shift:
    name: str
    start: float
    end: float

    def __post_init__(self) -> None:
        if not self.end > self.start:  # also true for NaN
            raise CheckpointError(f"shift {self.name!r} ends before it starts")
        if not (self.start >= 0 and self.end <= MAX_EPOCH_S):  # reports print ISO dates
            raise CheckpointError(
                f"shift {self.name!r} must lie within epoch 0..{MAX_EPOCH_S} s, "
                f"not {self.start}..{self.end}"
            )


@dataclass(frozen=True, slots=True)
class ShiftPattern:
    """A daily shift, e.g. day 08:00 for 12 h, in a fixed UTC offset (China: +8)."""

    name: str
    start: str  # "HH:MM"
    hours: float

    def window(self, day: date, utc_offset_h: float) -> Shift:
        try:
            hour, minute = (int(part) for part in self.start.split(":"))
            tz = timezone(timedelta(hours=utc_offset_h))
            begin = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
        except ValueError as exc:
            raise CheckpointError(f"shift {self.name!r}: bad start {self.start!r}") from exc
        start = begin.timestamp()
        return Shift(self.name, start, start + self.hours * 3600)


DEFAULT_SHIFTS: Final = (ShiftPattern("day", "08:00", 12), ShiftPattern("night", "20:00", 12))


@dataclass(frozen=True, slots=True)
class Visit:
    checkpoint: str
    device: str
    start: float
    end: float


def find_visits(
    checkpoint: Checkpoint, device: str, track: Sequence[TrackPoint], revisit_s: float
) -> list[Visit]:
    visits: list[Visit] = []
    current_start: float | None = None
    last_inside = -math.inf
    for point in track:
        inside = (
            haversine_m(checkpoint.lat, checkpoint.lon, point.lat, point.lon) <= checkpoint.radius_m
        )
        if inside:
            if current_start is not None and point.t - last_inside > revisit_s:
                # No point for a long while (device off, or data filtered): that visit ended.
                visits.append(Visit(checkpoint.id, device, current_start, last_inside))
                current_start = None
            if current_start is None:
                if visits and point.t - visits[-1].end < revisit_s:
                    # Back too soon: the same visit continues.
                    previous = visits.pop()
                    current_start = previous.start
                else:
                    current_start = point.t
            last_inside = point.t
        elif current_start is not None:
            visits.append(Visit(checkpoint.id, device, current_start, last_inside))
            current_start = None
    if current_start is not None:
        visits.append(Visit(checkpoint.id, device, current_start, last_inside))
    return visits


@dataclass(slots=True)
class CoverageReport:
    shift: Shift
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    grids: list[dict[str, Any]] = field(default_factory=list)
    officers: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "shift": {
                "name": self.shift.name,
                "start": self.shift.start,
                "end": self.shift.end,
                "start_iso": _iso(self.shift.start),
                "end_iso": _iso(self.shift.end),
            },
            "checkpoints": self.checkpoints,
            "grids": self.grids,
            "officers": self.officers,
        }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def coverage(
    checkpoints: Sequence[Checkpoint],
    tracks: Mapping[str, Sequence[TrackPoint]],
    shift: Shift,
    *,
    assigned_grid: Mapping[str, str] | None = None,
    revisit_s: float = 600.0,
) -> CoverageReport:
    """Which checkpoints were visited enough during `shift` by whom (tracks: device -> points)."""
    report = CoverageReport(shift)
    per_officer: dict[str, Counter[str]] = {device: Counter() for device in tracks}
    grid_totals: dict[str, list[int]] = {}
    for checkpoint in sorted(checkpoints, key=lambda c: (c.grid, c.id)):
        by_device: Counter[str] = Counter()
        first: float | None = None
        last: float | None = None
        for device, track in tracks.items():
            window = [p for p in track if shift.start <= p.t < shift.end]
            for visit in find_visits(checkpoint, device, window, revisit_s):
                by_device[device] += 1
                per_officer[device][checkpoint.id] += 1
                first = visit.start if first is None else min(first, visit.start)
                last = visit.end if last is None else max(last, visit.end)
        visits = sum(by_device.values())
        visited = visits >= checkpoint.required_visits
        totals = grid_totals.setdefault(checkpoint.grid, [0, 0])
        totals[0] += 1
        totals[1] += int(visited)
        report.checkpoints.append(
            {
                "id": checkpoint.id,
                "grid": checkpoint.grid,
                "name": checkpoint.name,
                "required": checkpoint.required_visits,
                "visits": visits,
                "status": "visited" if visited else "missed",
                "visited_by": dict(sorted(by_device.items())),
                "first_visit": first,
                "last_visit": last,
            }
        )
    for grid, (total, visited_count) in sorted(grid_totals.items()):
        report.grids.append(
            {
                "grid": grid,
                "checkpoints": total,
                "visited": visited_count,
                "missed": total - visited_count,
                "coverage": round(visited_count / total, 4) if total else None,
            }
        )
    for device, counts in sorted(per_officer.items()):
        report.officers.append(
            {
                "device": device,
                "grid": (assigned_grid or {}).get(device),
                "visits": sum(counts.values()),
                "checkpoints": dict(sorted(counts.items())),
            }
        )
    return report


CSV_COLUMNS: Final = (
    "shift", "shift_start", "shift_end", "grid", "checkpoint", "name", "required", "visits",
    "status", "visited_by",
)  # fmt: skip


def coverage_csv(reports: Iterable[CoverageReport]) -> str:
    """One row per shift and checkpoint; `visited_by` is `device:count;device:count`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for report in reports:
        for row in report.checkpoints:
            writer.writerow(
                [
                    report.shift.name,
                    _iso(report.shift.start),
                    _iso(report.shift.end),
                    row["grid"],
                    row["id"],
                    row["name"],
                    row["required"],
                    row["visits"],
                    row["status"],
                    ";".join(f"{dev}:{n}" for dev, n in row["visited_by"].items()),
                ]
            )
    return out.getvalue()
