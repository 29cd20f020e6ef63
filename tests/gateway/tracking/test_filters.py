"""Every rule of the filter chain, on and off."""

from __future__ import annotations

import pytest

from gateway.tracking.filters import FilterChain, FilterConfig
from gateway.tracking.model import Fix

NOW = 1_764_300_000.0
LAT, LON = 30.8712, 120.1305
METRE_LAT = 1 / 111_195.0  # degrees of latitude per metre (mean Earth radius)


def fix(t: float = NOW, lat: float = LAT, lon: float = LON, **kw: object) -> Fix:
    return Fix("T001", t, lat, lon, **kw)  # type: ignore[arg-type]


def off(**on: object) -> FilterConfig:
    """Every rule off except those given."""
    config = FilterConfig(
        invalid=False,
        zero=False,
        duplicate=False,
        future_s=None,
        past_s=None,
        max_accuracy_m=None,
        max_speed_mps=None,
    )
    for key, value in on.items():
        setattr(config, key, value)
    return config


def test_defaults_accept_an_ordinary_walk() -> None:
    chain = FilterChain()
    for i in range(10):
        assert chain.apply(fix(NOW + 5 * i, LAT + 7 * i * METRE_LAT), NOW + 5 * i) is None
    assert chain.accepted == 10 and not chain.counts


def test_invalid() -> None:
    assert FilterChain(off(invalid=True)).check(fix(valid=False), NOW) == "invalid"
    assert FilterChain(off()).check(fix(valid=False), NOW) is None


def test_zero() -> None:
    assert FilterChain(off(zero=True)).check(fix(lat=0.0, lon=0.0), NOW) == "zero"
    assert FilterChain(off(zero=True)).check(fix(lat=0.0, lon=1.0), NOW) is None
    assert FilterChain(off()).check(fix(lat=0.0, lon=0.0), NOW) is None


def test_duplicate() -> None:
    chain = FilterChain(off(duplicate=True))
    assert chain.apply(fix(), NOW) is None
    assert chain.apply(fix(), NOW) == "duplicate"
    assert chain.apply(fix(NOW + 1), NOW) is None
    assert FilterChain(off()).apply(fix(), NOW) is None


def test_future_and_past() -> None:
    chain = FilterChain(off(future_s=60.0, past_s=3600.0))
    assert chain.check(fix(NOW + 61), NOW) == "future"
    assert chain.check(fix(NOW + 59), NOW) is None
    assert chain.check(fix(NOW - 3601), NOW) == "past"
    assert chain.check(fix(NOW - 3599), NOW) is None


def test_accuracy() -> None:
    chain = FilterChain(off(max_accuracy_m=50.0))
    assert chain.check(fix(accuracy=50.1), NOW) == "accuracy"
    assert chain.check(fix(accuracy=50.0), NOW) is None
    assert chain.check(fix(accuracy=None), NOW) is None


def test_implied_speed() -> None:
    chain = FilterChain(off(max_speed_mps=10.0))
    assert chain.apply(fix(NOW), NOW) is None
    # 200 m in 10 s = 20 m/s: a jump, not a walk.
    assert chain.apply(fix(NOW + 10, LAT + 200 * METRE_LAT), NOW) == "speed"
    # compared with the last ACCEPTED point: 90 m in 10 s passes.
    assert chain.apply(fix(NOW + 10, LAT + 90 * METRE_LAT), NOW) is None


def test_min_distance_with_skip_limit() -> None:
    chain = FilterChain(off(min_distance_m=20.0, skip_limit_s=60.0))
    assert chain.apply(fix(NOW), NOW) is None
    assert chain.apply(fix(NOW + 5, LAT + 10 * METRE_LAT), NOW) == "distance"
    assert chain.apply(fix(NOW + 10, LAT + 25 * METRE_LAT), NOW) is None
    # standing still for a minute: one heartbeat point passes the skip limit
    assert chain.apply(fix(NOW + 70, LAT + 25 * METRE_LAT), NOW) is None


def test_min_period() -> None:
    chain = FilterChain(off(min_period_s=30.0))
    assert chain.apply(fix(NOW), NOW) is None
    assert chain.apply(fix(NOW + 10, LAT + 0.01), NOW) == "period"
    assert chain.apply(fix(NOW + 30, LAT + 0.01), NOW) is None


def test_late_points_skip_consecutive_rules_but_not_point_rules() -> None:
    chain = FilterChain(off(max_speed_mps=1.0, max_accuracy_m=10.0))
    assert chain.apply(fix(NOW), NOW) is None
    assert chain.apply(fix(NOW - 60, LAT + 0.05), NOW) is None  # from the offline buffer
    assert chain.apply(fix(NOW - 50, accuracy=11.0), NOW) == "accuracy"
    # the late point did not become "last": speed still measured from NOW's point
    assert chain.apply(fix(NOW + 10, LAT + 5 * METRE_LAT), NOW) is None


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: fix(valid=False), "invalid"),
        (lambda: fix(lat=0.0, lon=0.0), "zero"),
        (lambda: fix(NOW + 3600), "future"),
        (lambda: fix(NOW - 30 * 86400), "past"),
        (lambda: fix(accuracy=500.0), "accuracy"),
    ],
)
def test_filtered_points_are_counted_by_reason(make: object, reason: str) -> None:
    chain = FilterChain()
    assert callable(make)
    assert chain.apply(make(), NOW) == reason
    assert chain.counts == {reason: 1} and chain.accepted == 0


def test_database_duplicates_move_between_counters() -> None:
    chain = FilterChain()
    chain.apply(fix(), NOW)
    chain.record_duplicates(1)
    assert chain.accepted == 0 and chain.counts["duplicate"] == 1


def test_devices_are_independent() -> None:
    chain = FilterChain(off(duplicate=True))
    assert chain.apply(fix(), NOW) is None
    assert chain.apply(Fix("T002", NOW, LAT, LON), NOW) is None
    chain.forget("T001")
    assert chain.apply(fix(), NOW) is None
