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
    talkgroup: Annotated[
        str | None, Query(max_length=80, description="a talkgroup, or call:<a>:<b>")
    ] = None,
    floor: Annotated[str | None, Query(max_length=80, description="same as talkgroup")] = None,
    talker: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[float | None, Query(description="epoch seconds", allow_inf_nan=False)] = None,
    until: Annotated[float | None, Query(description="epoch seconds", allow_inf_nan=False)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RecordingOut]:
    """Recordings in scope, newest first, by talkgroup (or private call), talker and start
    time (`since` inclusive, `until` exclusive)."""
    if talkgroup is not None and floor is not None and talkgroup != floor:
        raise HTTPException(422, "give talkgroup or floor, not both")
    where = RecordingFilter(talkgroup or floor, talker, since, until)
    return await recordings.list(where, limit)


@router.get("/{recording_id}/audio", response_class=FileResponse)
async def recording_audio(
    recording_id: Annotated[int, Path(ge=1, le=DB_INT_MAX)], recordings: RecordingsDep
) -> FileResponse:
    try:
        path = await recordings.audio_file(recording_id)
    except RecordingNotFoundError as exc:
        raise HTTPException(404, str(exc)) from exc
    return FileResponse(path, media_type="audio/ogg", filename=path.name)
