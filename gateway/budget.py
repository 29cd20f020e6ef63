"""Per-device message budgets (docs/protocol.md §5.1, §7), sans-I/O: token buckets, `now` in.

A bucket holds at most `burst` tokens and gains `rate` tokens per second; a message takes one
token or is over budget. `Budgets` keeps one bucket per key (a device id, an OwnTracks topic)
and is bounded: a bucket left alone for `burst / rate` seconds is full again, the same as a new
one, so such buckets are forgotten (a sweep at most every that many seconds); past `max_keys`
the oldest (first made) buckets are forgotten first (a forgotten bucket comes back full: that
is lenient, never harsher).

`allow()` is on the path of every message, flood included: one dict lookup and a few float
operations, nothing else.
"""

from __future__ import annotations

from typing import Final

MAX_KEYS: Final = 100_000


class TokenBucket:
    __slots__ = ("noted", "stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp  # when `tokens` was last brought up to date
        self.noted = float("-inf")  # when the owner last acted on a refusal (see Budgets.note)


class Budgets:
    """One token bucket per key, `rate` tokens per second up to `burst`."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = MAX_KEYS) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("a budget needs rate > 0, burst >= 1 and max_keys >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self.refill_s = self.burst / rate  # an untouched bucket is full after this long
        self._buckets: dict[str, TokenBucket] = {}
        self._next_sweep = float("-inf")

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str, now: float) -> bool:
        """Take one token from `key`'s bucket; False (nothing taken) when it has none."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._new(key, now)
        elif now > bucket.stamp:  # a clock that steps back refills nothing, takes nothing
            tokens = bucket.tokens + (now - bucket.stamp) * self.rate
            bucket.tokens = tokens if tokens < self.burst else self.burst
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False

    def note(self, key: str, now: float, interval: float) -> bool:
        """True at most once per `interval` seconds per key (and only for a key that has a
        bucket): what a refusal may be answered or examined with, e.g. one error reply a
        second however many messages are refused."""
        bucket = self._buckets.get(key)
        if bucket is None or now - bucket.noted < interval:
            return False
        bucket.noted = now
        return True

    def tokens(self, key: str, now: float) -> float:
        """What `key` may still send now (a full bucket for a key never seen)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return self.burst
        return min(self.burst, bucket.tokens + max(0.0, now - bucket.stamp) * self.rate)

    def _new(self, key: str, now: float) -> TokenBucket:
        if now >= self._next_sweep:
            self.sweep(now)
        while len(self._buckets) >= self.max_keys:  # still full: forget the oldest
            del self._buckets[next(iter(self._buckets))]
        bucket = self._buckets[key] = TokenBucket(self.burst, now)
        return bucket

    def sweep(self, now: float) -> None:
        """Forget buckets untouched for `refill_s` (full again: the same as forgotten)."""
        idle_since = now - self.refill_s
        self._buckets = {k: b for k, b in self._buckets.items() if b.stamp > idle_since}
        self._next_sweep = now + self.refill_s
