"""Officers for incidents (pure): availability — its own state, apart from incidents — last
fixes, and the nearest available officers to a place, from a cell index (no full scan).

Availability: ``available`` (free to take an incident), ``on_duty`` (on patrol, can be called
away), ``busy`` (working on something), ``off`` (off duty: never suggested). Officers set it from
their terminals (status codes of protocol §5.6); an assignment makes an officer busy, and when
none of its incidents is open any more it is available again.

Suggestions rank by availability first (available, on duty, busy), then officers of the
incident's grid before others, then straight-line distance from the last fix; the ETA is that
distance at `speed_mps`. Offline officers and officers without a fix are not suggested.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

Availability = Literal["available", "on_duty", "busy", "off"]
AVAILABILITIES: Final[tuple[Availability, ...]] = ("available", "on_duty", "busy", "off")
#: Status codes (protocol §5.6) that set availability.
AVAILABILITY_CODES: Final[dict[str, Availability]] = {
    "available": "available",
    "on_duty": "on_duty",
    "busy": "busy",
    "off_duty": "off",
}
_RANKED: Final[tuple[Availability, ...]] = ("available", "on_duty", "busy")
EARTH_M: Final = 6_371_000.0
CELL_DEG: Final = 0.005  # about 550 m north-south, 480 m east-west at 30 degrees N
DEFAULT_SPEED_MPS: Final = 4.2  # 15 km/h: an officer on an e-bike through a village


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance: exact enough within a sub-district, and cheap."""
    x = math.radians(lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    y = math.radians(lat2 - lat1)
    return EARTH_M * math.hypot(x, y)


@dataclass(slots=True)
class Officer:
    device: str
    grid: str | None
    availability: Availability = "available"
    online: bool = True
    lat: float | None = None
    lon: float | None = None
    fix_at: float | None = None


@dataclass(frozen=True, slots=True)
class Suggestion:
    device: str
    grid: str | None
    availability: Availability
    same_grid: bool
    distance_m: float
    eta_s: float
    fix_at: float


Cell = tuple[int, int]


def _cell(lat: float, lon: float) -> Cell:
    return (math.floor(lat / CELL_DEG), math.floor(lon / CELL_DEG))


class OfficerIndex:
    """Officers by availability and cell, and by availability and grid (for same grid first)."""

    def __init__(self, speed_mps: float = DEFAULT_SPEED_MPS) -> None:
        self.speed_mps = speed_mps
        self.officers: dict[str, Officer] = {}
        self._cells: dict[tuple[Availability, Cell], set[str]] = {}
        self._grids: dict[tuple[Availability, str], set[str]] = {}

    # ---- updates ---------------------------------------------------------------------------

    def _keys(
        self, o: Officer
    ) -> tuple[tuple[Availability, Cell] | None, tuple[Availability, str] | None]:
        listed = o.online and o.availability != "off" and o.lat is not None and o.lon is not None
        if not listed:
            return None, None
        assert o.lat is not None and o.lon is not None
        cell = (o.availability, _cell(o.lat, o.lon))
        return cell, (o.availability, o.grid) if o.grid is not None else None

    def _remove(self, o: Officer) -> None:
        cell, grid = self._keys(o)
        if cell is not None:
            self._cells[cell].discard(o.device)
        if grid is not None:
            self._grids[grid].discard(o.device)

    def _add(self, o: Officer) -> None:
        cell, grid = self._keys(o)
        if cell is not None:
            self._cells.setdefault(cell, set()).add(o.device)
        if grid is not None:
            self._grids.setdefault(grid, set()).add(o.device)

    def set_officers(self, officers: Iterable[tuple[str, str | None]]) -> None:
        """The provisioned officers and their grids; others are forgotten."""
        wanted = dict(officers)
        for device in [d for d in self.officers if d not in wanted]:
            self._remove(self.officers.pop(device))
        for device, grid in wanted.items():
            found = self.officers.get(device)
            if found is None:
                self.officers[device] = found = Officer(device, grid)
                self._add(found)
            elif found.grid != grid:
                self._remove(found)
                found.grid = grid
                self._add(found)

    def _change(self, device: str, **values: object) -> Officer | None:
        o = self.officers.get(device)
        if o is None:
            return None
        self._remove(o)
        for name, value in values.items():
            setattr(o, name, value)
        self._add(o)
        return o

    def position(self, device: str, lat: float, lon: float, at: float) -> None:
        o = self.officers.get(device)
        if o is None or (o.fix_at is not None and at < o.fix_at):
            return
        if o.lat is not None and o.lon is not None and _cell(lat, lon) == _cell(o.lat, o.lon):
            o.lat, o.lon, o.fix_at = lat, lon, at  # same cell: no re-indexing
            return
        self._change(device, lat=lat, lon=lon, fix_at=at)

    def set_availability(self, device: str, availability: Availability) -> bool:
        return self._change(device, availability=availability) is not None

    def set_online(self, device: str, online: bool) -> None:
        self._change(device, online=online)

    # ---- queries ---------------------------------------------------------------------------

    def _suggestion(self, device: str, lat: float, lon: float, grid: str | None) -> Suggestion:
        o = self.officers[device]
        assert o.lat is not None and o.lon is not None and o.fix_at is not None
        d = distance_m(lat, lon, o.lat, o.lon)
        return Suggestion(
            device, o.grid, o.availability, grid is not None and o.grid == grid, d,
            d / self.speed_mps, o.fix_at,
        )  # fmt: skip

    def _nearest(
        self, availability: Availability, lat: float, lon: float, k: int, skip: set[str]
    ) -> list[tuple[float, str]]:
        """The k nearest officers of one availability: rings of cells around the place until
        k are found and the next ring cannot hold anyone nearer."""
        cy, cx = _cell(lat, lon)
        found: list[tuple[float, str]] = []
        populated = [c for (a, c), devs in self._cells.items() if a == availability and devs]
        if not populated:
            return []
        max_ring = max(max(abs(y - cy), abs(x - cx)) for y, x in populated)
        cell_m = CELL_DEG * math.pi / 180 * EARTH_M * math.cos(math.radians(lat))
        for ring in range(max_ring + 1):
            for y in range(cy - ring, cy + ring + 1):
                for x in range(cx - ring, cx + ring + 1):
                    if max(abs(y - cy), abs(x - cx)) != ring:
                        continue
                    for device in self._cells.get((availability, (y, x)), ()):
                        if device in skip:
                            continue
                        o = self.officers[device]
                        assert o.lat is not None and o.lon is not None
                        found.append((distance_m(lat, lon, o.lat, o.lon), device))
            # Everyone not yet seen is at least `ring` cells away.
            if len(found) >= k:
                found.sort()
                if found[k - 1][0] <= ring * cell_m:
                    break
        found.sort()
        return found[:k]

    def suggest(
        self, lat: float, lon: float, grid: str | None, k: int = 5,
        exclude: Iterable[str] = (),
    ) -> list[Suggestion]:  # fmt: skip
        """The best `k` officers for a place in `grid` (ranking: module docstring)."""
        skip = set(exclude)
        out: list[Suggestion] = []
        for availability in _RANKED:
            if len(out) >= k:
                break
            if grid is not None:
                mine = [
                    self._suggestion(d, lat, lon, grid)
                    for d in self._grids.get((availability, grid), ())
                    if d not in skip
                ]
                mine.sort(key=lambda s: s.distance_m)
                out += mine[: k - len(out)]
                skip.update(s.device for s in mine)
            if len(out) < k:
                nearest = self._nearest(availability, lat, lon, k - len(out), skip)
                out += [self._suggestion(d, lat, lon, grid) for _, d in nearest]
        return out[:k]
