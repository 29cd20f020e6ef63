"""The reconnect policy: capped exponential backoff with jitter, pure (no clock, no sleep)."""

from __future__ import annotations

import random
from collections.abc import Callable

Jitter = Callable[[], float]
"""A source of uniform numbers in [0, 1): random.random, or a fixed value in tests."""


class Backoff:
    """Delays between reconnect attempts: `initial`, doubling up to `maximum`, each one scaled
    by a jitter in [0.5, 1.0] so that many clients cut off at once do not come back in step.

        backoff = Backoff(0.2, 10.0)
        delay = backoff.next_delay()  # after a failed attempt
        backoff.reset()               # after a successful one
    """

    __slots__ = ("_uniform", "initial", "maximum", "nominal")

    def __init__(
        self, initial: float, maximum: float, rng: Jitter | random.Random | None = None
    ) -> None:
        if not initial > 0:
            raise ValueError(f"backoff initial delay must be > 0, got {initial}")
        if not maximum >= initial:
            raise ValueError(f"backoff maximum {maximum} is below the initial delay {initial}")
        self.initial = initial
        self.maximum = maximum
        # The delay before jitter of the next attempt.
        self.nominal = initial
        if rng is None:
            self._uniform: Jitter = random.random
        elif isinstance(rng, random.Random):
            self._uniform = rng.random
        else:
            self._uniform = rng

    def next_delay(self) -> float:
        """The delay before the next attempt, in [0.5, 1.0] of the nominal one, which then
        doubles up to the maximum."""
        delay = self.nominal * (0.5 + 0.5 * self._uniform())
        self.nominal = min(self.nominal * 2, self.maximum)
        return delay

    def reset(self) -> None:
        """An attempt succeeded: the next outage starts again from the initial delay."""
        self.nominal = self.initial
