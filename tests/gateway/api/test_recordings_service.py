"""RecordingsService: what the recordings routes call."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy

from gateway.api.services.recordings import RecordingNotFoundError, RecordingsService
from gateway.store.recordings import RecordingFilter
from tests.gateway.store.test_recordings import engine as engine  # the fixture, with 3 rows


def test_lists_and_finds_files_only_inside_the_recordings_dir(
    engine: sqlalchemy.Engine,
    tmp_path: Path,
) -> None:
    recordings_dir = tmp_path / "recordings"
    recordings_dir.mkdir()
    (recordings_dir / "r1.ogg").write_bytes(b"OggS")
    service = RecordingsService(engine, recordings_dir)

    listed = asyncio.run(service.list(RecordingFilter(floor="grid-01"), 10))
    assert [r.id for r in listed] == [2, 1] and listed[0].talker == "T002"
    assert asyncio.run(service.audio_file(1)) == (recordings_dir / "r1.ogg").resolve()
    with pytest.raises(RecordingNotFoundError, match="no recording 99"):
        asyncio.run(service.audio_file(99))
    with pytest.raises(RecordingNotFoundError, match="recording 2 has no file"):
        asyncio.run(service.audio_file(2))
