"""Ogg Opus recordings checked by the reference tools: opusinfo must accept, opusdec must decode."""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codec.errors import OggError
from codec.ogg import (
    OggOpusWriter,
    OpusHead,
    OpusTags,
    ogg_crc,
    read_ogg_opus,
    recording_tags,
    repair,
)
from codec.opus import EncoderSettings, OpusEncoder, Pcm16, packet_duration
from codec.pcm import frames_of, read_wav

Speech = Callable[[str], Pcm16]
TOOLS = ("opusinfo", "opusdec", "opusenc")


@pytest.fixture(autouse=True)
def _tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"opus-tools missing ({missing}); scripts/bootstrap.sh installs them")


def opusinfo(path: Path) -> int:
    return subprocess.run(["opusinfo", str(path)], capture_output=True, timeout=60).returncode


def opusdec_seconds(path: Path, tmp_path: Path) -> float:
    out = tmp_path / (path.stem + ".wav")
    subprocess.run(["opusdec", "--quiet", str(path), str(out)], check=True, timeout=60)
    return read_wav(out.read_bytes()).duration_s


def padded(packet: bytes, size: int) -> bytes:
    """The same audio as a code-3 packet padded to `size` bytes (exercises Ogg lacing)."""
    toc = packet[0] & ~0x03 | 0x03
    padding = size - len(packet) - 2
    lengths = bytearray()
    remaining = padding
    while True:
        step = min(remaining, 254)
        if remaining - step > 0 or step == 254:
            lengths.append(255)
            remaining -= 254
        else:
            lengths.append(remaining)
            break
    body = bytes([toc, 0x41]) + bytes(lengths) + packet[1:]
    return body + b"\0" * (size - len(body))


def record(
    speech: Speech, gap_after: int | None = 60, big_every: int = 0
) -> tuple[bytes, list[bytes]]:
    encoder = OpusEncoder(EncoderSettings())
    head = OpusHead(pre_skip=encoder.pre_skip, input_rate=16000)
    writer = OggOpusWriter(0xC0FFEE, head, recording_tags("T001", "grid-07", "2026-11-28T05:46Z"))
    data = writer.start()
    written: list[bytes] = []
    for index, frame in enumerate(frames_of(speech("en"), encoder.frame_samples)):
        packet = encoder.encode(frame)
        if big_every and index % big_every == 0:
            packet = padded(packet, 700)
        data += writer.write_packet(packet)
        written.append(packet)
        if index == gap_after:
            data += writer.write_gap(960 * 25)  # half a second of pause inside the call
            written.append(b"gap")
    data += writer.flush() + writer.close()
    return data, written


def test_recording_is_accepted_and_decodes(speech: Speech, tmp_path: Path) -> None:
    data, written = record(speech)
    path = tmp_path / "call.opus"
    path.write_bytes(data)
    assert opusinfo(path) == 0
    stream = read_ogg_opus(data)
    speech_packets = [p for p in written if p != b"gap"]
    audio = [p.data for p in stream.packets if packet_duration(p.data) == 960 and len(p.data) > 1]
    assert audio == speech_packets  # no re-encoding: the same bytes come back
    assert stream.ended and not stream.truncated
    assert stream.head.pre_skip == 312 and stream.head.input_rate == 16000
    assert stream.tags.get("talker") == "T001" and stream.tags.get("TALKGROUP") == "grid-07"
    expected = (len(speech_packets) * 960 + 25 * 960 - 312) / 48000
    assert stream.duration_s == pytest.approx(expected)
    assert opusdec_seconds(path, tmp_path) == pytest.approx(expected, abs=0.001)


def test_pages_are_flushed_at_least_every_200_ms(speech: Speech) -> None:
    data, _ = record(speech)
    offset, granules = 0, []
    while offset < len(data):
        _, _, _, granule, _, _, _, count = struct.unpack_from("<4sBBqIIIB", data, offset)
        lacing = data[offset + 27 : offset + 27 + count]
        granules.append(granule)
        offset += 27 + count + sum(lacing)
    audio = granules[2:]
    assert all(b - a <= 9600 for a, b in zip([0, *audio], audio, strict=False))


def test_large_packets_span_lacing_values(speech: Speech, tmp_path: Path) -> None:
    data, written = record(speech, gap_after=None, big_every=7)
    path = tmp_path / "big.opus"
    path.write_bytes(data)
    assert opusinfo(path) == 0
    assert [p.data for p in read_ogg_opus(data).packets][: len(written)] == written
    assert opusdec_seconds(path, tmp_path) > 5.0


def test_truncated_file_plays_up_to_its_last_complete_page(speech: Speech, tmp_path: Path) -> None:
    data, _ = record(speech)
    full = read_ogg_opus(data).duration_s
    for fraction in (0.3, 0.55, 0.8):
        cut = data[: int(len(data) * fraction)]
        stream = read_ogg_opus(cut)
        assert stream.truncated and not stream.ended
        assert 0 < stream.duration_s < full
        path = tmp_path / f"cut{fraction}.opus"
        path.write_bytes(cut)
        # Everything on complete pages plays (a crash loses at most the last partial page).
        assert opusdec_seconds(path, tmp_path) >= stream.duration_s - 0.001
        assert opusinfo(path) != 0  # no end-of-stream page: not a finished recording
        fixed = tmp_path / f"fixed{fraction}.opus"
        fixed.write_bytes(repair(cut))
        assert opusinfo(fixed) == 0
        assert read_ogg_opus(fixed.read_bytes()).duration_s == pytest.approx(stream.duration_s)


@pytest.mark.parametrize("where", ["head", "tags", "audio", "capture"])
def test_corrupted_files_are_rejected(speech: Speech, tmp_path: Path, where: str) -> None:
    data, _ = record(speech)
    spot = {"head": 40, "tags": 80, "audio": len(data) // 2, "capture": 0}[where]
    broken = bytearray(data)
    broken[spot] ^= 0x5A
    path = tmp_path / f"broken-{where}.opus"
    path.write_bytes(bytes(broken))
    assert opusinfo(path) != 0
    with pytest.raises(OggError):
        read_ogg_opus(bytes(broken))


def test_reads_what_opusenc_writes(speech_wav: Callable[[str], Path], tmp_path: Path) -> None:
    source = speech_wav("cmn")
    out = tmp_path / "ref.opus"
    subprocess.run(["opusenc", "--quiet", str(source), str(out)], check=True, timeout=60)
    stream = read_ogg_opus(out.read_bytes())  # CRCs, lacing and headers of the reference tool
    assert stream.ended and stream.packets
    assert stream.duration_s == pytest.approx(read_wav(source.read_bytes()).duration_s, abs=0.03)


def test_big_tags_span_pages_and_stream_without_audio(tmp_path: Path) -> None:
    tags = OpusTags((("COMMENT", "x" * 70000), ("TALKER", "T001")))
    writer = OggOpusWriter(7, tags=tags)
    path = tmp_path / "empty.opus"
    path.write_bytes(writer.start() + writer.close())
    assert opusinfo(path) == 0
    stream = read_ogg_opus(path.read_bytes())
    assert stream.tags.get("talker") == "T001" and len(stream.packets) == 1


def test_crc_and_misuse() -> None:
    assert ogg_crc(b"") == 0
    assert ogg_crc(b"OggS") != ogg_crc(b"OggT")
    writer = OggOpusWriter(1)
    with pytest.raises(OggError):
        writer.write_packet(b"")
    with pytest.raises(OggError):
        writer.write_gap(100)
    writer.close()
    with pytest.raises(OggError):
        writer.write_packet(bytes([0x48]))
    with pytest.raises(OggError):
        OggOpusWriter(-1)
    with pytest.raises(OggError):
        OpusTags((("BAD=KEY", "v"),)).to_bytes()
    with pytest.raises(OggError):
        read_ogg_opus(b"not ogg at all" * 10)
    two_streams = OggOpusWriter(1).start() + OggOpusWriter(2).start()
    with pytest.raises(OggError):
        read_ogg_opus(two_streams)


def _ogg_crc_bitwise(data: bytes) -> int:
    """RFC 3533's CRC, one bit at a time: the slow, obvious reference."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


@given(st.binary(max_size=600))
def test_fast_ogg_crc_matches_the_bitwise_definition(data: bytes) -> None:
    assert ogg_crc(data) == _ogg_crc_bitwise(data)
