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
from collections.abc import Iterable, Iterator
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
CELL_DEG: Final = 0.001  # about 110 m north-south, 96 m east-west at 30 degrees N
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
        # The cells ever populated per availability (min y, max y, min x, max x): how far a
        # ring search may have to go.
        self._boxes: dict[Availability, tuple[int, int, int, int]] = {}

    # ---- updates ---------------------------------------------------------------------------

    def _key(self, o: Officer) -> tuple[Availability, Cell] | None:
        """Where the officer is indexed; None: not suggested (offline, off duty, no fix)."""
        if not o.online or o.availability == "off" or o.lat is None or o.lon is None:
            return None
        return (o.availability, _cell(o.lat, o.lon))

    def _remove(self, o: Officer) -> None:
        cell = self._key(o)
        if cell is not None:
            self._cells[cell].discard(o.device)

    def _add(self, o: Officer) -> None:
        cell = self._key(o)
        if cell is not None:
            self._cells.setdefault(cell, set()).add(o.device)
            availability, (y, x) = cell
            box = self._boxes.get(availability)
            if box is None:
                self._boxes[availability] = (y, y, x, x)
            elif not (box[0] <= y <= box[1] and box[2] <= x <= box[3]):
                self._boxes[availability] = (
                    min(box[0], y), max(box[1], y), min(box[2], x), max(box[3], x),
                )  # fmt: skip

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

    def _ring(self, cy: int, cx: int, ring: int) -> Iterator[Cell]:
        """The cells exactly `ring` cells from (cy, cx) (its square's perimeter)."""
        if ring == 0:
            yield (cy, cx)
            return
        for x in range(cx - ring, cx + ring + 1):
            yield (cy - ring, x)
            yield (cy + ring, x)
        for y in range(cy - ring + 1, cy + ring):
            yield (y, cx - ring)
            yield (y, cx + ring)

    def _nearest(
        self,
        availability: Availability,
        lat: float,
        lon: float,
        k: int,
        skip: set[str],
        grid: str | None = None,
        same: bool = True,
    ) -> list[tuple[float, str]]:
        """The k nearest officers of one availability (with `grid`: only those of the grid, or
        with `same` False only those of other grids): rings of cells around the place until k
        are found and the next ring cannot hold anyone nearer."""
        box = self._boxes.get(availability)
        if box is None:
            return []
        cy, cx = _cell(lat, lon)
        low_y, high_y, low_x, high_x = box
        max_ring = max(abs(low_y - cy), abs(high_y - cy), abs(low_x - cx), abs(high_x - cx))
        cell_deg_m = CELL_DEG * math.pi / 180 * EARTH_M
        officers, cells = self.officers, self._cells
        found: list[tuple[float, str]] = []
        for ring in range(max_ring + 1):
            for cell in self._ring(cy, cx, ring):
                for device in cells.get((availability, cell), ()):
                    if device in skip:
                        continue
                    o = officers[device]
                    if grid is not None and (o.grid == grid) != same:
                        continue
                    assert o.lat is not None and o.lon is not None
                    found.append((distance_m(lat, lon, o.lat, o.lon), device))
            # Everyone not yet seen is at least `ring` cells away.
            if len(found) >= k:
                found.sort()
                # A cell's narrowest side (east-west, at the ring's farthest latitude).
                cell_m = cell_deg_m * math.cos(
                    math.radians(min(89.0, abs(lat) + (ring + 1) * CELL_DEG))
                )
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
                mine = self._nearest(availability, lat, lon, k - len(out), skip, grid, True)
                out += [self._suggestion(d, lat, lon, grid) for _, d in mine]
            if len(out) < k:
                others = self._nearest(availability, lat, lon, k - len(out), skip, grid, False)
                out += [self._suggestion(d, lat, lon, grid) for _, d in others]
        return out[:k]
