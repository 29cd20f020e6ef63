"""The on-disk journal of a DurableWriter (gateway/durable.py): segment files of encoded items.

Segments `<seq>.jsonl` (0600) in a 0700 directory, one encoded item per line, at most
`segment_items` each; each append is one write() and one fsync, a new or deleted segment also
fsyncs the directory. A torn last line (a crash in mid-append) is logged and skipped.
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final, Generic, TypeVar

T = TypeVar("T")

_FIRST_SEQ: Final = 10**11  # room below for segments spilled to the front at stop
_SUFFIX: Final = ".jsonl"


class Journal(Generic[T]):
    """Segment files of encoded items; owned by the writer thread only."""

    def __init__(
        self,
        directory: Path,
        encode: Callable[[T], bytes],
        decode: Callable[[bytes], T],
        segment_items: int,
        logger: logging.Logger,
    ) -> None:
        self.directory = directory
        self.encode = encode
        self.decode = decode
        self.segment_items = max(1, segment_items)
        self.log = logger
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        # (seq, item count) oldest first; the last one may be open for appending.
        self.segments: collections.deque[list[int]] = collections.deque()
        self.items = 0
        self.corrupt = 0
        self._open_seq: int | None = None
        self._fd: int | None = None
        for path in sorted(directory.glob(f"*{_SUFFIX}")):
            try:
                seq = int(path.stem)
            except ValueError:
                continue
            count = path.read_bytes().count(b"\n")
            self.segments.append([seq, count])
            self.items += count

    def path(self, seq: int) -> Path:
        return self.directory / f"{seq:012d}{_SUFFIX}"

    def _sync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _new_segment(self, seq: int) -> int:
        fd = os.open(self.path(seq), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._sync_dir()
        return fd

    def close(self) -> None:
        fd, self._fd, self._open_seq = self._fd, None, None
        if fd is not None:
            os.close(fd)

    def _lines(self, items: list[T]) -> list[bytes]:
        lines = []
        for item in items:
            try:
                lines.append(self.encode(item) + b"\n")
            except Exception:  # one bad item must not cost the others
                self.corrupt += 1
                self.log.exception("journal: an item could not be encoded and is lost: %r", item)
        return lines

    def append(self, items: list[T]) -> None:
        """Append at the end; one write and one fsync per segment touched."""
        lines = self._lines(items)
        while lines:
            if self._fd is None or not self.segments or self.segments[-1][0] != self._open_seq:
                self.close()
                seq = self.segments[-1][0] + 1 if self.segments else _FIRST_SEQ
                self._fd = self._new_segment(seq)
                self._open_seq = seq
                self.segments.append([seq, 0])
            segment = self.segments[-1]
            room = self.segment_items - segment[1]
            if room <= 0:
                self.close()
                continue
            part, lines = lines[:room], lines[room:]
            os.write(self._fd, b"".join(part))
            os.fsync(self._fd)
            segment[1] += len(part)
            self.items += len(part)

    def prepend(self, items: list[T]) -> None:
        """Write items in front of every segment (memory spilled at stop: it is older)."""
        lines = self._lines(items)
        chunks = [
            lines[i : i + self.segment_items] for i in range(0, len(lines), self.segment_items)
        ]
        first = self.segments[0][0] if self.segments else _FIRST_SEQ
        for offset, part in enumerate(reversed(chunks), start=1):
            seq = first - offset
            fd = self._new_segment(seq)
            try:
                os.write(fd, b"".join(part))
                os.fsync(fd)
            finally:
                os.close(fd)
            self.segments.appendleft([seq, len(part)])
            self.items += len(part)

    def read_oldest(self) -> tuple[int, list[T]] | None:
        """The oldest segment's items (closed for appending first); None if there is none."""
        if not self.segments:
            return None
        seq, count = self.segments[0]
        if seq == self._open_seq:
            self.close()
        data = self.path(seq).read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        if tail:
            self.corrupt += 1
            self.log.error("journal %s: a torn last line (%d bytes) is skipped", seq, len(tail))
        items: list[T] = []
        for line in lines:
            try:
                items.append(self.decode(line))
            except Exception:
                self.corrupt += 1
                self.log.exception("journal %s: a line could not be decoded and is skipped", seq)
        if len(lines) != count:
            self.items += len(lines) - count
            self.segments[0][1] = len(lines)
        return seq, items

    def remove(self, seq: int) -> None:
        """Delete a segment whose items are committed."""
        assert self.segments and self.segments[0][0] == seq
        _, count = self.segments.popleft()
        self.items -= count
        if seq == self._open_seq:
            self.close()
        self.path(seq).unlink(missing_ok=True)
        self._sync_dir()
