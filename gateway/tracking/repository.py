"""Tracking tables other than positions: events, custom geofences, checkpoints."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from gateway.tracking.checkpoints import Checkpoint
from gateway.tracking.errors import (
    CheckpointError,
    GeofenceError,
    TrackingStoreError,
    UnknownCheckpointError,
    UnknownGeofenceError,
)
from gateway.tracking.geofence import GeofenceSpec, make_spec
from gateway.tracking.model import TrackingEvent
from gateway.tracking.schema import checkpoints, geofences, track_events


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class TrackingRepository:
    def __init__(self, engine: sqlalchemy.Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    # ---- events --------------------------------------------------------------------------------

    def insert_events(self, events: Sequence[TrackingEvent]) -> None:
        if not events:
            return
        rows = [
            {
                "device": e.device,
                "ts": e.ts,
                "kind": e.kind,
                "type": e.type,
                "active": e.active,
                "geofence": e.geofence,
                "lat": e.lat,
                "lon": e.lon,
                "data": e.data or None,
            }
            for e in events
        ]
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(track_events), rows)
        except SQLAlchemyError as exc:
            raise TrackingStoreError(f"storing {len(rows)} tracking events failed: {exc}") from exc

    def events(
        self,
        *,
        device: str | None = None,
        kind: str | None = None,
        start: float | None = None,
        end: float | None = None,
        limit: int = 1000,
    ) -> list[TrackingEvent]:
        query = select(track_events).order_by(track_events.c.ts, track_events.c.id).limit(limit)
        if device is not None:
            query = query.where(track_events.c.device == device)
        if kind is not None:
            query = query.where(track_events.c.kind == kind)
        if start is not None:
            query = query.where(track_events.c.ts >= start)
        if end is not None:
            query = query.where(track_events.c.ts < end)
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
        except SQLAlchemyError as exc:
            raise TrackingStoreError(f"reading tracking events failed: {exc}") from exc
        return [
            TrackingEvent(
                r.kind, r.type, r.device, r.ts, bool(r.active), r.geofence, r.lat, r.lon,
                _json(r.data) or {},
            )
            for r in rows
        ]  # fmt: skip

    # ---- geofences -------------------------------------------------------------------------------

    def add_geofence(self, spec: GeofenceSpec) -> None:
        if spec.kind == "grid":
            raise GeofenceError("grid geofences come from the organisation, not the database")
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(geofences).values(
                        id=spec.id,
                        name=spec.name,
                        kind=spec.kind,
                        coordinates=[list(p) for p in spec.coordinates],
                        radius_m=spec.radius_m,
                        created_at=self.clock(),
                    )
                )
        except IntegrityError as exc:
            raise GeofenceError(f"geofence {spec.id!r} already exists") from exc
        except SQLAlchemyError as exc:
            raise TrackingStoreError(f"storing geofence {spec.id!r} failed: {exc}") from exc

    def geofences(self) -> list[GeofenceSpec]:
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(select(geofences).order_by(geofences.c.id)).all()
        except SQLAlchemyError as exc:
            raise TrackingStoreError(f"reading geofences failed: {exc}") from exc
        return [make_spec(r.id, r.name, r.kind, _json(r.coordinates), r.radius_m) for r in rows]

    def delete_geofence(self, fence_id: str) -> None:
        try:
            with self.engine.begin() as conn:
                result = conn.execute(delete(geofences).where(geofences.c.id == fence_id))
        except SQLAlchemyError as exc:
            raise TrackingStoreError(f"deleting geofence {fence_id!r} failed: {exc}") from exc
        if result.rowcount == 0:
            raise UnknownGeofenceError(f"no custom geofence {fence_id!r}")

    # ---- checkpoints -----------------------------------------------------------------------------

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(checkpoints).values(
                        id=checkpoint.id,
                        grid=checkpoint.grid,
                        name=checkpoint.name,
                        lat=checkpoint.lat,
                        lon=checkpoint.lon,
                        radius_m=checkpoint.radius_m,
                        required_visits=checkpoint.required_visits,
                        created_at=self.clock(),
                    )
                )
        except IntegrityError as exc:
            raise CheckpointError(f"checkpoint {checkpoint.id!r} already exists") from exc
        except SQLAlchemyError as exc:
            raise TrackingStoreError(f"storing checkpoint {checkpoint.id!r} failed: {exc}") from exc

    def checkpoints(self, grid: str | None = None) -> list[Checkpoint]:
        query = select(checkpoints).order_by(checkpoints.c.grid, checkpoints.c.id)
        if grid is not None:
            query = query.where(checkpoints.c.grid == grid)
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
        except SQLAlchemyError as exc:
            raise TrackingStoreError(f"reading checkpoints failed: {exc}") from exc
        return [
            Checkpoint(r.id, r.grid, r.name, r.lat, r.lon, r.radius_m, r.required_visits)
            for r in rows
        ]

    def delete_checkpoint(self, checkpoint_id: str) -> None:
        try:
            with self.engine.begin() as conn:
                result = conn.execute(delete(checkpoints).where(checkpoints.c.id == checkpoint_id))
        except SQLAlchemyError as exc:
            raise TrackingStoreError(f"deleting checkpoint {checkpoint_id!r} failed") from exc
        if result.rowcount == 0:
            raise UnknownCheckpointError(f"no checkpoint {checkpoint_id!r}")
