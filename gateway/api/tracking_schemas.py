"""Pydantic schemas of the tracking API (/api/tracking/...)."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, Field

#: A checkpoint's required visits per shift: visits closer than `revisit_s` (10 min by default)
#: count once, so even a 24-hour shift allows about 150; the bound keeps the count storable.
MAX_REQUIRED_VISITS: Final = 1000


class PositionOut(BaseModel):
    t: float = Field(description="fix time, epoch seconds")
    lat: float
    lon: float
    speed: float | None = None
    course: float | None = None
    accuracy: float | None = None
    source: str | None = None


class LiveDeviceOut(BaseModel):
    device: str
    state: Literal["online", "unknown", "offline"]
    since: float | None
    last_seen: float | None
    battery: int | None
    position: PositionOut | None
    geofences: list[str]
    alarms: list[str]


class TrackPointOut(BaseModel):
    t: float
    lat: float
    lon: float
    speed: float | None = None
    course: float | None = None
    altitude: float | None = None
    accuracy: float | None = None
    battery: int | None = None


class SegmentOut(BaseModel):
    start: float
    end: float
    source_points: int
    points: list[TrackPointOut]


class ReplayOut(BaseModel):
    device: str
    start: float
    end: float
    zoom: float | None
    points: int = Field(description="points returned after simplification")
    source_points: int = Field(description="points stored in the range")
    segments: list[SegmentOut]


class TripOut(BaseModel):
    start: float
    end: float
    duration_s: float
    distance_m: float
    max_speed_mps: float
    points: int


class StopOut(BaseModel):
    start: float
    end: float
    duration_s: float
    lat: float
    lon: float
    points: int


class SummaryOut(BaseModel):
    device: str
    start: float
    end: float
    points: int
    segments: int
    distance_m: float
    duration_s: float
    moving_s: float
    stopped_s: float
    max_speed_mps: float
    trips: list[TripOut]
    stops: list[StopOut]


class TrackingEventOut(BaseModel):
    kind: Literal["alarm", "geofence"]
    type: str
    device: str
    ts: float
    active: bool
    geofence: str | None
    lat: float | None
    lon: float | None
    data: dict[str, Any]


class GeofenceIn(BaseModel):
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(default="", max_length=64)
    kind: Literal["polygon", "circle", "corridor"]
    coordinates: list[tuple[float, float]] = Field(
        description="[lon, lat] pairs (RFC 7946 order): a ring, a centre, or a polyline"
    )
    radius_m: float | None = Field(default=None, description="circle radius / corridor half-width")


class GeofenceOut(GeofenceIn):
    kind: Literal["grid", "polygon", "circle", "corridor"]  # type: ignore[assignment]


class CheckpointIn(BaseModel):
    id: str = Field(min_length=1, max_length=64)
    grid: str
    name: str = Field(default="", max_length=64)
    lat: float
    lon: float
    radius_m: float = 30.0
    required_visits: int = Field(
        default=1, ge=1, le=MAX_REQUIRED_VISITS, description="visits required per shift"
    )


class CheckpointOut(CheckpointIn):
    required_visits: int = Field(description="visits required per shift")  # as stored


class CoverageShift(BaseModel):
    name: str
    start: float
    end: float
    start_iso: str
    end_iso: str


class CoverageOut(BaseModel):
    shift: CoverageShift
    checkpoints: list[dict[str, Any]]
    grids: list[dict[str, Any]]
    officers: list[dict[str, Any]]
