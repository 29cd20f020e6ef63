"""Voice-frame wire format (docs/protocol.md §3): sans-I/O encode and parse.

The relay's hot path only needs :func:`peek_frame`, which validates the whole structure without
copying packet bytes; endpoints use :func:`parse_frame` / :func:`encode_frame`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

VERSION = 1
HEADER = struct.Struct(">BBHHIBB")
HEADER_SIZE = HEADER.size  # 12
MAX_FRAME_BYTES = 4096
MAX_PACKET_BYTES = 1275
MAX_PACKETS = 6
SAMPLE_RATE = 48_000

FLAG_START = 0x01
FLAG_END = 0x02
FLAG_FEC = 0x04
FLAG_RED = 0x08
FLAG_RED2 = 0x10  # a second redundant block: message seq - 2; only together with FLAG_RED
_KNOWN_FLAGS = FLAG_START | FLAG_END | FLAG_FEC | FLAG_RED | FLAG_RED2
RESERVED_FLAGS = 0xFF & ~_KNOWN_FLAGS  # must be zero: a header-only check tests these

# Frame duration travels in 2.5 ms units; only these Opus durations are allowed per packet.
_DURATION_UNITS_MS = {4: 10, 8: 20, 16: 40, 24: 60}
_MS_TO_UNITS = {ms: units for units, ms in _DURATION_UNITS_MS.items()}
_SINGLE_PACKET_FLAGS = FLAG_START | FLAG_END | FLAG_FEC
_UNITS_20MS = 8
MIN_MESSAGE_MS = 20
MAX_MESSAGE_MS = 60


class FrameError(ValueError):
    """A voice frame that does not follow docs/protocol.md §3."""


class FrameTruncatedError(FrameError):
    """The buffer ends before a declared field or packet."""


class FrameVersionError(FrameError):
    """Unknown frame version."""


class FrameFlagsError(FrameError):
    """Reserved flag bits are set."""


class FrameLengthError(FrameError):
    """A length, count or duration field is out of range, or bytes trail the frame."""


class FrameTooLargeError(FrameError):
    """The frame exceeds MAX_FRAME_BYTES."""


@dataclass(frozen=True, slots=True)
class FrameHeader:
    flags: int
    burst: int
    seq: int
    timestamp: int
    frame_ms: int
    count: int

    @property
    def start(self) -> bool:
        return bool(self.flags & FLAG_START)

    @property
    def end(self) -> bool:
        return bool(self.flags & FLAG_END)


@dataclass(frozen=True, slots=True)
class VoiceFrame:
    burst: int
    seq: int
    timestamp: int
    frame_ms: int
    packets: tuple[bytes, ...]
    start: bool = False
    end: bool = False
    fec: bool = False
    redundant: bytes | None = field(default=None)
    # The audio of message seq - 2's last packet, usually re-encoded at a lower bitrate (RED2).
    redundant2: bytes | None = field(default=None)

    @property
    def duration_ms(self) -> int:
        return self.frame_ms * len(self.packets)

    @property
    def flags(self) -> int:
        flags = 0
        if self.start:
            flags |= FLAG_START
        if self.end:
            flags |= FLAG_END
        if self.fec:
            flags |= FLAG_FEC
        if self.redundant is not None:
            flags |= FLAG_RED
        if self.redundant2 is not None:
            flags |= FLAG_RED2
        return flags


def _validate(buf: bytes | memoryview) -> tuple[int, int, int, int, int, int]:
    """Validate a whole frame; return (flags, burst, seq, timestamp, frame_ms, count)."""
    size = len(buf)
    if size > MAX_FRAME_BYTES:
        raise FrameTooLargeError(f"frame is {size} bytes, limit {MAX_FRAME_BYTES}")
    if size < HEADER_SIZE:
        raise FrameTruncatedError(f"frame is {size} bytes, header needs {HEADER_SIZE}")
    version, flags, burst, seq, timestamp, units, count = HEADER.unpack_from(buf, 0)
    if version != VERSION:
        raise FrameVersionError(f"unknown frame version {version}")
    if flags & ~_KNOWN_FLAGS:
        raise FrameFlagsError(f"reserved flag bits set: {flags:#04x}")
    if flags & FLAG_RED2 and not flags & FLAG_RED:
        raise FrameFlagsError("RED2 without RED")
    frame_ms = _check_duration(flags, units, count)
    blocks = count + (1 if flags & FLAG_RED else 0) + (1 if flags & FLAG_RED2 else 0)
    _check_blocks(buf, blocks)
    return flags, burst, seq, timestamp, frame_ms, count


def _check_duration(flags: int, units: int, count: int) -> int:
    """The packet duration in ms, checked against the packet count; FrameLengthError if not."""
    frame_ms = _DURATION_UNITS_MS.get(units)
    if frame_ms is None:
        raise FrameLengthError(f"frame duration code {units} is not 10/20/40/60 ms")
    if count > MAX_PACKETS:
        raise FrameLengthError(f"{count} packets, limit {MAX_PACKETS}")
    if count == 0:
        if not flags & FLAG_END:
            raise FrameLengthError("an empty frame must carry END")
    elif not MIN_MESSAGE_MS <= frame_ms * count <= MAX_MESSAGE_MS:
        raise FrameLengthError(f"{count} x {frame_ms} ms is outside 20-60 ms")
    return frame_ms


def _check_blocks(buf: bytes | memoryview, blocks: int) -> None:
    """The length-prefixed packets after the header fill the frame exactly."""
    size = len(buf)
    offset = HEADER_SIZE
    for _ in range(blocks):
        if offset + 2 > size:
            raise FrameTruncatedError("frame ends inside a packet length")
        length = (buf[offset] << 8) | buf[offset + 1]
        if not 1 <= length <= MAX_PACKET_BYTES:
            raise FrameLengthError(f"packet length {length} outside 1-{MAX_PACKET_BYTES}")
        offset += 2 + length
        if offset > size:
            raise FrameTruncatedError("frame ends inside a packet")
    if offset != size:
        raise FrameLengthError(f"{size - offset} bytes trail the frame")


def peek_frame(buf: bytes | memoryview) -> FrameHeader:
    """Validate a whole frame and return its header without copying any packet."""
    return FrameHeader(*_validate(buf))


def _common_frame(buf: bytes | memoryview) -> tuple[int, int, int] | None:
    """(flags, burst, seq) of the common frame (one 20 ms packet, no redundancy), checked with
    the same rules as _validate in one expression; None for anything else (the general path)."""
    size = len(buf)
    if not HEADER_SIZE + 3 <= size <= MAX_FRAME_BYTES:
        return None
    version, flags, burst, seq, _, units, count = HEADER.unpack_from(buf, 0)
    if (
        count == 1
        and version == VERSION
        and not flags & ~_SINGLE_PACKET_FLAGS
        and units == _UNITS_20MS
        and size == HEADER_SIZE + 2 + ((buf[HEADER_SIZE] << 8) | buf[HEADER_SIZE + 1])
        and size <= HEADER_SIZE + 2 + MAX_PACKET_BYTES
    ):
        return flags, burst, seq
    return None


def frame_burst(buf: bytes | memoryview) -> int:
    """Validate a whole frame and return only its burst id: the relay's per-frame check."""
    common = _common_frame(buf)
    return common[1] if common is not None else _validate(buf)[1]


def frame_audio(buf: bytes) -> tuple[int, int, int, int, list[bytes]]:
    """Validate a whole frame; return (flags, burst, seq, frame_ms, primary packets).

    The recorder's per-frame read: no redundancy, no objects beyond the packets themselves.
    """
    common = _common_frame(buf)
    if common is not None:
        flags, burst, seq = common
        return flags, burst, seq, 20, [buf[HEADER_SIZE + 2 :]]
    flags, burst, seq, _, frame_ms, count = _validate(buf)
    packets = []
    offset = HEADER_SIZE
    for _ in range(count):
        end = offset + 2 + ((buf[offset] << 8) | buf[offset + 1])
        packets.append(buf[offset + 2 : end])
        offset = end
    return flags, burst, seq, frame_ms, packets


def parse_frame(buf: bytes | memoryview) -> VoiceFrame:
    """Parse a frame; raise a :class:`FrameError` subclass on any deviation from the spec."""
    header = peek_frame(buf)
    data = bytes(buf)
    offset = HEADER_SIZE
    packets = []
    for _ in range(header.count):
        length = (data[offset] << 8) | data[offset + 1]
        packets.append(data[offset + 2 : offset + 2 + length])
        offset += 2 + length
    redundant = redundant2 = None
    if header.flags & FLAG_RED:
        length = (data[offset] << 8) | data[offset + 1]
        redundant = data[offset + 2 : offset + 2 + length]
        offset += 2 + length
    if header.flags & FLAG_RED2:
        length = (data[offset] << 8) | data[offset + 1]
        redundant2 = data[offset + 2 : offset + 2 + length]
    return VoiceFrame(
        burst=header.burst,
        seq=header.seq,
        timestamp=header.timestamp,
        frame_ms=header.frame_ms,
        packets=tuple(packets),
        start=header.start,
        end=header.end,
        fec=bool(header.flags & FLAG_FEC),
        redundant=redundant,
        redundant2=redundant2,
    )


def encode_frame(frame: VoiceFrame) -> bytes:
    """Encode a frame; raise :class:`FrameError` if it could not be parsed back."""
    units = _MS_TO_UNITS.get(frame.frame_ms)
    if units is None:
        raise FrameLengthError(f"frame duration {frame.frame_ms} ms is not 10/20/40/60")
    if not 0 <= frame.burst <= 0xFFFF or not 0 <= frame.seq <= 0xFFFF:
        raise FrameLengthError("burst id and sequence number are 16-bit")
    parts = [
        HEADER.pack(
            VERSION,
            frame.flags,
            frame.burst,
            frame.seq,
            frame.timestamp & 0xFFFFFFFF,
            units,
            len(frame.packets),
        )
    ]
    blocks = list(frame.packets)
    if frame.redundant is not None:
        blocks.append(frame.redundant)
    if frame.redundant2 is not None:
        blocks.append(frame.redundant2)
    for packet in blocks:
        if not 1 <= len(packet) <= MAX_PACKET_BYTES:
            raise FrameLengthError(f"packet length {len(packet)} outside 1-{MAX_PACKET_BYTES}")
        parts.append(len(packet).to_bytes(2, "big"))
        parts.append(packet)
    data = b"".join(parts)
    _validate(data)
    return data


def samples_per_message(frame_ms: int, count: int) -> int:
    """48 kHz timestamp increment for a message of `count` packets of `frame_ms`."""
    return SAMPLE_RATE * frame_ms * count // 1000
