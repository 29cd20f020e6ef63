"""Per-device budgets with a fake clock: the token bucket (docs/protocol.md §5.1, §7)."""

from __future__ import annotations

import pytest

from gateway.budget import Budgets
from protocol import limits


def test_a_bucket_gives_its_burst_then_its_rate() -> None:
    budget = Budgets(rate=10.0, burst=5)
    assert [budget.allow("a", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert budget.allow("b", 0.0), "each key has its own bucket"
    assert not budget.allow("a", 0.05)  # half a token
    assert budget.allow("a", 0.1)
    assert not budget.allow("a", 0.1)
    assert budget.tokens("a", 100.0) == 5.0, "it refills up to its burst, no further"
    assert [budget.allow("a", 100.0) for _ in range(6)] == [True] * 5 + [False]


def test_refused_messages_take_no_token() -> None:
    budget = Budgets(rate=1.0, burst=1)
    assert budget.allow("a", 0.0)
    for k in range(1, 100):
        assert not budget.allow("a", k / 100)  # a flood keeps it empty but not in debt
    assert budget.allow("a", 1.0)


def test_idle_buckets_are_forgotten_and_memory_is_bounded() -> None:
    budget = Budgets(rate=10.0, burst=20, max_keys=100)  # full again after 2 s
    for k in range(50):
        budget.allow(f"d{k}", 0.0)
    assert len(budget) == 50
    budget.allow("late", 2.5)  # a new key after refill_s: the sweep forgets the idle ones
    assert len(budget) == 1
    for k in range(1000):  # distinct keys all at once: never more than max_keys
        budget.allow(f"x{k}", 3.0)
    assert len(budget) == 100


def test_a_forgotten_bucket_comes_back_full() -> None:
    budget = Budgets(rate=10.0, burst=3, max_keys=2)
    for _ in range(3):
        budget.allow("a", 0.0)
    assert not budget.allow("a", 0.0)
    budget.allow("b", 0.0)
    budget.allow("c", 0.0)  # full: forgets "a", the oldest
    assert budget.allow("a", 0.0), "lenient, never harsher"


def test_note_is_true_once_per_interval() -> None:
    budget = Budgets(rate=1.0, burst=1)
    assert not budget.note("a", 0.0, 1.0), "no bucket, nothing to note"
    budget.allow("a", 0.0)
    assert [budget.note("a", t, 1.0) for t in (0.0, 0.5, 0.99, 1.0, 1.5, 2.1)] == [
        True, False, False, True, False, True
    ]  # fmt: skip


def test_bad_budgets_are_refused() -> None:
    with pytest.raises(ValueError):
        Budgets(rate=0.0, burst=5)
    with pytest.raises(ValueError):
        Budgets(rate=1.0, burst=0)


def test_the_beacon_burst_holds_a_full_offline_store() -> None:
    assert limits.BEACON_BURST >= limits.BEACON_STORE + limits.BEACON_WINDOW


def test_a_clock_stepping_back_neither_refills_nor_takes() -> None:
    budget = Budgets(rate=1.0, burst=2)
    assert budget.allow("a", 100.0) and budget.allow("a", 100.0)
    assert not budget.allow("a", 50.0)
    assert budget.tokens("a", 50.0) == 0.0
    assert budget.allow("a", 101.0)
