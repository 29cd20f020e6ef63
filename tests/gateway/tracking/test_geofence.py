"""Geofence enter/exit on crafted tracks: grid polygons, custom polygons, circles, corridors."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.tracking.errors import GeofenceError
from gateway.tracking.geofence import (
    GeofenceSet,
    GeofenceTracker,
    grid_specs,
    make_spec,
    membership_codes,
    org_projection,
)
from gateway.tracking.model import Fix, TrackingEvent
from protocol.org import default_org

ORG = default_org()
PROJECTION = org_projection(ORG)
LON, LAT = ORG.grids["grid-01"].centre
M_LAT = 1 / 111_195.0  # degrees of latitude per metre


def run(
    tracker: GeofenceTracker, points: list[tuple[float, float]], device: str = "T001"
) -> list[TrackingEvent]:
    fixes = [Fix(device, 1000.0 + i, lat, lon) for i, (lon, lat) in enumerate(points)]
    xs, ys = PROJECTION.arrays_to_xy(
        np.array([f.lon for f in fixes]), np.array([f.lat for f in fixes])
    )
    return tracker.update(fixes, xs, ys)


def transitions(events: list[TrackingEvent]) -> list[tuple[str, str | None]]:
    return [(e.type, e.geofence) for e in events]


def test_circle_enter_and_exit() -> None:
    circle = make_spec("post", "Guard post", "circle", [(LON, LAT)], radius_m=50)
    tracker = GeofenceTracker(GeofenceSet([circle], PROJECTION))
    walk = [(LON, LAT + k * 20 * M_LAT) for k in (6, 4, 3, 2, 0, -2, -3, -4)]  # 120 m N -> 80 m S
    events = run(tracker, walk)
    assert transitions(events) == [("enter", "post"), ("exit", "post")]
    enter, leave = events
    assert enter.ts == 1003.0 and leave.ts == 1006.0  # first point inside 40 m; first outside
    assert enter.active and not leave.active and enter.data["fence_kind"] == "circle"


def test_first_position_sets_the_state_without_an_event() -> None:
    circle = make_spec("post", "", "circle", [(LON, LAT)], radius_m=50)
    tracker = GeofenceTracker(GeofenceSet([circle], PROJECTION))
    assert run(tracker, [(LON, LAT)]) == []
    assert tracker.inside("T001") == ["post"]
    assert transitions(run(tracker, [(LON, LAT + 100 * M_LAT)])) == [("exit", "post")]


def test_grids_crossing_from_one_to_the_next() -> None:
    tracker = GeofenceTracker(GeofenceSet(grid_specs(ORG), PROJECTION))
    a, b = ORG.grids["grid-01"].centre, ORG.grids["grid-02"].centre
    line = [(a[0] + (b[0] - a[0]) * k / 20, a[1] + (b[1] - a[1]) * k / 20) for k in range(21)]
    events = run(tracker, line)
    assert transitions(events) == [("exit", "grid-01"), ("enter", "grid-02")]
    assert events[0].ts == events[1].ts  # the shared edge is crossed between two fixes
    assert ORG.grid_at(events[1].lon, events[1].lat) == "grid-02"  # agrees with the org model


def test_corridor_follows_a_polyline() -> None:
    road = [(LON, LAT), (LON + 0.002, LAT), (LON + 0.002, LAT + 0.002)]
    corridor = make_spec("road", "Patrol road", "corridor", road, radius_m=15)
    tracker = GeofenceTracker(GeofenceSet([corridor], PROJECTION))
    assert tracker.fences.fences_at(LON + 0.001, LAT + 10 * M_LAT) == ["road"]  # 10 m aside
    assert tracker.fences.fences_at(LON + 0.001, LAT + 20 * M_LAT) == []  # 20 m aside
    track = [(LON - 0.0005, LAT), (LON + 0.001, LAT), (LON + 0.002, LAT + 0.001),
             (LON + 0.001, LAT + 0.001)]  # fmt: skip
    assert transitions(run(tracker, track)) == [("enter", "road"), ("exit", "road")]


def test_polygon_and_overlapping_fences_fire_independently() -> None:
    square = [(LON - 0.001, LAT - 0.001), (LON + 0.001, LAT - 0.001), (LON + 0.001, LAT + 0.001),
              (LON - 0.001, LAT + 0.001)]  # fmt: skip
    fences = [
        make_spec("sq", "Square", "polygon", square),
        make_spec("c", "Centre", "circle", [(LON, LAT)], radius_m=30),
    ]
    tracker = GeofenceTracker(GeofenceSet(fences, PROJECTION))
    events = run(tracker, [(LON - 0.002, LAT), (LON - 0.0005, LAT), (LON, LAT), (LON + 0.002, LAT)])
    assert transitions(events) == [("enter", "sq"), ("enter", "c"), ("exit", "sq"), ("exit", "c")]


def test_devices_are_tracked_separately() -> None:
    circle = make_spec("post", "", "circle", [(LON, LAT)], radius_m=50)
    tracker = GeofenceTracker(GeofenceSet([circle], PROJECTION))
    run(tracker, [(LON, LAT + 0.01)], "A")
    run(tracker, [(LON, LAT)], "B")
    assert transitions(run(tracker, [(LON, LAT)], "A")) == [("enter", "post")]
    assert run(tracker, [(LON, LAT)], "B") == []


def test_replacing_fences_keeps_state_of_the_ones_that_remain() -> None:
    post = make_spec("post", "", "circle", [(LON, LAT)], radius_m=50)
    other = make_spec("other", "", "circle", [(LON + 0.01, LAT)], radius_m=50)
    tracker = GeofenceTracker(GeofenceSet([post], PROJECTION))
    run(tracker, [(LON, LAT)])
    tracker.replace(GeofenceSet([other, post], PROJECTION))
    assert tracker.inside("T001") == ["post"]
    assert transitions(run(tracker, [(LON + 0.01, LAT)])) == [
        ("exit", "post"),
        ("enter", "other"),
    ]


def test_many_fences_use_wide_bitmasks() -> None:
    fences = [
        make_spec(f"c{i}", "", "circle", [(LON + i * 0.0001, LAT)], radius_m=5) for i in range(80)
    ]
    fence_set = GeofenceSet(fences, PROJECTION)
    x, y = PROJECTION.to_xy(LON + 79 * 0.0001, LAT)
    (code,) = membership_codes(fence_set.membership(np.array([x]), np.array([y])))
    assert code == 1 << 79
    tracker = GeofenceTracker(fence_set)
    run(tracker, [(LON, LAT + 0.01)])
    assert transitions(run(tracker, [(LON + 79 * 0.0001, LAT)])) == [("enter", "c79")]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("x", "", "hexagon", [(LON, LAT)]), "kind"),
        (("x", "", "circle", [(LON, LAT)]), "radius_m"),
        (("x", "", "circle", [(LON, LAT)], -5.0), "radius_m"),
        (("x", "", "circle", [(LON, LAT), (LON, LAT)], 5.0), "exactly one"),
        (("x", "", "polygon", [(LON, LAT), (LON, LAT + 1)]), "at least 4"),
        (("x", "", "polygon", [(LON, LAT), (LON, 91.0), (LON + 1, LAT)]), "valid"),
        (("x", "", "polygon", [(LON, LAT), (LON, LAT + 1), (LON + 1, LAT)], 3.0), "no radius"),
        (("", "", "circle", [(LON, LAT)], 5.0), "id"),
        (("x", "", "corridor", [(LON, LAT), ("a", 1)], 5.0), "lon, lat"),
    ],
)
def test_invalid_definitions_are_refused(args: tuple[object, ...], needle: str) -> None:
    with pytest.raises(GeofenceError, match=needle):
        make_spec(*args)  # type: ignore[arg-type]


def test_self_intersecting_polygon_is_refused() -> None:
    bowtie = [(LON, LAT), (LON + 0.001, LAT + 0.001), (LON + 0.001, LAT), (LON, LAT + 0.001)]
    spec = make_spec("bow", "", "polygon", bowtie)
    with pytest.raises(GeofenceError, match="invalid"):
        GeofenceSet([spec], PROJECTION)


def test_zero_length_corridor_is_refused() -> None:
    spec = make_spec("r", "", "corridor", [(LON, LAT), (LON, LAT)], radius_m=5)
    with pytest.raises(GeofenceError, match="zero length"):
        GeofenceSet([spec], PROJECTION)
