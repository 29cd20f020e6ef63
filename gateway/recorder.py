"""Records every talk burst as an Ogg Opus file.

The recorder parses relayed frames, fills sequence gaps with concealment packets, starts a file
per burst, closes it at the burst's END flag or after `idle_close_s` without frames, and indexes
it in the `recordings` table. Pages are flushed every 200 ms of audio, so a crash loses
at most that much (codec/ogg.py).
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import sqlalchemy

from codec.errors import CodecError
from codec.frame import FLAG_END, FrameError, frame_audio
from codec.ogg import OggOpusWriter, recording_tags
from gateway.store.recordings import recordings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Open:
    path: Path
    file: BinaryIO
    writer: OggOpusWriter
    floor: str
    talker: str
    burst: int
    next_seq: int
    started: float
    last_frame: float
    frame_ms: int
    frames: int = 0
    lost: int = 0


def _file_safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


class Recorder:
    """The recording core: feed it relayed frames with `handle`, call `close_idle` now and then.

    Single-threaded by design; production runs it in its own process (gateway.recorder_process)
    so that its file and CPU work never holds the relay's GIL.
    """

    def __init__(
        self,
        root: Path,
        engine: sqlalchemy.Engine | None,
        *,
        idle_close_s: float = 4.0,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
    ) -> None:
        self.root = root
        self.engine = engine
        self.idle_close_s = idle_close_s
        self.clock = clock
        self.log = logger or log
        self._open: dict[str, _Open] = {}
        self._failing: set[str] = set()
        self.recorded = 0
        self.errors = 0

    def open_bursts(self) -> dict[str, tuple[str, int]]:
        """Bursts being recorded now: floor key -> (talker, frames written so far)."""
        return {floor: (rec.talker, rec.frames) for floor, rec in self._open.items()}

    def handle(self, floor: str, talker: str, payload: bytes) -> None:
        """One relayed frame. Errors are counted and logged once per floor until it recovers."""
        try:
            self._frame(floor, talker, payload)
        except (OSError, CodecError) as exc:
            self.errors += 1
            if floor not in self._failing:
                self._failing.add(floor)
                self.log.error("recording %s failed: %s", floor, exc)
        else:
            self._failing.discard(floor)

    def close_all(self) -> None:
        for floor in list(self._open):
            self._close(floor)

    def close_idle(self) -> None:
        """Close bursts that had no frame for `idle_close_s` (a talker that vanished)."""
        self._close_idle()

    def _close_idle(self) -> None:
        now = self.clock()
        for floor, rec in list(self._open.items()):
            if now - rec.last_frame > self.idle_close_s:
                self._close(floor)

    def _frame(self, floor: str, talker: str, payload: bytes) -> None:
        try:
            flags, burst, seq, frame_ms, packets = frame_audio(payload)
        except FrameError:
            return  # the relay validated it; nothing else reaches here
        now = self.clock()
        rec = self._open.get(floor)
        if rec is not None and (rec.burst != burst or rec.talker != talker):
            self._close(floor)
            rec = None
        if rec is None:
            rec = self._begin(floor, talker, burst, seq, frame_ms, now)
            self._open[floor] = rec
        missing = (seq - rec.next_seq) & 0xFFFF
        if 0 < missing < 500:  # a lost stretch: keep the timeline with concealment
            rec.lost += missing
            rec.file.write(rec.writer.write_gap(missing * rec.frame_ms * 48 * len(packets)))
        elif missing >= 500:
            return  # late or duplicate frame: already past it
        write_packet = rec.writer.write_packet
        for packet in packets:
            pages = write_packet(packet)
            if pages:  # most packets only queue: a page is written every 200 ms
                rec.file.write(pages)
        rec.frames += 1
        rec.next_seq = (seq + 1) & 0xFFFF
        rec.last_frame = now
        if flags & FLAG_END:
            self._close(floor)

    def _begin(
        self, floor: str, talker: str, burst: int, seq: int, frame_ms: int, now: float
    ) -> _Open:
        started = datetime.fromtimestamp(now, UTC)
        folder = self.root / started.strftime("%Y-%m-%d") / _file_safe(floor)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = folder / f"{started:%H%M%S}-{_file_safe(talker)}-b{burst}.opus"
        serial = zlib.crc32(f"{floor}/{burst}/{now}".encode())
        tags = recording_tags(talker, floor, started.isoformat(timespec="milliseconds"))
        rec = _Open(
            path=path,
            # Recordings are people's voices: readable by the gateway's user only.
            file=os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb"),
            writer=OggOpusWriter(serial, tags=tags),
            floor=floor,
            talker=talker,
            burst=burst,
            next_seq=seq,
            started=now,
            last_frame=now,
            frame_ms=frame_ms,
        )
        rec.file.write(rec.writer.start())
        rec.file.flush()
        return rec

    def _close(self, floor: str) -> None:
        rec = self._open.pop(floor, None)
        if rec is None:
            return
        try:
            rec.file.write(rec.writer.close())
        finally:
            rec.file.close()
        self.recorded += 1
        if self.engine is None:
            return
        duration_ms = rec.writer.granule // 48
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    recordings.insert().values(
                        floor_key=rec.floor,
                        talker=rec.talker,
                        burst=rec.burst,
                        started_at=rec.started,
                        ended_at=rec.last_frame,
                        duration_ms=duration_ms,
                        frames=rec.frames,
                        lost_frames=rec.lost,
                        path=str(rec.path.relative_to(self.root)),
                    )
                )
        except sqlalchemy.exc.SQLAlchemyError as exc:
            self.errors += 1
            self.log.error("could not index recording %s: %s", rec.path, exc)
