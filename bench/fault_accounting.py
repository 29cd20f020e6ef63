"""The fault benchmark's accounting (bench/faults.py): its targets and what counts as lost.

Pure functions, tested in tests/bench/test_faults.py.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

TARGETS: dict[str, float] = {
    "lost": 0,
    "events_lost": 0,
    "recovery_s": 5.0,
    "others_access_p95_ms": 50.0,
}


def fold_problem(text: str) -> str:
    """A health problem with its numbers replaced by N, so one problem is one line however
    long it lasts ("... for 12 s, 3400 positions waiting" -> "... for N s, N positions ...")."""
    return re.sub(r"\d+(\.\d+)?", "N", text)


def missing(observed: Counter[Any], stored: Counter[Any]) -> int:
    """How many observed items have no stored counterpart (multisets: extra rows are fine)."""
    return sum(max(0, n - stored.get(key, 0)) for key, n in observed.items())


def lost_beacons(acked: dict[str, set[int]], stored: dict[str, set[int]]) -> int:
    """Acknowledged (device -> fix times, ms) with no stored row."""
    return sum(len(times - stored.get(device, set())) for device, times in acked.items())


def ms(value: float) -> float | None:
    """A figure for the JSON: rounded, None for no samples (NaN is not JSON)."""
    return None if value != value else round(value, 1)


def meets(row: dict[str, Any]) -> dict[str, bool]:
    """Each target that applies to the row: met or not (a missing figure is a miss)."""
    out: dict[str, bool] = {}
    for key, limit in TARGETS.items():
        if key == "others_access_p95_ms" and row["fault"] != "device_flood_10k_per_s":
            continue
        value = row.get(key)
        out[key] = isinstance(value, int | float) and value <= limit
    return out
