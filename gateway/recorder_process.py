"""The recorder in its own process, fed through a pipe by the relay.

A recorder thread inside the gateway would hold the GIL while it parses and writes, and the
relay's event loop would wait for it (milliseconds at a time): latency the talkers hear. So the
relay only appends a small record to a buffer; every 50 ms the buffer goes to the child's stdin
with one non-blocking write. If the child falls behind and the pipe is full, frames
are dropped from the recording (counted), never from the live relay.

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
from pathlib import Path

log = logging.getLogger(__name__)

_PIPE_BYTES = 1 << 20  # Linux F_SETPIPE_SZ: room for ~5 s of 100 talkers
FLUSH_INTERVAL_S = 0.05  # recordings are not live: 50 ms batches are plenty
_F_SETPIPE_SZ = 1031


def encode_record(floor: str, talker: str, payload: bytes) -> bytes:
    f, t = floor.encode(), talker.encode()
    return bytes((len(f),)) + f + bytes((len(t),)) + t + len(payload).to_bytes(2, "big") + payload


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
    """Parent side: starts the recorder process and feeds it without ever blocking."""

    def __init__(
        self, root: Path, db_url: str | None, *, logger: logging.Logger | None = None
    ) -> None:
        self.root = root
        self.db_url = db_url
        self.log = logger or log
        self._process: subprocess.Popen[bytes] | None = None
        self._fd = -1
        self._out: list[bytes] = []
        self._pending = b""
        self._flush_scheduled = False
        self.dropped = 0

    def start(self) -> None:
        args = [sys.executable, "-m", "gateway.recorder_process", "--root", str(self.root)]
        if self.db_url:
            args += ["--db", self.db_url]
        self._process = subprocess.Popen(args, stdin=subprocess.PIPE)
        assert self._process.stdin is not None
        self._fd = self._process.stdin.fileno()
        os.set_blocking(self._fd, False)
        with contextlib.suppress(OSError):  # the default 64 KiB pipe works too, with less slack
            fcntl.fcntl(self._fd, _F_SETPIPE_SZ, _PIPE_BYTES)

    def tap(self, floor: str, talker: str, payload: bytes) -> None:
        """Called by the relay for every relayed frame (on the event loop)."""
        self._out.append(encode_record(floor, talker, payload))
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
        try:
            if self._pending:  # the tail of a record a previous write cut: it goes first
                self._pending = self._pending[self._write(self._pending) :]
                if self._pending:
                    self.dropped += len(records)
                    return
            data = b"".join(records)
            written = self._write(data)
        except OSError as exc:  # the recorder died: keep relaying, say so once
            self.log.error("recorder process is gone (%s); recording stopped", exc)
            self._fd = -1
            return
        if written < len(data):
            # Finish the record the write cut in half (the stream must stay parseable); drop
            # the whole records after it: the recording loses them, the live relay does not.
            self._pending = _complete_partial(data, written)
            self.dropped += _count_records(data[written + len(self._pending) :])

    def _write(self, data: bytes) -> int:
        """Non-blocking write; 0 when the pipe is full."""
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0

    def stop(self, timeout: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            try:
                os.set_blocking(self._fd, True)
                if self._pending:
                    os.write(self._fd, self._pending)
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


def _record_size(buffer: bytes) -> int:
    """Length of the record at the start of `buffer`."""
    f_len = buffer[0]
    t_len = buffer[1 + f_len]
    p_at = 2 + f_len + t_len
    return p_at + 2 + int.from_bytes(buffer[p_at : p_at + 2], "big")


def _count_records(buffer: bytes) -> int:
    """How many whole records `buffer` (starting at a record boundary) holds."""
    count = offset = 0
    while offset < len(buffer):
        offset += _record_size(buffer[offset:])
        count += 1
    return count


def _complete_partial(data: bytes, written: int) -> bytes:
    """The unwritten tail of the record that `written` cut in half (empty if none was cut)."""
    offset = 0
    while offset < written:
        offset += _record_size(data[offset:])
    return data[written:offset]


# ---- child process ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Xixin talk-burst recorder (fed by the gateway)")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--db", help="database URL for the recordings index")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s recorder: %(message)s"
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the gateway stops us with EOF

    from gateway.recorder import Recorder

    engine = None
    if args.db:  # the store pulls in Alembic, whose import logs at INFO: only when indexing
        from gateway.store.db import create_db_engine

        engine = create_db_engine(args.db)
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
