"""The recorder in its own process, fed through a pipe by the relay.

A recorder thread inside the gateway would hold the GIL while it parses and writes, and the
relay's event loop would wait for it (milliseconds at a time): latency the talkers hear. So the
relay only appends a small record to a buffer; every 50 ms the buffer goes to the child's stdin
with one non-blocking write. If the child falls behind, records wait in a bounded backlog;
past it, frames are dropped from the recording (counted), never from the live relay.

Record layout (big-endian): u8 floor length, floor, u8 talker length, talker, u16 frame
length, frame.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

log = logging.getLogger(__name__)

_PIPE_BYTES = 1 << 20  # Linux F_SETPIPE_SZ: ~0.5 s at 20k frames/s, ~5 s of 100 talkers
BACKLOG_BYTES = 64 << 20  # then ~30 s at 20k frames/s wait in the gateway's memory
FLUSH_INTERVAL_S = 0.05  # recordings are not live: 50 ms batches are plenty
_F_SETPIPE_SZ = 1031
_MAX_HEADS = 10_000  # cached record heads (floor x talker); cleared when full
DB_URL_ENV = "XIXIN_RECORDER_DB"  # how the recorder gets its database URL (not argv)


def record_head(floor: str, talker: str) -> bytes:
    """The part of a record before the frame's length: the same for a whole burst."""
    f, t = floor.encode(), talker.encode()
    return bytes((len(f),)) + f + bytes((len(t),)) + t


def encode_record(floor: str, talker: str, payload: bytes) -> bytes:
    return record_head(floor, talker) + len(payload).to_bytes(2, "big") + payload


def decode_records(buffer: bytes) -> tuple[list[tuple[str, str, bytes]], bytes]:
    """Complete records in `buffer`, and the incomplete rest."""
    records = []
    offset, size = 0, len(buffer)
    while offset < size:
        f_len = buffer[offset]
        t_at = offset + 1 + f_len
        if t_at >= size:
            break
        t_len = buffer[t_at]
        p_at = t_at + 1 + t_len
        if p_at + 2 > size:
            break
        p_len = int.from_bytes(buffer[p_at : p_at + 2], "big")
        end = p_at + 2 + p_len
        if end > size:
            break
        records.append(
            (
                buffer[offset + 1 : t_at].decode(),
                buffer[t_at + 1 : p_at].decode(),
                buffer[p_at + 2 : end],
            )
        )
        offset = end
    return records, buffer[offset:]


class RecorderLink:
    """Parent side: starts the recorder process and feeds it without ever blocking.

    What the pipe cannot take yet waits in a bounded backlog (the recorder runs at the
    lowest CPU priority and catches up when the machine has a moment); only past
    `backlog_bytes` are frames dropped from the recording, whole records at a time, counted.
    """

    def __init__(
        self,
        root: Path,
        db_url: str | None,
        *,
        backlog_bytes: int = BACKLOG_BYTES,
        logger: logging.Logger | None = None,
    ) -> None:
        self.root = root
        self.db_url = db_url
        self.backlog_bytes = backlog_bytes
        self.log = logger or log
        self._process: subprocess.Popen[bytes] | None = None
        self._fd = -1
        self._out: list[bytes] = []
        self._queue: deque[bytes] = deque()  # complete records, in order, not yet in the pipe
        self._queued = 0  # bytes in _queue not yet written
        self._head_written = 0  # bytes of _queue[0] already in the pipe
        self._flush_scheduled = False
        self._heads: dict[tuple[str, str], bytes] = {}  # (floor, talker) -> encoded record head
        self.dropped = 0
        self.restarts = 0  # the recorder process died and another one was started
        self.lost_bytes = 0  # records that were waiting for a recorder that died

    @property
    def pid(self) -> int | None:
        """The recorder process, while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def backlog(self) -> int:
        """Bytes waiting for room in the pipe."""
        return self._queued

    def start(self) -> None:
        args = [sys.executable, "-m", "gateway.recorder_process", "--root", str(self.root)]
        env = dict(os.environ)
        if self.db_url:
            # Not on the command line, which every user of the machine can read (ps).
            env[DB_URL_ENV] = self.db_url
        self._process = subprocess.Popen(args, stdin=subprocess.PIPE, env=env)
        assert self._process.stdin is not None
        self._fd = self._process.stdin.fileno()
        os.set_blocking(self._fd, False)
        with contextlib.suppress(OSError):  # the default 64 KiB pipe works too, with less slack
            fcntl.fcntl(self._fd, _F_SETPIPE_SZ, _PIPE_BYTES)

    def tap(self, floor: str, talker: str, payload: bytes) -> None:
        """Called by the relay for every relayed frame (on the event loop)."""
        head = self._heads.get((floor, talker))
        if head is None:
            if len(self._heads) >= _MAX_HEADS:
                self._heads.clear()
            head = self._heads[floor, talker] = record_head(floor, talker)
        self._out.append(head + len(payload).to_bytes(2, "big") + payload)
        if not self._flush_scheduled:
            # Batched on a timer, not per loop turn: a write and a recorder wake-up per turn
            # (~10k/s under load) cost the relay more scheduling latency than the copy itself.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(FLUSH_INTERVAL_S, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        records, self._out = self._out, []
        if self._fd < 0:
            return
        if records:
            data = b"".join(records)
            if self._queue and self._queued + len(data) > self.backlog_bytes:
                # Whole batches are dropped, so the stream stays whole records. An empty
                # backlog always takes the batch (one flush interval's worth, already in memory).
                self.dropped += len(records)
            else:
                self._queue.append(data)
                self._queued += len(data)
        try:
            self._write_queue()
        except OSError as exc:  # the recorder died: keep relaying, start another one
            self._restart(exc)
            return
        if self._queue and not self._flush_scheduled:  # the pipe was full: try again soon
            self._flush_scheduled = True
            with contextlib.suppress(RuntimeError):  # no loop: stop() writes the rest
                asyncio.get_running_loop().call_later(FLUSH_INTERVAL_S, self._flush)

    def _restart(self, why: OSError) -> None:
        """A new recorder process for the one that died. What waited in the pipe and the
        backlog is lost (counted); bursts it had open were closed by its index at death."""
        self.restarts += 1
        self.lost_bytes += self._queued
        self._queue.clear()
        self._queued = 0
        self._head_written = 0
        self._heads.clear()
        old, self._process = self._process, None
        if old is not None:
            with contextlib.suppress(OSError):
                if old.stdin is not None:
                    old.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                old.wait(1.0)
        self._fd = -1
        self.log.error(
            "recorder process is gone (%s); starting another one (restart %d)", why, self.restarts
        )
        try:
            self.start()
        except OSError as exc:
            self.log.error("cannot start the recorder process: %s", exc)

    def problem(self) -> str | None:
        """Why recording is not working, for health; None while it is."""
        if self._process is None or self._process.poll() is not None:
            return f"recorder process not running ({self.restarts} restarts)"
        return None

    def _write_queue(self) -> None:
        """Write queued bytes until the pipe is full (non-blocking; partial writes are fine)."""
        queue = self._queue
        while queue:
            head = queue[0]
            try:
                written = os.write(self._fd, memoryview(head)[self._head_written :])
            except BlockingIOError:
                return
            self._head_written += written
            self._queued -= written
            if self._head_written < len(head):
                return  # the pipe took part of it: full
            queue.popleft()
            self._head_written = 0

    def stop(self, timeout: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            try:
                os.set_blocking(self._fd, True)
                self._flush()  # with a blocking pipe this writes the whole backlog
                process.stdin.close()  # EOF: the child closes open bursts and exits
            except OSError:
                pass
        self._fd = -1
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.log.warning("recorder pid %d did not stop; killing it", process.pid)
            process.kill()
            process.wait()


# ---- child process ----------------------------------------------------------------------------


def _yield_cpu() -> None:
    """Recording is not live (50 ms batches, seconds of pipe): never take a core from the relay.

    Lowest CPU priority: the recorder runs on what the broker and the relay leave; if that
    is not enough for seconds on end, the pipe fills and recording (not relaying) drops frames.
    """
    with contextlib.suppress(OSError):
        os.nice(19)
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Xixin talk-burst recorder (fed by the gateway)")
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args(argv)
    db_url = os.environ.pop(DB_URL_ENV, None)  # the recordings index; see RecorderLink.start
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s recorder: %(message)s"
    )
    # Alembic logs its plugin set-up at INFO when the store is imported: not the recorder's news
    # (and it would break a live progress line on the terminal the recorder shares).
    logging.getLogger("alembic").setLevel(logging.WARNING)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the gateway stops us with EOF
    _yield_cpu()

    from gateway.recorder import Recorder

    engine = None
    if db_url:  # the store pulls in Alembic, whose import logs at INFO: only when indexing
        from gateway.store.db import create_db_engine

        engine = create_db_engine(db_url)
    args.root.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(args.root, engine)
    fd = sys.stdin.fileno()
    buffer = b""
    last_idle_check = time.monotonic()
    while True:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            records, buffer = decode_records(buffer + chunk)
            for floor, talker, payload in records:
                recorder.handle(floor, talker, payload)
        now = time.monotonic()
        if now - last_idle_check >= 0.5:
            last_idle_check = now
            recorder.close_idle()
    recorder.close_all()
    if engine is not None:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
