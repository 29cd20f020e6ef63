"""The fault benchmark's accounting helpers (bench/faults.py): what counts as lost."""

from __future__ import annotations

from collections import Counter

from bench.faults import fold_problem, lost_beacons, meets, missing, ms


def test_lost_beacons_compares_the_sets_not_the_counts() -> None:
    acked = {"F0001": {1000, 2000, 3000}, "F0002": {1000}}
    # A stored row nobody acknowledged does not hide an acknowledged one that is missing.
    stored = {"F0001": {1000, 3000, 9000}}
    assert lost_beacons(acked, stored) == 2
    assert lost_beacons(acked, {"F0001": {1000, 2000, 3000}, "F0002": {1000}}) == 0


def test_missing_events_are_a_multiset_difference() -> None:
    grant = ("floor_granted", "grid-01", "F0001", 1)
    observed = Counter({grant: 2, ("floor_released", "grid-01", "F0001", None): 1})
    # Burst ids start again after a gateway restart: the same grant twice needs two rows.
    assert missing(observed, Counter({grant: 1})) == 2
    assert (
        missing(observed, Counter({grant: 3, ("floor_released", "grid-01", "F0001", None): 1})) == 0
    )


def test_fold_problem_and_targets() -> None:
    assert fold_problem("position writer: down for 12 s, 3400 waiting") == (
        "position writer: down for N s, N waiting"
    )
    row = {"fault": "broker_kill", "lost": 0, "events_lost": 1, "recovery_s": 0.5}
    assert meets(row) == {"lost": True, "events_lost": False, "recovery_s": True}
    flood = {"fault": "device_flood_10k_per_s", "lost": 0, "events_lost": 0, "recovery_s": None}
    assert meets(flood)["recovery_s"] is False  # a figure that is missing is a miss
    assert meets(flood)["others_access_p95_ms"] is False
    assert ms(float("nan")) is None
    assert ms(12.345) == 12.3
