"""Recordings for the API: listing them and finding a recording's audio file, within the
caller's scope (a recording's floor or talker must be in it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy

from gateway.api.schemas import RecordingOut
from gateway.api.services.access import SignedIn
from gateway.auth.scope import IncidentOf, UnitOf, no_incidents
from gateway.store.recordings import RecordingFilter, find_recording, find_recordings

#: Recordings read per query when filtering by scope (newest first, then filtered).
_SCAN_FACTOR = 10


class RecordingNotFoundError(LookupError):
    """No such recording, or its file is gone (the message says which)."""


class RecordingsService:
    def __init__(
        self,
        engine: sqlalchemy.Engine,
        recordings_dir: Path,
        caller: SignedIn | None = None,
        unit_of: UnitOf = lambda _device: None,
        incident_of: IncidentOf = no_incidents,
    ) -> None:
        """`incident_of` places incident talkgroups (it may read the database: it is called on
        the database thread only)."""
        self._engine = engine
        self._dir = recordings_dir
        self._caller = caller
        self._unit_of = unit_of
        self._incident_of = incident_of

    def _sees(self, floor_key: str, talker: str) -> bool:
        caller = self._caller
        return caller is None or caller.scope.sees_recording(
            floor_key, talker, self._unit_of, self._incident_of
        )

    async def list(self, where: RecordingFilter, limit: int) -> list[RecordingOut]:
        """The newest recordings matching `where` in scope, newest first (the database on a
        thread)."""
        if self._caller is not None:
            self._caller.require("listen")
        whole = self._caller is None or self._caller.scope.whole

        def fetch() -> list[RecordingOut]:
            with self._engine.connect() as conn:
                rows = find_recordings(conn, where, limit if whole else limit * _SCAN_FACTOR)
                found = [RecordingOut.model_validate(row) for row in rows]
            return [r for r in found if self._sees(r.floor_key, r.talker)][:limit]

        return await asyncio.to_thread(fetch)

    async def audio_file(self, recording_id: int) -> Path:
        """The audio file of a recording, inside the recordings directory."""

        def fetch() -> tuple[str, bool] | None:
            with self._engine.connect() as conn:
                found = find_recording(conn, recording_id)
            if found is None:
                return None
            floor_key, talker, relative = found
            return relative, self._sees(floor_key, talker)

        found = await asyncio.to_thread(fetch)
        if found is None:
            raise RecordingNotFoundError(f"no recording {recording_id}")
        relative, in_scope = found
        if self._caller is not None:
            self._caller.require("listen", in_scope, f"recording {recording_id}")
        path = (self._dir / relative).resolve()
        if self._dir.resolve() not in path.parents or not path.is_file():
            raise RecordingNotFoundError(f"recording {recording_id} has no file")
        return path
