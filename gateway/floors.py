"""The one owner of the gateway's floors: one per talkgroup, one per live private call.

`FloorTable` holds every floor with what it is for (its `Target`). It is the only place floors
are added or removed; each change is passed on to the relay's routes (`Routes`), which keep
their own per-topic lookups for the hot path. Nothing else holds a mutable map of floors:
readers get read-only views.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from gateway.floor import Floor


class Routes(Protocol):
    """Who forwards voice by floor (the relay): told of every floor added or removed."""

    def add_talkgroup(self, tg: str, floor: Floor) -> None: ...

    def add_call(self, key: str, floor: Floor, parties: tuple[str, str]) -> None: ...

    def remove_call(self, key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Target:
    """What a floor is for: a talkgroup, or a private call between two devices."""

    tg: str | None = None
    parties: tuple[str, str] | None = None

    def field_for(self, device: str) -> dict[str, str]:
        if self.tg is not None:
            return {"tg": self.tg}
        assert self.parties is not None
        a, b = self.parties
        return {"call": b if device == a else a}


class FloorTable:
    def __init__(self, routes: Routes | None = None) -> None:
        self._routes = routes
        self._talkgroups: dict[str, Floor] = {}
        self._calls: dict[str, Floor] = {}
        self._targets: dict[str, Target] = {}
        #: read-only views: talkgroup -> floor, call key -> floor, key -> target
        self.talkgroups: Mapping[str, Floor] = MappingProxyType(self._talkgroups)
        self.calls: Mapping[str, Floor] = MappingProxyType(self._calls)
        self.targets: Mapping[str, Target] = MappingProxyType(self._targets)

    # ---- changes ------------------------------------------------------------------------------

    def add_talkgroup(self, tg: str, floor: Floor) -> None:
        self._talkgroups[tg] = floor
        self._targets[tg] = Target(tg=tg)
        if self._routes is not None:
            self._routes.add_talkgroup(tg, floor)

    def add_call(self, key: str, floor: Floor, parties: tuple[str, str]) -> None:
        self._calls[key] = floor
        self._targets[key] = Target(parties=parties)
        if self._routes is not None:
            self._routes.add_call(key, floor, parties)

    def remove_call(self, key: str) -> Floor | None:
        """Forget a private call's floor (and its routes); the floor, if there was one."""
        self._targets.pop(key, None)
        floor = self._calls.pop(key, None)
        if self._routes is not None:
            self._routes.remove_call(key)
        return floor

    # ---- lookups ------------------------------------------------------------------------------

    def get(self, key: str) -> Floor | None:
        """The floor of a talkgroup or of a private call (`call:a:b`), if there is one."""
        floor = self._talkgroups.get(key)
        return floor if floor is not None else self._calls.get(key)

    def __getitem__(self, key: str) -> Floor:
        floor = self.get(key)
        if floor is None:
            raise KeyError(key)
        return floor

    def __contains__(self, key: object) -> bool:
        return key in self._talkgroups or key in self._calls

    def __len__(self) -> int:
        return len(self._talkgroups) + len(self._calls)

    def __iter__(self) -> Iterator[str]:
        yield from list(self._talkgroups)
        yield from list(self._calls)

    def is_call(self, key: str) -> bool:
        return key in self._calls

    def target(self, key: str) -> Target:
        return self._targets[key]

    def items(self) -> list[tuple[str, Floor]]:
        """Every floor, talkgroups first (a copy: safe to change the table while iterating)."""
        return [*self._talkgroups.items(), *self._calls.items()]

    def floors(self) -> list[Floor]:
        return [*self._talkgroups.values(), *self._calls.values()]

    def holding(self, device: str, now: float) -> list[tuple[str, Floor]]:
        """Every floor (talkgroup or private call) that `device` holds, is queued on, or whose
        burst it released within the release tail."""
        return [
            (key, floor)
            for key, floor in self.items()
            if floor.holder == device
            or any(d == device for d, _ in floor.queue())
            or floor.tailing(device, now)
        ]

    def holders(self) -> dict[str, str]:
        """Floor key -> the device holding it, for every taken floor."""
        return {key: floor.holder for key, floor in self.items() if floor.holder is not None}
