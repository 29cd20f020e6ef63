"""Exception hierarchy of the voice pipeline (everything in codec/ except the wire frame).

`codec.frame.FrameError` predates this module and stays a plain ValueError; every other codec
error derives from :class:`CodecError` so a caller can catch the whole pipeline at once.
"""

from __future__ import annotations


class CodecError(Exception):
    """Base class of voice-pipeline errors."""


class CodecConfigError(CodecError, ValueError):
    """A setting is out of range or inconsistent (bitrate, sample rate, frame duration...)."""


class OpusCodecError(CodecError):
    """libopus refused an operation (bad packet, bad state); `code` is libopus' error number."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class OpusPacketError(OpusCodecError, ValueError):
    """An Opus packet whose TOC/frame-count bytes are malformed (RFC 6716 §3)."""


class PcmError(CodecError, ValueError):
    """PCM or WAV data that cannot be used (wrong shape, unsupported format, truncated)."""


class OggError(CodecError, ValueError):
    """An Ogg Opus stream that does not follow RFC 3533 / RFC 7845."""


class OggTruncatedError(OggError):
    """The stream stops inside a page (a recording cut short by a crash)."""


class ReportError(CodecError, ValueError):
    """A receiver report (`rr`) message with missing or invalid fields (docs/protocol.md §9)."""


class QualityError(CodecError, ValueError):
    """The quality evaluation was asked for something it cannot do."""
