"""Floor wake-ups: a heap of (when, floor key) so a tick visits only floors with something due,
not every talkgroup 20 times a second."""

from __future__ import annotations

import heapq


class FloorTimers:
    """Each floor key has at most one pending wake-up, the earliest asked for.

    Frames move a floor's end-of-media deadline later without telling anyone: a wake-up that
    finds its deadline moved just sets the new one (the caller schedules again).
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._wake: dict[str, float] = {}

    def schedule(self, key: str, when: float) -> None:
        """Wake `key` at `when`; an earlier pending wake-up stays (it re-checks when it fires)."""
        pending = self._wake.get(key)
        if pending is not None and pending <= when:
            return
        self._wake[key] = when
        heapq.heappush(self._heap, (when, key))

    def pending(self, key: str) -> float | None:
        return self._wake.get(key)

    def due(self, now: float) -> list[str]:
        """The keys whose wake-up is due by `now`, in time order; they are no longer pending.
        Wake-ups scheduled while the caller handles them (<= now) wait for the next call."""
        heap, wake = self._heap, self._wake
        due = []
        while heap and heap[0][0] <= now:
            when, key = heapq.heappop(heap)
            if wake.get(key) == when:  # else superseded by an earlier wake-up that already ran
                del wake[key]
                due.append(key)
        return due
