from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import FileResponse
from sqlalchemy import select

from gateway.api.deps import ServiceDep
from gateway.api.schemas import DB_INT_MAX, RecordingOut
from gateway.store.recordings import recordings

router = APIRouter(prefix="/api/recordings", tags=["recordings"])


@router.get("")
async def list_recordings(
    service: ServiceDep,
    floor: str | None = None,
    talker: str | None = None,
    since: Annotated[float | None, Query(description="epoch seconds", allow_inf_nan=False)] = None,
    until: Annotated[float | None, Query(description="epoch seconds", allow_inf_nan=False)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RecordingOut]:
    query = select(recordings).order_by(recordings.c.started_at.desc()).limit(limit)
    if floor is not None:
        query = query.where(recordings.c.floor_key == floor)
    if talker is not None:
        query = query.where(recordings.c.talker == talker)
    if since is not None:
        query = query.where(recordings.c.started_at >= since)
    if until is not None:
        query = query.where(recordings.c.started_at < until)

    def fetch() -> list[RecordingOut]:
        with service.engine.connect() as conn:
            return [RecordingOut.model_validate(row._mapping) for row in conn.execute(query)]

    return await asyncio.to_thread(fetch)


@router.get("/{recording_id}/audio", response_class=FileResponse)
async def recording_audio(
    recording_id: Annotated[int, Path(ge=1, le=DB_INT_MAX)], service: ServiceDep
) -> FileResponse:
    def fetch() -> str | None:
        with service.engine.connect() as conn:
            return conn.execute(
                select(recordings.c.path).where(recordings.c.id == recording_id)
            ).scalar_one_or_none()

    relative = await asyncio.to_thread(fetch)
    if relative is None:
        raise HTTPException(404, f"no recording {recording_id}")
    path = (service.recordings_dir / relative).resolve()
    if service.recordings_dir.resolve() not in path.parents or not path.is_file():
        raise HTTPException(404, f"recording {recording_id} has no file")
    return FileResponse(path, media_type="audio/ogg", filename=path.name)
