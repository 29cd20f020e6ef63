"""Arrival-delay statistics for the jitter buffer (the NetEQ DelayManager idea, simplified).

Each arriving message gives a *relative delay*: how much later it arrived than the earliest
arrival seen in its burst, once the sender's timestamp is accounted for. The relative delays go
into a histogram with exponential forgetting, so old network conditions fade out; the target
playout delay is a high quantile (0.95 by default) of that histogram, re-evaluated on every
arrival. The target is the upper edge of the quantile's bucket: the delay by which that share
of arrivals had come (a regular network gives one bucket, 1 ms, not 0).
"""

from __future__ import annotations

import numpy as np

from codec.errors import CodecConfigError

_BUCKET_S = 0.001  # histogram resolution
_MAX_DELAY_S = 2.0


class DelayHistogram:
    """Relative-delay histogram with forgetting and a quantile-based target."""

    def __init__(
        self, quantile: float = 0.95, forget: float = 0.995, second_quantile: float = 0.5
    ) -> None:
        for value in (quantile, second_quantile):
            if not 0.5 <= value < 1.0:
                raise CodecConfigError(f"quantile {value} outside [0.5, 1)")
        if not 0.9 <= forget < 1.0:
            raise CodecConfigError(f"forget factor {forget} outside [0.9, 1)")
        self.quantile = quantile
        self.second_quantile = second_quantile
        self.forget = forget
        self._buckets = np.zeros(int(_MAX_DELAY_S / _BUCKET_S) + 1)
        self._samples = 0
        self._target = 0.0
        self._second = 0.0

    @property
    def samples(self) -> int:
        return self._samples

    @property
    def target_s(self) -> float:
        """The delay (s) by which `quantile` of arrivals have come, 0 before any arrival."""
        return self._target

    @property
    def second_s(self) -> float:
        """The delay (s) by which `second_quantile` of arrivals have come, 0 before any."""
        return self._second

    def add(self, relative_delay_s: float) -> None:
        self._samples += 1
        # Ramp the forgetting in (as NetEQ does) so the first arrivals are not drowned by zeros.
        forget = min(self.forget, 1.0 - 1.0 / self._samples) if self._samples > 1 else 0.0
        self._buckets *= forget
        index = min(len(self._buckets) - 1, max(0, int(relative_delay_s / _BUCKET_S)))
        self._buckets[index] += 1.0 - forget
        cumulative = np.cumsum(self._buckets)
        total = cumulative[-1]
        last = len(self._buckets) - 1
        wanted = (self.quantile * total, self.second_quantile * total)
        positions = np.searchsorted(cumulative, wanted)
        self._target = (min(int(positions[0]), last) + 1) * _BUCKET_S
        self._second = (min(int(positions[1]), last) + 1) * _BUCKET_S
