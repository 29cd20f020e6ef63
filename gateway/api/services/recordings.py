"""Recordings for the API: listing them and finding a recording's audio file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy

from gateway.api.schemas import RecordingOut
from gateway.store.recordings import RecordingFilter, find_recordings, recording_path


class RecordingNotFoundError(LookupError):
    """No such recording, or its file is gone (the message says which)."""


class RecordingsService:
    def __init__(self, engine: sqlalchemy.Engine, recordings_dir: Path) -> None:
        self._engine = engine
        self._dir = recordings_dir

    async def list(self, where: RecordingFilter, limit: int) -> list[RecordingOut]:
        """The newest recordings matching `where`, newest first (the database on a thread)."""

        def fetch() -> list[RecordingOut]:
            with self._engine.connect() as conn:
                rows = find_recordings(conn, where, limit)
                return [RecordingOut.model_validate(row) for row in rows]

        return await asyncio.to_thread(fetch)

    async def audio_file(self, recording_id: int) -> Path:
        """The audio file of a recording, inside the recordings directory."""

        def fetch() -> str | None:
            with self._engine.connect() as conn:
                return recording_path(conn, recording_id)

        relative = await asyncio.to_thread(fetch)
        if relative is None:
            raise RecordingNotFoundError(f"no recording {recording_id}")
        path = (self._dir / relative).resolve()
        if self._dir.resolve() not in path.parents or not path.is_file():
            raise RecordingNotFoundError(f"recording {recording_id} has no file")
        return path
