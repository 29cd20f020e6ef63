"""Logging for every subcommand: one format, library chatter quieted, and log lines that never
break a live progress line (they clear it, print, and redraw it)."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that talk at INFO about their own workings (Alembic's plugins and migration context
# in every process that opens the store, uvicorn's access log): WARNING unless DEBUG is asked.
CHATTY = ("alembic", "uvicorn.access")
CLEAR_LINE = "\r\x1b[2K"


class LiveLine:
    """A stream a progress display rewrites one line of in place (``\\r`` + text).

    It remembers the line being shown, so a log record can clear it and redraw it after.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.RLock()
        self.shown = ""  # the unfinished line on screen

    def isatty(self) -> bool:
        return self.stream.isatty()

    def write(self, text: str) -> int:
        with self.lock:
            self.shown = (self.shown + text).rsplit("\n", 1)[-1].rsplit("\r", 1)[-1]
            return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def clear(self) -> None:
        if self.shown and self.isatty():
            self.stream.write(CLEAR_LINE)
            self.stream.flush()

    def redraw(self) -> None:
        if self.shown and self.isatty():
            self.stream.write("\r" + self.shown)
            self.stream.flush()


_live: list[LiveLine] = []  # the one shown now, if any


@contextlib.contextmanager
def live_line(stream: TextIO | None = None) -> Iterator[LiveLine]:
    """While inside, log records go around the progress line written to the yielded stream."""
    line = LiveLine(stream or sys.stdout)
    _live.append(line)
    try:
        yield line
    finally:
        _live.remove(line)


class ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr, but a live progress line is cleared before a record and redrawn after it."""

    def emit(self, record: logging.LogRecord) -> None:
        if not _live:
            super().emit(record)
            return
        line = _live[-1]
        with line.lock:
            line.clear()
            super().emit(record)
            line.redraw()


def setup_logging(level: str, fmt: str = FORMAT) -> None:
    """The root logger at `level` (DEBUG, INFO, WARNING, ERROR) through :class:`ConsoleHandler`.

    Like :func:`logging.basicConfig`, it leaves a root logger that already has handlers of its
    own (an embedding program, pytest) alone, but for quieting the chatty libraries.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, ConsoleHandler)]:
        root.removeHandler(old)  # main() called again in one process
    if not root.handlers:
        handler = ConsoleHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(fmt))
        root.addHandler(handler)
        root.setLevel(level)
    quiet = logging.getLevelName(level) > logging.DEBUG
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.NOTSET)
