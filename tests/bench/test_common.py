"""The percentile every benchmark reports with (nearest rank)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from bench.common import percentile


def test_known_values() -> None:
    hundred = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert percentile(hundred, 0.99) == 99.0
    assert percentile(hundred, 0.5) == 50.0
    assert percentile(hundred, 1.0) == 100.0
    assert percentile([3.0], 0.99) == 3.0
    assert math.isnan(percentile([], 0.5))


@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=300),
    st.floats(min_value=0.001, max_value=1.0),
)
def test_nearest_rank_definition(values: list[float], q: float) -> None:
    p = percentile(values, q)
    assert p in values
    at_or_below = sum(v <= p for v in values)
    below = sum(v < p for v in values)
    assert at_or_below >= q * len(values) - 1e-9  # at least q of the values are <= p
    assert below < q * len(values) + 1e-9  # and p is the smallest such value
