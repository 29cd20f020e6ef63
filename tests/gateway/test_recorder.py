"""Talk-burst recordings: the recorder core with a fake clock, and end to end through the
gateway with real Opus, checked by opus-tools."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from codec.frame import VoiceFrame, encode_frame
from codec.ogg import read_ogg_opus
from codec.opus import EncoderSettings, OpusEncoder
from devices.client import TerminalClient
from gateway.recorder import Recorder
from gateway.recorder_process import RecorderLink, decode_records, encode_record
from gateway.service import GatewayService
from gateway.store.db import create_db_engine, migrate
from gateway.store.recordings import recordings
from gateway.tables import metadata as _all_tables  # noqa: F401


def opus_frames(count: int, burst: int = 7, drop: frozenset[int] = frozenset()) -> list[bytes]:
    encoder = OpusEncoder(EncoderSettings(sample_rate=16000, bitrate=16000))
    t = np.arange(count * 320) / 16000
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    wires = []
    for seq in range(count):
        packet = encoder.encode(pcm[seq * 320 : (seq + 1) * 320])
        if seq in drop:
            continue
        wires.append(
            encode_frame(
                VoiceFrame(
                    burst, seq, seq * 960, 20, (packet,), start=seq == 0, end=seq == count - 1
                )
            )
        )
    return wires


class Clock:
    def __init__(self) -> None:
        self.now = 1_764_300_000.0

    def __call__(self) -> float:
        return self.now


def test_records_survive_any_split_of_the_pipe_stream() -> None:
    records = [("grid-01", "T001", b"\x01" * 90), ("call:T001:T004", "T004", b"\x02" * 3)]
    stream = b"".join(encode_record(*r) for r in records)
    for cut in range(len(stream) + 1):
        first, rest = decode_records(stream[:cut])
        second, tail = decode_records(rest + stream[cut:])
        assert first + second == records and tail == b""


def wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_recorder_fills_gaps_splits_bursts_and_indexes(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    clock = Clock()
    recorder = Recorder(tmp_path / "rec", engine, idle_close_s=4.0, clock=clock)
    for wire in opus_frames(50, burst=7, drop=frozenset({10, 11, 12})):
        recorder.handle("grid-01", "T001", wire)
        clock.now += 0.02
    assert recorder.recorded == 1  # closed by the END flag
    for wire in opus_frames(25, burst=8)[:-1]:  # no END: closed by the idle timer
        recorder.handle("grid-01", "T002", wire)
    assert recorder.open_bursts() == {"grid-01": ("T002", 24)}
    clock.now += 3.9
    recorder.close_idle()
    assert recorder.recorded == 1
    clock.now += 0.2
    recorder.close_idle()
    assert recorder.recorded == 2 and recorder.open_bursts() == {}
    recorder.handle("grid-01", "T003", b"not a frame")  # the relay never sends these; ignored
    assert recorder.errors == 0
    with engine.connect() as conn:
        rows = conn.execute(select(recordings).order_by(recordings.c.id)).all()
    assert [(r.talker, r.burst, r.frames, r.lost_frames) for r in rows] == [
        ("T001", 7, 47, 3),
        ("T002", 8, 24, 0),
    ]
    assert rows[0].duration_ms == 1000  # the 3 lost frames are concealed, the timeline kept
    stream = read_ogg_opus((tmp_path / "rec" / rows[0].path).read_bytes())
    assert stream.tags.get("TALKER") == "T001" and stream.tags.get("TALKGROUP") == "grid-01"
    # People's voices: the file and its folders are the gateway's user's only.
    assert (tmp_path / "rec" / rows[0].path).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "rec" / rows[0].path).parent.stat().st_mode & 0o777 == 0o700


def test_the_recorder_gets_its_database_url_outside_its_command_line(tmp_path: Path) -> None:
    secret_url = f"sqlite:///{tmp_path / 'db.sqlite'}?secret=hunter2"
    link = RecorderLink(tmp_path / "rec", secret_url)
    link.start()
    try:
        assert link.pid is not None
        cmdline = Path(f"/proc/{link.pid}/cmdline").read_bytes()
        assert b"hunter2" not in cmdline and b"sqlite" not in cmdline
    finally:
        link.stop()


@pytest.mark.skipif(shutil.which("opusinfo") is None, reason="opus-tools not installed")
def test_burst_through_gateway_is_recorded_and_served(
    api: tuple[TestClient, GatewayService], tmp_path: Path
) -> None:
    http, service = api
    secret = http.post(
        "/api/devices", json={"id": "T001", "unit": "grid-01", "role": "officer"}
    ).json()["secret"]
    assert service.broker is not None
    terminal = TerminalClient("T001", secret, service.broker.host, service.broker.port)
    terminal.connect()
    try:
        burst = terminal.request_floor(tg="grid-01")["burst"]
        for wire in opus_frames(100, burst=burst):
            terminal.publish_raw("xixin/v1/tg/grid-01/up/T001", wire)
            time.sleep(0.002)
        terminal.release_floor(tg="grid-01")
    finally:
        terminal.disconnect()
    wait_for(lambda: http.get("/api/recordings").json() != [])
    [listed] = http.get("/api/recordings", params={"floor": "grid-01"}).json()
    assert listed["talker"] == "T001" and listed["frames"] == 100 and listed["duration_ms"] == 2000
    audio = http.get(f"/api/recordings/{listed['id']}/audio")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/ogg"
    path = tmp_path / "download.opus"
    path.write_bytes(audio.content)
    assert subprocess.run(["opusinfo", str(path)], capture_output=True).returncode == 0
    decoded = tmp_path / "decoded.wav"
    subprocess.run(["opusdec", "--quiet", str(path), str(decoded)], check=True)
    with wave.open(str(decoded)) as wav:
        assert abs(wav.getnframes() / wav.getframerate() - 2.0) < 0.05
    assert http.get("/api/recordings/9999/audio").status_code == 404
    metrics = http.get("/metrics").text
    assert "xixin_recording_frames_dropped_total 0.0" in metrics
    assert "xixin_recorder_backlog_bytes 0.0" in metrics


def test_a_stalled_recorder_loses_recording_not_relay_time(tmp_path: Path) -> None:
    import asyncio
    import os
    import signal

    link = RecorderLink(tmp_path / "rec", None, backlog_bytes=256 * 1024)
    link.start()
    assert link._process is not None
    pid = link._process.pid
    wires = opus_frames(50, burst=3)

    async def feed(rounds: int) -> None:
        for round_no in range(rounds):
            for wire in wires:
                link.tap("grid-01", "T001", wire)
            # the flush timer (50 ms) fires now and then, however fast the taps are
            await asyncio.sleep(0.06 if round_no % 100 == 0 else 0)

    os.kill(pid, signal.SIGSTOP)
    try:
        # ~100k frames, far more than the pipe holds: a blocking write would hang right here.
        asyncio.run(asyncio.wait_for(feed(2000), 60))
    finally:
        os.kill(pid, signal.SIGCONT)
    assert link.dropped > 0
    fed = 2000 * sum(len(encode_record("grid-01", "T001", wire)) for wire in wires)
    assert link.backlog < fed / 2, "the backlog is bounded, not everything that came"
    link.stop()
    assert list((tmp_path / "rec").rglob("*.opus")), "what fit in the pipe was still recorded"


def test_a_stall_longer_than_the_pipe_is_absorbed_by_the_backlog(tmp_path: Path) -> None:
    """The recorder runs at the lowest CPU priority: a busy machine stalls it for a while.
    What the 1 MiB pipe cannot hold waits in the gateway and is recorded once it resumes."""
    import asyncio
    import os
    import signal

    from codec.frame import parse_frame

    template = [parse_frame(wire) for wire in opus_frames(50)]
    bursts = [
        [encode_frame(dataclasses.replace(frame, burst=b)) for frame in template]
        for b in range(1, 601)
    ]
    link = RecorderLink(tmp_path / "rec", None)
    link.start()
    assert link.pid is not None
    pid = link.pid

    async def feed() -> None:
        for b, wires in enumerate(bursts):
            for wire in wires:
                link.tap("grid-01", "T001", wire)
            if b % 20 == 0:
                await asyncio.sleep(0.06)  # let the 50 ms flush timer fire now and then

    os.kill(pid, signal.SIGSTOP)
    try:
        asyncio.run(feed())
        assert link.backlog > 0, "30k frames (> the pipe) should be waiting in the backlog"
    finally:
        os.kill(pid, signal.SIGCONT)
    link.stop()
    assert link.dropped == 0
    assert len(list((tmp_path / "rec").rglob("*.opus"))) == len(bursts)


def test_pipe_stream_stays_aligned_when_writes_are_cut(tmp_path: Path) -> None:
    import fcntl
    import os

    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, 1031, 16384)  # F_SETPIPE_SZ: a small pipe, so writes get cut
    os.set_blocking(write_fd, False)
    link = RecorderLink(tmp_path, None, backlog_bytes=20_000)
    link._fd = write_fd
    sent = 0
    received: list[tuple[str, str, bytes]] = []
    buffer = b""
    try:
        for round_no in range(300):
            # > PIPE_BUF (4 KiB) per flush: Linux may then write part of it
            for i in range(100):
                link._out.append(
                    encode_record("grid-01", f"T{round_no:03d}", bytes([i]) * (37 + i))
                )
                sent += 1
            link._flush()
            if round_no % 2 == 0:  # the reader keeps up only part of the time
                buffer += os.read(read_fd, 7000)
                records, buffer = decode_records(buffer)
                received += records
        os.set_blocking(read_fd, False)
        while True:
            link._flush()
            try:
                chunk = os.read(read_fd, 65536)
            except BlockingIOError:
                break
            buffer += chunk
        records, buffer = decode_records(buffer)
        received += records
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert buffer == b"", "a cut record was never completed"
    assert link.dropped > 0 and len(received) + link.dropped == sent
    assert all(len(payload) == 37 + payload[0] for _, _, payload in received)


def test_recording_losses_and_backlog_are_exported(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from gateway.metrics import RecorderCollector

    link = RecorderLink(tmp_path, None)
    registry = CollectorRegistry()
    registry.register(RecorderCollector(link))
    link.dropped = 5
    link._queue.append(b"x" * 1234)
    link._queued = 1234
    text = generate_latest(registry).decode()
    assert "xixin_recording_frames_dropped_total 5.0" in text
    assert "xixin_recorder_backlog_bytes 1234.0" in text


def test_a_recorder_that_dies_is_replaced_and_recording_goes_on(tmp_path: Path) -> None:
    import asyncio
    import os
    import signal

    link = RecorderLink(tmp_path / "rec", None)
    link.start()
    first = link.pid
    assert first is not None and link.problem() is None
    os.kill(first, signal.SIGKILL)

    async def talk_until_replaced() -> None:
        while link.restarts == 0:  # the next flush into the dead pipe starts another one
            for wire in opus_frames(50, burst=5):
                link.tap("grid-01", "T001", wire)
            await asyncio.sleep(0.01)
        for wire in opus_frames(50, burst=6):
            link.tap("grid-01", "T001", wire)

    asyncio.run(talk_until_replaced())
    assert link.restarts == 1 and link.pid not in (None, first)
    assert link.problem() is None
    link.stop()  # writes what is queued, then the recorder closes its bursts
    recorded = [p.name for p in (tmp_path / "rec").rglob("*.opus")]
    assert any("-b6." in name for name in recorded), recorded
