"""Recording retention: recordings older than `keep_days` go, then the oldest ones while the
recordings take more than `max_bytes` on disk. Every deletion is in the audit trail.

`choose` is the pure core (rows and `now` in, what to delete and why out). `Retention.sweep`
does the I/O on a worker thread: it reads the index (only finished recordings are indexed, so
a burst being recorded is never touched), deletes the index row first and the file second (a
crash in between leaves an unindexed file, never an index row without its audio).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import sqlalchemy
from sqlalchemy import delete, select

from gateway.auth.audit import SYSTEM, AuditWriter
from gateway.store.recordings import recordings

log = logging.getLogger(__name__)

Reason = Literal["age", "disk"]


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    keep_days: float | None = None  # None: keep whatever the age
    max_bytes: int | None = None  # None: no disk cap
    interval_s: float = 600.0  # how often the gateway sweeps

    def __post_init__(self) -> None:
        if self.keep_days is not None and self.keep_days <= 0:
            raise ValueError("recordings must be kept more than 0 days")
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise ValueError("the recordings' disk cap must be more than 0 bytes")

    @property
    def active(self) -> bool:
        return self.keep_days is not None or self.max_bytes is not None


@dataclass(frozen=True, slots=True)
class Stored:
    id: int
    started_at: float
    size: int


def choose(
    rows: Sequence[Stored], now: float, policy: RetentionPolicy
) -> list[tuple[Stored, Reason]]:
    """What to delete: past the age first, then the oldest until under the disk cap."""
    chosen: list[tuple[Stored, Reason]] = []
    kept: list[Stored] = []
    horizon = None if policy.keep_days is None else now - policy.keep_days * 86400.0
    for row in sorted(rows, key=lambda r: (r.started_at, r.id)):
        if horizon is not None and row.started_at < horizon:
            chosen.append((row, "age"))
        else:
            kept.append(row)
    if policy.max_bytes is not None:
        total = sum(row.size for row in kept)
        for row in kept:
            if total <= policy.max_bytes:
                break
            chosen.append((row, "disk"))
            total -= row.size
    return chosen


class Retention:
    def __init__(
        self,
        engine: sqlalchemy.Engine,
        root: Path,
        policy: RetentionPolicy,
        audit: AuditWriter,
        clock: Callable[[], float],
        logger: logging.Logger | None = None,
    ) -> None:
        self.engine = engine
        self.root = root
        self.policy = policy
        self.audit = audit
        self.clock = clock
        self.log = logger or log
        self.deleted = 0
        self.errors = 0

    def _size(self, relative: str) -> int:
        try:
            return (self.root / relative).stat().st_size
        except OSError:
            return 0

    def sweep(self) -> int:
        """Apply the policy once (blocking); how many recordings were deleted."""
        if not self.policy.active:
            return 0
        with self.engine.connect() as conn:
            found = conn.execute(
                select(
                    recordings.c.id, recordings.c.started_at, recordings.c.path,
                    recordings.c.floor_key, recordings.c.talker,
                )
            ).all()  # fmt: skip
        info = {row.id: row for row in found}
        rows = [Stored(row.id, row.started_at, self._size(row.path)) for row in found]
        done = 0
        for stored, reason in choose(rows, self.clock(), self.policy):
            row = info[stored.id]
            try:
                with self.engine.begin() as conn:
                    conn.execute(delete(recordings).where(recordings.c.id == stored.id))
                path = self.root / row.path
                if path.resolve().is_relative_to(self.root.resolve()):
                    path.unlink(missing_ok=True)
            except (OSError, sqlalchemy.exc.SQLAlchemyError) as exc:
                self.errors += 1
                self.log.error("could not delete recording %d: %s", stored.id, exc)
                self.audit.record(SYSTEM, "recording_delete", str(stored.id), "failed",
                                  {"reason": reason, "error": str(exc)[:200]})  # fmt: skip
                continue
            done += 1
            self.audit.record(
                SYSTEM, "recording_delete", str(stored.id), "ok",
                {"reason": reason, "floor": row.floor_key, "talker": row.talker,
                 "started_at": row.started_at, "bytes": stored.size,
                 "keep_days": self.policy.keep_days, "max_bytes": self.policy.max_bytes},
            )  # fmt: skip
        if done:
            self.deleted += done
            self.log.info("retention deleted %d recordings", done)
        self._prune_empty_dirs()
        return done

    def _prune_empty_dirs(self) -> None:
        """Empty folders of past days (today's are left alone: the recorder, in its own
        process, may be making one to write into)."""
        if not self.root.is_dir():
            return
        today = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%d")
        for day in self.root.iterdir():
            if not day.is_dir() or day.name >= today:
                continue
            for folder in [*day.iterdir(), day]:
                with contextlib.suppress(OSError):  # not empty, or not a folder
                    folder.rmdir()
