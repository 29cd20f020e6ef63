from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import FileResponse

from gateway.api.deps import RecordingsDep
from gateway.api.schemas import DB_INT_MAX, RecordingOut
from gateway.api.services.recordings import RecordingNotFoundError
from gateway.store.recordings import RecordingFilter

router = APIRouter(prefix="/api/recordings", tags=["recordings"])


@router.get("")
async def list_recordings(
    recordings: RecordingsDep,
    floor: str | None = None,
    talker: str | None = None,
    since: Annotated[float | None, Query(description="epoch seconds", allow_inf_nan=False)] = None,
    until: Annotated[float | None, Query(description="epoch seconds", allow_inf_nan=False)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RecordingOut]:
    return await recordings.list(RecordingFilter(floor, talker, since, until), limit)


@router.get("/{recording_id}/audio", response_class=FileResponse)
async def recording_audio(
    recording_id: Annotated[int, Path(ge=1, le=DB_INT_MAX)], recordings: RecordingsDep
) -> FileResponse:
    try:
        path = await recordings.audio_file(recording_id)
    except RecordingNotFoundError as exc:
        raise HTTPException(404, str(exc)) from exc
    return FileResponse(path, media_type="audio/ogg", filename=path.name)
