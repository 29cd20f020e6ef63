"""Value types shared by the tracking cores. Times are Unix epoch seconds (float, UTC)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple

MAX_EPOCH_S: Final = 100_000_000_000
"""The latest time any tracking input may carry (epoch s, year 5138): a beacon's fix time, a
shift's end. Anything later is a malformed value, not a position."""

Source = Literal["native", "owntracks", "nmea"]
DeviceState = Literal["online", "unknown", "offline"]


@dataclass(slots=True)
class Fix:
    """One position of one device, as received (before filtering)."""

    device: str
    fix_time: float
    lat: float
    lon: float
    speed: float | None = None  # m/s
    course: float | None = None  # degrees from true north
    altitude: float | None = None  # metres
    accuracy: float | None = None  # metres (horizontal)
    battery: int | None = None  # percent
    valid: bool = True
    source: Source = "native"
    attributes: dict[str, Any] = field(default_factory=dict)
    server_time: float = 0.0

    def row(self) -> dict[str, Any]:
        """The positions-table row (see gateway.tracking.schema.positions)."""
        attributes = dict(self.attributes)
        if self.source != "native":
            attributes["src"] = self.source
        return {
            "device": self.device,
            "fix_time": self.fix_time,
            "server_time": self.server_time,
            "lat": self.lat,
            "lon": self.lon,
            "speed": self.speed,
            "course": self.course,
            "altitude": self.altitude,
            "accuracy": self.accuracy,
            "battery": self.battery,
            "valid": self.valid,
            "attributes": attributes or None,
        }


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A device said something about its connection (OwnTracks Last Will, native status)."""

    device: str
    state: Literal["online", "offline"]
    ts: float
    reason: str | None = None
    battery: int | None = None


class TrackPoint(NamedTuple):
    """A stored position as history code needs it (a tuple: a day is 17,280 of them)."""

    t: float
    lat: float
    lon: float
    speed: float | None = None
    course: float | None = None
    altitude: float | None = None
    accuracy: float | None = None
    battery: int | None = None


@dataclass(frozen=True, slots=True)
class TrackingEvent:
    """An alarm or geofence transition, stored and pushed to the console stream.

    kind "alarm": `type` is sos / low_battery / offline_too_long / left_grid / no_movement and
    `active` says whether it is raised or cleared. kind "geofence": `type` is enter / exit and
    `geofence` names the fence.
    """

    kind: Literal["alarm", "geofence"]
    type: str
    device: str
    ts: float
    active: bool = True
    geofence: str | None = None
    lat: float | None = None
    lon: float | None = None
    data: dict[str, Any] = field(default_factory=dict)
