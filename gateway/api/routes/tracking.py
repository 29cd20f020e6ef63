"""Tracking API: live positions, replay, summaries, exports, events, geofences, checkpoints,
coverage, and the console's live stream (positions, status, alarms, geofence transitions)."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated, Any, Final

from fastapi import (
    APIRouter,
    Depends,
    HTTPException,
    Query,
    Request,
    Response,
    WebSocket,
)
from fastapi.responses import JSONResponse

from gateway.api.auth import CurrentAccount
from gateway.api.services.tracking_access import TrackingAccess
from gateway.api.stream import serve_stream
from gateway.api.tracking_schemas import (
    CheckpointIn,
    CheckpointOut,
    CoverageOut,
    GeofenceIn,
    GeofenceOut,
    LiveDeviceOut,
    ReplayOut,
    SegmentOut,
    StopOut,
    SummaryOut,
    TrackingEventOut,
    TrackPointOut,
    TripOut,
)
from gateway.tracking import queries
from gateway.tracking.checkpoints import coverage_csv, make_checkpoint
from gateway.tracking.errors import (
    CheckpointError,
    GeofenceError,
    HistoryError,
    UnknownCheckpointError,
    UnknownGeofenceError,
)
from gateway.tracking.geofence import make_spec
from gateway.tracking.service import TrackingService

router = APIRouter(prefix="/api/tracking", tags=["tracking"])

STREAM_KINDS: Final = frozenset({"position", "status", "alarm", "geofence"})


def get_tracking(request: Request) -> TrackingService:
    tracking: TrackingService | None = getattr(request.app.state.service, "tracking", None)
    if tracking is None:
        raise HTTPException(503, "tracking is not running")
    return tracking


TrackingDep = Annotated[TrackingService, Depends(get_tracking)]


def get_access(tracking: TrackingDep, caller: CurrentAccount) -> TrackingAccess:
    return TrackingAccess(tracking, caller)


AccessDep = Annotated[TrackingAccess, Depends(get_access)]
# allow_inf_nan=False: "nan" and "inf" parse as floats; they are not times (422, not 200/500).
Start = Annotated[float, Query(description="epoch seconds, inclusive", allow_inf_nan=False)]
End = Annotated[float, Query(description="epoch seconds, exclusive", allow_inf_nan=False)]
OptionalStart = Annotated[
    float | None, Query(description="epoch seconds, inclusive", allow_inf_nan=False)
]
OptionalEnd = Annotated[
    float | None, Query(description="epoch seconds, exclusive", allow_inf_nan=False)
]
Zoom = Annotated[float | None, Query(ge=0, le=22, description="web-map zoom; none = all")]


def _bad_request(exc: Exception) -> HTTPException:
    return HTTPException(422, str(exc))


def tracking_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """Every tracking route's database failure: 503, the same way everywhere (app handler)."""
    return JSONResponse({"detail": f"tracking database: {exc}"}, status_code=503)


def _known(tracking: TrackingService, device: str, access: TrackingAccess) -> None:
    if device not in tracking.devices:
        raise HTTPException(404, f"unknown device {device!r}")
    access.device(device)


# ---- live ----------------------------------------------------------------------------------------


@router.get("/live")
async def live(tracking: TrackingDep, access: AccessDep) -> list[LiveDeviceOut]:
    rows = access.rows(tracking.live(), lambda row: row["device"])
    return [LiveDeviceOut.model_validate(row) for row in rows]


@router.get("/stats")
async def stats(tracking: TrackingDep, access: AccessDep) -> dict[str, Any]:
    """Ingest counters: received per format, rejected per reason, filtered per rule, stored
    (the whole gateway's: for administrators and the centre, as /metrics)."""
    access.require("metrics")
    return tracking.stats()


@router.websocket("/stream")
async def stream(websocket: WebSocket) -> None:
    """Positions (newest per device, coalesced), status changes, alarms, geofence events."""
    await serve_stream(websocket, STREAM_KINDS)


# ---- history -------------------------------------------------------------------------------------


@router.get("/devices/{device}/replay")
def replay(
    device: str,
    start: Start,
    end: End,
    tracking: TrackingDep,
    access: AccessDep,
    zoom: Zoom = None,
) -> ReplayOut:
    _known(tracking, device, access)
    try:
        segments = queries.replay(
            tracking.reader, tracking.config.history, device, start, end, zoom
        )
    except HistoryError as exc:
        raise _bad_request(exc) from exc
    return ReplayOut(
        device=device,
        start=start,
        end=end,
        zoom=zoom,
        points=sum(len(s.points) for s in segments),
        source_points=sum(s.source_points for s in segments),
        segments=[
            SegmentOut(
                start=s.start,
                end=s.end,
                source_points=s.source_points,
                points=[
                    TrackPointOut(
                        t=p.t, lat=p.lat, lon=p.lon, speed=p.speed, course=p.course,
                        altitude=p.altitude, accuracy=p.accuracy, battery=p.battery,
                    )
                    for p in s.points
                ],
            )
            for s in segments
        ],
    )  # fmt: skip


@router.get("/devices/{device}/summary")
def summary(
    device: str, start: Start, end: End, tracking: TrackingDep, access: AccessDep
) -> SummaryOut:
    """Distance (haversine), trips between stops, stops, moving and stopped time."""
    _known(tracking, device, access)
    try:
        result = queries.summary(tracking.reader, tracking.config.history, device, start, end)
    except HistoryError as exc:
        raise _bad_request(exc) from exc
    return SummaryOut(
        device=device,
        start=start,
        end=end,
        points=result.points,
        segments=result.segments,
        distance_m=result.distance_m,
        duration_s=result.duration_s,
        moving_s=result.moving_s,
        stopped_s=result.stopped_s,
        max_speed_mps=result.max_speed_mps,
        trips=[
            TripOut(start=t.start, end=t.end, duration_s=t.duration_s, distance_m=t.distance_m,
                    max_speed_mps=t.max_speed_mps, points=t.points)
            for t in result.trips
        ],
        stops=[
            StopOut(start=s.start, end=s.end, duration_s=s.duration_s, lat=s.lat, lon=s.lon,
                    points=s.points)
            for s in result.stops
        ],
    )  # fmt: skip


@router.get("/devices/{device}/export.{fmt}")
def export(
    device: str,
    fmt: str,
    start: Start,
    end: End,
    tracking: TrackingDep,
    access: AccessDep,
    zoom: Zoom = None,
) -> Response:
    """GPX 1.1, GeoJSON (RFC 7946) or CSV of the track, one segment per gap-free run."""
    _known(tracking, device, access)
    try:
        body, media_type = queries.export(
            tracking.reader, tracking.config.history, device, start, end, fmt, zoom
        )
    except HistoryError as exc:
        raise _bad_request(exc) from exc
    filename = f"{device}-{int(start)}-{int(end)}.{fmt}"
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/events")
def events(
    tracking: TrackingDep,
    access: AccessDep,
    device: str | None = None,
    kind: str | None = Query(default=None, pattern="^(alarm|geofence)$"),
    start: OptionalStart = None,
    end: OptionalEnd = None,
    limit: int = Query(default=1000, ge=1, le=10_000),
) -> list[TrackingEventOut]:
    if device is not None and device in tracking.devices:
        access.device(device)
    found = tracking.repository.events(device=device, kind=kind, start=start, end=end, limit=limit)
    found = access.rows(found, lambda e: e.device)
    return [
        TrackingEventOut(kind=e.kind, type=e.type, device=e.device, ts=e.ts, active=e.active,
                         geofence=e.geofence, lat=e.lat, lon=e.lon, data=e.data)
        for e in found
    ]  # fmt: skip


# ---- geofences -----------------------------------------------------------------------------------


@router.get("/geofences")
async def list_geofences(tracking: TrackingDep, access: AccessDep) -> list[GeofenceOut]:
    """The organisation's grids (kind "grid") and the custom fences."""
    return [
        GeofenceOut(id=s.id, name=s.name, kind=s.kind, coordinates=list(s.coordinates),
                    radius_m=s.radius_m)
        for s in access.geofences(tracking.geofences())
    ]  # fmt: skip


@router.post("/geofences", status_code=201)
async def add_geofence(body: GeofenceIn, tracking: TrackingDep, access: AccessDep) -> GeofenceOut:
    try:
        spec = make_spec(body.id, body.name, body.kind, body.coordinates, body.radius_m)
        access.change_geofence(spec)
        await tracking.add_geofence(spec)
    except GeofenceError as exc:
        conflict = "already exists" in str(exc) or "is a grid" in str(exc)
        raise HTTPException(409 if conflict else 422, str(exc)) from exc
    return GeofenceOut(
        id=spec.id, name=spec.name, kind=spec.kind, coordinates=list(spec.coordinates),
        radius_m=spec.radius_m,
    )  # fmt: skip


@router.delete("/geofences/{fence_id}", status_code=204)
async def delete_geofence(fence_id: str, tracking: TrackingDep, access: AccessDep) -> Response:
    for spec in tracking.geofences():
        if spec.id == fence_id:
            access.change_geofence(spec)
    try:
        await tracking.delete_geofence(fence_id)
    except UnknownGeofenceError as exc:
        raise HTTPException(404, str(exc)) from exc
    return Response(status_code=204)


# ---- checkpoints and coverage --------------------------------------------------------------------


@router.get("/checkpoints")
def list_checkpoints(
    tracking: TrackingDep, access: AccessDep, grid: str | None = None
) -> list[CheckpointOut]:
    found = access.checkpoints(tracking.repository.checkpoints(grid))
    return [
        CheckpointOut(id=c.id, grid=c.grid, name=c.name, lat=c.lat, lon=c.lon,
                      radius_m=c.radius_m, required_visits=c.required_visits)
        for c in found
    ]  # fmt: skip


@router.post("/checkpoints", status_code=201)
def add_checkpoint(body: CheckpointIn, tracking: TrackingDep, access: AccessDep) -> CheckpointOut:
    access.change_checkpoint(body.grid, f"grid {body.grid}")
    try:
        checkpoint = make_checkpoint(
            body.id, body.grid, body.name, body.lat, body.lon, body.radius_m,
            body.required_visits, grids=tracking.org.grids,
        )  # fmt: skip
        tracking.repository.add_checkpoint(checkpoint)
    except CheckpointError as exc:
        raise HTTPException(409 if "already exists" in str(exc) else 422, str(exc)) from exc
    return CheckpointOut(
        id=checkpoint.id, grid=checkpoint.grid, name=checkpoint.name, lat=checkpoint.lat,
        lon=checkpoint.lon, radius_m=checkpoint.radius_m,
        required_visits=checkpoint.required_visits,
    )  # fmt: skip


@router.delete("/checkpoints/{checkpoint_id}", status_code=204)
def delete_checkpoint(checkpoint_id: str, tracking: TrackingDep, access: AccessDep) -> Response:
    for checkpoint in tracking.repository.checkpoints():
        if checkpoint.id == checkpoint_id:
            access.change_checkpoint(checkpoint.grid, f"checkpoint {checkpoint_id}")
    try:
        tracking.repository.delete_checkpoint(checkpoint_id)
    except UnknownCheckpointError as exc:
        raise HTTPException(404, str(exc)) from exc
    return Response(status_code=204)


async def _coverage(
    tracking: TrackingService,
    access: TrackingAccess,
    day: date | None,
    shift: str | None,
    start: float | None,
    end: float | None,
) -> list[Any]:
    config = tracking.config
    try:
        shifts = queries.shifts_for(config.shifts, config.utc_offset_h, day, shift, start, end)
        devices = access.device_grids(tracking.device_grids())  # on the loop, then a thread
        checkpoints = access.checkpoints(await asyncio.to_thread(tracking.repository.checkpoints))
        return await asyncio.to_thread(
            queries.coverage_reports, tracking.reader, checkpoints, devices, shifts,
            config.revisit_s,
        )  # fmt: skip
    except CheckpointError as exc:
        raise _bad_request(exc) from exc


CoverageQuery = Annotated[date | None, Query(alias="date", description="local date of shifts")]


@router.get("/coverage")
async def coverage(
    tracking: TrackingDep,
    access: AccessDep,
    day: CoverageQuery = None,
    shift: str | None = None,
    start: OptionalStart = None,
    end: OptionalEnd = None,
) -> list[CoverageOut]:
    """Visited/missed per checkpoint, per grid and per officer, for each shift asked for."""
    reports = await _coverage(tracking, access, day, shift, start, end)
    return [CoverageOut.model_validate(report.to_json()) for report in reports]


@router.get("/coverage.csv")
async def coverage_as_csv(
    tracking: TrackingDep,
    access: AccessDep,
    day: CoverageQuery = None,
    shift: str | None = None,
    start: OptionalStart = None,
    end: OptionalEnd = None,
) -> Response:
    reports = await _coverage(tracking, access, day, shift, start, end)
    return Response(coverage_csv(reports), media_type="text/csv; charset=utf-8")
