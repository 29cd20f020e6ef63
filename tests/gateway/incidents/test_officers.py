"""Nearest available officers from the cell index, checked against a full scan."""

from __future__ import annotations

import random

import pytest

from gateway.incidents.officers import OfficerIndex, distance_m

GRIDS = [f"grid-{n:02d}" for n in range(1, 14)]


def brute(
    index: OfficerIndex, lat: float, lon: float, grid: str | None, k: int
) -> list[tuple[str, float]]:
    rank = {"available": 0, "on_duty": 1, "busy": 2}
    found = [
        (rank[o.availability], not (grid is not None and o.grid == grid),
         distance_m(lat, lon, o.lat, o.lon), o.device)
        for o in index.officers.values()
        if o.online and o.availability != "off" and o.lat is not None and o.lon is not None
    ]  # fmt: skip
    found.sort()
    return [(d, dist) for _, _, dist, d in found[:k]]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_suggestions_match_a_full_scan(seed: int) -> None:
    rng = random.Random(seed)
    index = OfficerIndex()
    index.set_officers((f"T{n:04d}", rng.choice(GRIDS)) for n in range(600))
    for n in range(600):
        device = f"T{n:04d}"
        if rng.random() < 0.9:  # some have no fix yet
            index.position(device, 30.85 + rng.random() * 0.05, 120.1 + rng.random() * 0.05, n)
        index.set_availability(device, rng.choice(["available", "on_duty", "busy", "off"]))
        if rng.random() < 0.05:
            index.set_online(device, False)
    for _ in range(50):  # officers move, and positions arrive out of order
        device = f"T{rng.randrange(600):04d}"
        index.position(device, 30.85 + rng.random() * 0.05, 120.1 + rng.random() * 0.05, 1e6)
        index.position(device, 0.0, 0.0, 1.0)  # older than what it has: ignored
    for _ in range(40):
        lat, lon = 30.85 + rng.random() * 0.05, 120.1 + rng.random() * 0.05
        grid = rng.choice([*GRIDS, None])
        k = rng.choice([1, 5, 12])
        got = index.suggest(lat, lon, grid, k)
        expected = brute(index, lat, lon, grid, k)
        assert [(s.device, round(s.distance_m, 6)) for s in got] == [
            (d, round(dist, 6)) for d, dist in expected
        ]


def test_a_suggestion_carries_a_straight_line_eta_and_excludes_the_assigned() -> None:
    index = OfficerIndex(speed_mps=5.0)
    index.set_officers([("A", "grid-01"), ("B", "grid-02")])
    index.position("A", 30.8600, 120.1100, 1.0)
    index.position("B", 30.8610, 120.1100, 2.0)
    (first, second) = index.suggest(30.8610, 120.1100, "grid-01", 5)
    assert (first.device, first.same_grid) == ("A", True)  # same grid first
    assert second.device == "B" and second.distance_m == 0.0
    assert first.eta_s == pytest.approx(first.distance_m / 5.0)
    assert 100 < first.distance_m < 120  # 0.001 degree of latitude
    assert [s.device for s in index.suggest(30.8610, 120.11, "grid-01", 5, exclude=["A"])] == ["B"]
    index.set_officers([("B", "grid-02")])  # A is no longer an officer
    assert [s.device for s in index.suggest(30.86, 120.11, None, 5)] == ["B"]
