"""Voice frame wire format: round trip, and every truncation and mutation rejected cleanly."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.frame import (
    FLAG_END,
    FLAG_RED,
    FLAG_RED2,
    HEADER,
    MAX_FRAME_BYTES,
    FrameError,
    FrameFlagsError,
    FrameLengthError,
    FrameTooLargeError,
    FrameTruncatedError,
    FrameVersionError,
    VoiceFrame,
    encode_frame,
    frame_audio,
    frame_burst,
    parse_frame,
    peek_frame,
    samples_per_message,
)

_LAYOUTS = [(10, 2), (10, 3), (10, 6), (20, 1), (20, 2), (20, 3), (40, 1), (60, 1)]


@st.composite
def frames(draw: st.DrawFn) -> VoiceFrame:
    frame_ms, count = draw(st.sampled_from(_LAYOUTS))
    packet = st.binary(min_size=1, max_size=300)
    redundant = draw(st.none() | packet)
    return VoiceFrame(
        burst=draw(st.integers(0, 0xFFFF)),
        seq=draw(st.integers(0, 0xFFFF)),
        timestamp=draw(st.integers(0, 0xFFFFFFFF)),
        frame_ms=frame_ms,
        packets=tuple(draw(st.lists(packet, min_size=count, max_size=count))),
        start=draw(st.booleans()),
        end=draw(st.booleans()),
        fec=draw(st.booleans()),
        redundant=redundant,
        redundant2=None if redundant is None else draw(st.none() | packet),
    )


@given(frames())
def test_round_trip(frame: VoiceFrame) -> None:
    data = encode_frame(frame)
    assert parse_frame(data) == frame
    assert parse_frame(memoryview(data)) == frame
    header = peek_frame(data)
    assert (header.burst, header.seq, header.count) == (frame.burst, frame.seq, len(frame.packets))
    assert frame_burst(data) == frame.burst


@given(frames(), st.data())
def test_every_truncation_rejected(frame: VoiceFrame, data: st.DataObject) -> None:
    wire = encode_frame(frame)
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(FrameError):
        parse_frame(wire[:cut])
    with pytest.raises(FrameError):
        frame_burst(wire[:cut])


@settings(max_examples=300)
@given(frames(), st.data())
def test_mutation_parses_or_raises_frame_error(frame: VoiceFrame, data: st.DataObject) -> None:
    wire = bytearray(encode_frame(frame))
    index = data.draw(st.integers(0, len(wire) - 1))
    wire[index] = data.draw(st.integers(0, 255))
    try:
        parsed = parse_frame(bytes(wire))
    except FrameError:
        return
    assert encode_frame(parsed) == bytes(wire)


def _audio_or_error(wire: bytes) -> object:
    try:
        return frame_audio(wire)
    except FrameError:
        return FrameError


def _burst_or_error(wire: bytes) -> object:
    try:
        return frame_burst(wire)
    except FrameError:
        return FrameError


def _expected_burst(wire: bytes) -> object:
    try:
        return parse_frame(wire).burst
    except FrameError:
        return FrameError


def _expected_audio(wire: bytes) -> object:
    try:
        frame = parse_frame(wire)
    except FrameError:
        return FrameError
    flags = peek_frame(wire).flags
    return flags, frame.burst, frame.seq, frame.frame_ms, list(frame.packets)


@settings(max_examples=300)
@given(frames(), st.data())
def test_fast_readers_agree_with_parse_frame(frame: VoiceFrame, data: st.DataObject) -> None:
    """The recorder's and the relay's fast readers accept exactly what parse_frame accepts."""
    wire = encode_frame(frame)
    assert _audio_or_error(wire) == _expected_audio(wire) != FrameError
    cut = wire[: data.draw(st.integers(0, len(wire) - 1))]
    assert _audio_or_error(cut) is FrameError
    mutated = bytearray(wire)
    mutated[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    assert _audio_or_error(bytes(mutated)) == _expected_audio(bytes(mutated))
    # the relay's check takes the same fast path: it too must accept exactly the valid frames
    for candidate in (wire, cut, bytes(mutated)):
        assert _burst_or_error(candidate) == _expected_burst(candidate)


@given(st.binary(max_size=64))
def test_random_bytes_never_crash(blob: bytes) -> None:
    with contextlib.suppress(FrameError):
        parse_frame(blob)


def _header(**fields: int) -> bytes:
    values = {"version": 1, "flags": 0, "burst": 1, "seq": 0, "ts": 0, "units": 8, "count": 1}
    values.update(fields)
    return HEADER.pack(*values.values())


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (b"", FrameTruncatedError),
        (_header(version=2) + b"\x00\x01x", FrameVersionError),
        (_header(flags=0x20) + b"\x00\x01x", FrameFlagsError),
        (_header(flags=FLAG_RED2) + b"\x00\x01x" * 2, FrameFlagsError),  # RED2 needs RED
        (_header(flags=FLAG_RED | FLAG_RED2) + b"\x00\x01x" * 2, FrameTruncatedError),
        (_header(units=5) + b"\x00\x01x", FrameLengthError),
        (_header(count=0), FrameLengthError),
        (_header(count=7), FrameLengthError),
        (_header(units=24, count=2) + b"\x00\x01x" * 2, FrameLengthError),
        (_header(units=4, count=1) + b"\x00\x01x", FrameLengthError),
        (_header() + b"\x00\x00", FrameLengthError),
        (_header() + b"\x05\x00" + b"x" * 1280, FrameLengthError),
        (_header() + b"\x00\x01xy", FrameLengthError),
        (_header() + b"\x00\x05x", FrameTruncatedError),
        (_header() + b"\x00", FrameTruncatedError),
        (_header() + b"\x00\x01x" + b"\x00" * MAX_FRAME_BYTES, FrameTooLargeError),
    ],
)
def test_specific_errors(wire: bytes, error: type[FrameError]) -> None:
    with pytest.raises(error):
        parse_frame(wire)


def test_bare_end_marker_is_valid() -> None:
    frame = parse_frame(_header(flags=FLAG_END, count=0))
    assert frame.end and frame.packets == ()


def test_encode_rejects_what_parse_would() -> None:
    with pytest.raises(FrameLengthError):
        encode_frame(VoiceFrame(1, 0, 0, 20, (b"",)))
    with pytest.raises(FrameLengthError):
        encode_frame(VoiceFrame(1, 0, 0, 30, (b"x",)))
    with pytest.raises(FrameLengthError):
        encode_frame(VoiceFrame(70000, 0, 0, 20, (b"x",)))


def test_samples_per_message() -> None:
    assert samples_per_message(20, 1) == 960
    assert samples_per_message(20, 3) == 2880


def test_redundant_blocks_follow_the_packets_in_depth_order() -> None:
    frame = VoiceFrame(
        9, 12, 960 * 12, 20, (b"\x48now",), redundant=b"\x48one", redundant2=b"\x48two"
    )
    wire = encode_frame(frame)
    assert wire[1] == FLAG_RED | FLAG_RED2
    assert wire[HEADER.size :] == b"\x00\x04\x48now\x00\x04\x48one\x00\x04\x48two"
    assert parse_frame(wire) == frame
    assert frame_burst(wire) == 9
    old_style = VoiceFrame(9, 12, 0, 20, (b"\x48now",), redundant=b"\x48one")
    assert encode_frame(old_style)[1] == FLAG_RED  # frames without RED2 are unchanged
    with pytest.raises(FrameFlagsError):
        encode_frame(VoiceFrame(9, 12, 0, 20, (b"\x48now",), redundant2=b"\x48two"))
