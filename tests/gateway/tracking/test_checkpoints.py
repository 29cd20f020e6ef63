"""Checkpoint coverage on a simulated shift: visits, misses, per grid, per officer, CSV."""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, date, datetime

import pytest

from gateway.tracking.checkpoints import (
    DEFAULT_SHIFTS,
    Checkpoint,
    Shift,
    ShiftPattern,
    coverage,
    coverage_csv,
    find_visits,
    make_checkpoint,
)
from gateway.tracking.errors import CheckpointError
from gateway.tracking.model import TrackPoint
from gateway.tracking.queries import shifts_for
from protocol.org import default_org

ORG = default_org()
M_LAT = 1 / 111_195.0
SHIFT = ShiftPattern("day", "08:00", 12).window(date(2026, 11, 28), 8.0)
G1, G2 = ORG.grids["grid-01"].centre, ORG.grids["grid-02"].centre

CP = [
    make_checkpoint("g1-gate", "grid-01", "Gate", G1[1], G1[0], 30, 2, ORG.grids),
    make_checkpoint("g1-school", "grid-01", "School", G1[1] + 0.002, G1[0], 30, 1, ORG.grids),
    make_checkpoint("g1-market", "grid-01", "Market", G1[1] - 0.002, G1[0], 30, 1, ORG.grids),
    make_checkpoint("g2-bridge", "grid-02", "Bridge", G2[1], G2[0], 30, 1, ORG.grids),
]


def patrol(
    start: float, stops: list[tuple[float, float]], step_s: float = 10.0
) -> list[TrackPoint]:
    """Walk between `stops` (lat, lon) at ~1.4 m/s, lingering 2 minutes at each."""
    points: list[TrackPoint] = []
    t = start
    here = stops[0]
    for target in stops:
        steps = max(1, int(abs(target[0] - here[0]) / (14 * M_LAT)))
        for k in range(1, steps + 1):
            lat = here[0] + (target[0] - here[0]) * k / steps
            lon = here[1] + (target[1] - here[1]) * k / steps
            points.append(TrackPoint(t, lat, lon))
            t += step_s
        for _ in range(12):
            points.append(TrackPoint(t, target[0], target[1]))
            t += step_s
        here = target
    return points


def test_shift_window_is_local_time() -> None:
    assert SHIFT.start == datetime(2026, 11, 28, 0, 0, tzinfo=UTC).timestamp()  # 08:00 +08:00
    assert SHIFT.end - SHIFT.start == 12 * 3600


def test_coverage_report_on_a_simulated_shift() -> None:
    gate, school = (G1[1], G1[0]), (G1[1] + 0.002, G1[0])
    # T001: gate, school, back to the gate two hours later (a second visit), and a stroll past
    # the gate's edge right after the first visit that must not count again.
    morning = patrol(SHIFT.start + 3600, [gate, (G1[1] + 35 * M_LAT, G1[0]), gate, school])
    later = patrol(SHIFT.start + 3 * 3600, [school, gate])
    before_shift = patrol(SHIFT.start - 3600, [(G1[1] - 0.002, G1[0])])  # the market, too early
    t002 = patrol(SHIFT.start + 2 * 3600, [(G2[1], G2[0])])
    tracks = {"T001": before_shift + morning + later, "T002": t002, "T003": []}
    report = coverage(CP, tracks, SHIFT, assigned_grid={"T001": "grid-01", "T002": "grid-02"})
    by_id = {row["id"]: row for row in report.checkpoints}
    assert by_id["g1-gate"]["visits"] == 2 and by_id["g1-gate"]["status"] == "visited"
    assert by_id["g1-gate"]["visited_by"] == {"T001": 2}
    assert by_id["g1-school"]["status"] == "visited"
    # the morning ends at the school and the afternoon starts there: two visits, not one
    # stretched across the two hours without points
    assert by_id["g1-school"]["visits"] == 2
    assert by_id["g1-market"] | {"first_visit": None} == by_id["g1-market"]
    assert by_id["g1-market"]["status"] == "missed" and by_id["g1-market"]["visits"] == 0
    assert by_id["g2-bridge"]["visited_by"] == {"T002": 1}
    grids = {g["grid"]: g for g in report.grids}
    assert grids["grid-01"] == {"grid": "grid-01", "checkpoints": 3, "visited": 2, "missed": 1,
                                "coverage": round(2 / 3, 4)}  # fmt: skip
    assert grids["grid-02"]["coverage"] == 1.0
    officers = {o["device"]: o for o in report.officers}
    assert officers["T001"] == {"device": "T001", "grid": "grid-01", "visits": 4,
                                "checkpoints": {"g1-gate": 2, "g1-school": 2}}  # fmt: skip
    assert officers["T003"]["visits"] == 0
    body = report.to_json()
    assert body["shift"]["start_iso"] == "2026-11-28T00:00:00Z"

    rows = list(csv.DictReader(io.StringIO(coverage_csv([report]))))
    assert len(rows) == 4
    gate_row = next(r for r in rows if r["checkpoint"] == "g1-gate")
    assert (gate_row["status"], gate_row["visits"], gate_row["visited_by"]) == (
        "visited",
        "2",
        "T001:2",
    )


def test_one_visit_short_of_the_requirement_is_missed() -> None:
    gate = (G1[1], G1[0])
    tracks = {"T001": patrol(SHIFT.start + 600, [gate])}
    report = coverage(CP[:1], tracks, SHIFT)
    assert report.checkpoints[0]["visits"] == 1 and report.checkpoints[0]["status"] == "missed"


def test_edge_wander_counts_once() -> None:
    cp = Checkpoint("c", "grid-01", "c", G1[1], G1[0], 30.0, 1)
    wander = [TrackPoint(1000 + 10 * i, G1[1] + (25 if i % 2 else 35) * M_LAT, G1[0])
              for i in range(20)]  # fmt: skip
    assert len(find_visits(cp, "T001", wander, revisit_s=600)) == 1
    assert len(find_visits(cp, "T001", wander, revisit_s=5)) == 10


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"grid": "grid-99"}, "unknown grid"),
        ({"radius_m": 0}, "radius"),
        ({"required_visits": 0}, "required_visits"),
        ({"lat": 95.0}, "bad position"),
        ({"checkpoint_id": ""}, "id"),
    ],
)
def test_bad_checkpoints_are_refused(kwargs: dict[str, object], needle: str) -> None:
    args: dict[str, object] = {"checkpoint_id": "c", "grid": "grid-01", "name": "C",
                               "lat": G1[1], "lon": G1[0], "grids": ORG.grids}  # fmt: skip
    args.update(kwargs)
    with pytest.raises(CheckpointError, match=needle):
        make_checkpoint(**args)  # type: ignore[arg-type]


def test_shift_must_not_end_before_it_starts() -> None:
    with pytest.raises(CheckpointError):
        Shift("x", 10.0, 5.0)
    with pytest.raises(CheckpointError, match="bad start"):
        ShiftPattern("x", "25:99", 8).window(date(2026, 1, 1), 8)


@pytest.mark.parametrize(
    ("day", "start", "end", "needle"),
    [
        (None, 0.0, 1e12, "within epoch"),  # year 33658: no ISO date for the report
        (None, 0.0, math.inf, "within epoch"),
        (None, -86_400.0, 0.0, "within epoch"),
        (None, math.nan, 60.0, "ends before it starts"),
        (None, 0.0, 32 * 86_400.0, "exceeds"),  # the replay's limit: 31 days
        (date(9999, 12, 31), None, None, "within epoch"),
        (date(1, 1, 1), None, None, "within epoch"),
    ],
)
def test_coverage_windows_are_checked_before_any_query(
    day: date | None, start: float | None, end: float | None, needle: str
) -> None:
    with pytest.raises(CheckpointError, match=needle):
        shifts_for(DEFAULT_SHIFTS, 8.0, day, None, start, end)


def test_coverage_windows_within_range_pass() -> None:
    assert shifts_for(DEFAULT_SHIFTS, 8.0, None, None, 0.0, 60.0) == [Shift("custom", 0.0, 60.0)]
    day, night = shifts_for(DEFAULT_SHIFTS, 8.0, date(2026, 11, 28), None, None, None)
    assert (day.end, night.end - night.start) == (night.start, 12 * 3600.0)
