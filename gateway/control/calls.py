"""Private calls (§6): a floor per pair of devices, made on the first request and forgotten
when idle; the numbering of a forgotten call is kept so the next one continues it."""

from __future__ import annotations

from gateway.floor import MAX_BURST_ID, Floor, FloorConfig
from gateway.floors import FloorTable
from protocol.keys import call_key

CALL_IDLE_S = 60.0  # a private call idle this long is forgotten (§6)
MAX_RETIRED_CALLS = 10_000  # device pairs whose burst/call numbering is remembered
# New calls' first burst ids step by this (prime to 65535, near 65535 / golden ratio squared, so
# the starts of calls opened near in time spread out: any two of 50 in a row lie >= 901 apart).
# `voice/down` names no peer: a terminal in two calls at once tells their frames apart by burst
# id alone (§2, §6).
CALL_BURST_STRIDE = 25031


class PrivateCalls:
    def __init__(
        self, floors: FloorTable, floor_config: FloorConfig, idle_s: float = CALL_IDLE_S
    ) -> None:
        self._floors = floors
        self.floor_config = floor_config
        self.idle_s = idle_s
        self._retired: dict[str, tuple[int, int]] = {}  # key -> (next burst, last call number)
        self._opened = 0  # calls opened afresh: where the next one's numbering starts

    def find(self, caller: str, peer: str) -> str | None:
        """The key of the live call between two devices, if there is one."""
        key = call_key(caller, peer)
        return key if self._floors.is_call(key) else None

    def open(self, caller: str, peer: str) -> str:
        """The key of the call between two devices; its floor is made if there is none."""
        key = call_key(caller, peer)
        if not self._floors.is_call(key):
            resumed = self._retired.pop(key, None)
            next_burst, last_call = resumed if resumed is not None else (self._first_burst(), 0)
            floor = Floor(key, self.floor_config, next_burst, last_call=last_call)
            a, b = sorted((caller, peer))
            self._floors.add_call(key, floor, (a, b))
        return key

    def _first_burst(self) -> int:
        first = 1 + (self._opened * CALL_BURST_STRIDE) % MAX_BURST_ID
        self._opened += 1
        return first

    def forget_at(self, key: str) -> float | None:
        """When the call `key` is due to be forgotten if it stays idle (None: not idle, or no
        such call)."""
        floor = self._floors.calls.get(key)
        since = None if floor is None else floor.idle_since()
        return None if since is None else since + self.idle_s

    def idle_for_long(self, key: str, now: float) -> bool:
        """Whether the call `key` has been idle for `idle_s` by `now` (due to be forgotten)."""
        floor = self._floors.calls.get(key)
        since = None if floor is None else floor.idle_since()
        return since is not None and now - since >= self.idle_s

    def retire(self, key: str) -> None:
        """A private call's floor and routes live while the call does, not for ever."""
        floor = self._floors.remove_call(key)
        if floor is None:
            return
        if len(self._retired) >= MAX_RETIRED_CALLS:
            del self._retired[next(iter(self._retired))]  # the oldest
        self._retired[key] = floor.resume_point
