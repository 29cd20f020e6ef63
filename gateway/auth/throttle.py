"""Sign-in rate limit and lockout (pure: `now` is passed in).

Failures are counted per key (the account name, and separately the client address) within a
sliding window; at `max_failures` the key is locked out for `lockout_s`. A success clears the
account name's count. A locked key is refused before its password is even checked, so a locked
account cannot be guessed further (and the argon2 cost is not spent on a flood).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

MAX_KEYS: Final = 10_000


@dataclass(slots=True)
class LoginThrottle:
    max_failures: int = 5
    window_s: float = 300.0
    lockout_s: float = 300.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _locked_until: dict[str, float] = field(default_factory=dict)

    def retry_after(self, keys: tuple[str, ...], now: float) -> float | None:
        """Seconds until the first locked key of `keys` is free again; None if none is."""
        waits = [until - now for k in keys if (until := self._locked_until.get(k, 0.0)) > now]
        return max(waits) if waits else None

    def failed(self, keys: tuple[str, ...], now: float) -> None:
        if len(self._failures) >= MAX_KEYS:
            self._forget_old(now)
        for key in keys:
            times = self._failures.setdefault(key, deque())
            times.append(now)
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if len(times) >= self.max_failures:
                self._locked_until[key] = now + self.lockout_s
                times.clear()

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def _forget_old(self, now: float) -> None:
        for key in [k for k, t in self._failures.items() if not t or t[-1] <= now - self.window_s]:
            del self._failures[key]
        for key in [k for k, until in self._locked_until.items() if until <= now]:
            del self._locked_until[key]
