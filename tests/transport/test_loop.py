"""transport.loop.freeze_startup_heap: start-up objects leave the collector, garbage does not."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from transport.loop import freeze_startup_heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> _Node:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return a


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


@pytest.mark.usefixtures("unfrozen")
def test_start_up_garbage_is_collected_and_the_rest_frozen() -> None:
    kept = _cycle()
    dropped = weakref.ref(_cycle())  # unreachable already: garbage of the start-up
    moved = freeze_startup_heap()
    assert dropped() is None  # collected before freezing, not kept forever
    assert moved > 0 and gc.get_freeze_count() > 0  # (frozen objects may still be freed)
    assert kept.other is not None and kept.other.other is kept
    # What is made afterwards is collected as before.
    later = weakref.ref(_cycle())
    gc.collect()
    assert later() is None
