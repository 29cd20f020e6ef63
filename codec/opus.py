"""Opus encoder and decoder on opuslib (libopus from Debian's libopus0).

opuslib 3.0.1 has three defects this module works around, each proven by a test in
tests/codec/test_opus.py:

- ``Encoder.inband_fec = 1`` raises TypeError (its setter forgets the value), so FEC is set through
  opuslib's low-level ``encoder_ctl(state, ctl.set_inband_fec, value)``;
- ``Encoder.dtx`` is not a property at all (assigning it only creates a Python attribute), so DTX
  is set through ``encoder_ctl(state, ctl.set_dtx, value)``;
- ``Decoder.decode(None, ...)`` fails on ``len(None)``; concealment (PLC) passes empty bytes with
  length 0, which libopus treats exactly like a NULL packet.

The hot paths call opuslib's own ctypes bindings (``libopus_encode`` / ``libopus_decode``) with
buffers allocated once per codec, instead of the high-level classes which allocate and convert
through ``array`` on every call.

Re-encoding (:meth:`OpusEncoder.mark` / :meth:`OpusEncoder.reencode`) copies the encoder state
byte for byte into a scratch encoder. libopus keeps an encoder in one block of
``opus_encoder_get_size()`` bytes that callers may allocate themselves (``opus_encoder_init``),
with internal offsets rather than pointers; tests/codec/test_opus.py proves that a copy encodes
exactly like the original and that using it leaves the original untouched.
"""

from __future__ import annotations

import ctypes
import weakref
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import opuslib
import opuslib.api
import opuslib.api.ctl as opus_ctl
import opuslib.api.decoder as opus_dec
import opuslib.api.encoder as opus_enc

from codec.errors import CodecConfigError, OpusCodecError, OpusPacketError

Pcm16 = npt.NDArray[np.int16]

SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)
FRAME_DURATIONS_MS = (10, 20, 40, 60)
BITRATE_MIN = 8000
BITRATE_MAX = 32000
MAX_PACKET_BYTES = 1275
OPUS_CLOCK = 48_000  # every Opus timestamp and Ogg granule counts 48 kHz samples

# opus_defines.h request numbers opuslib 3.0.1 does not name.
_GET_IN_DTX_REQUEST = 4049
_get_in_dtx = opus_ctl.get(_GET_IN_DTX_REQUEST, ctypes.c_int)

_OPUS_OK = 0


@dataclass(frozen=True, slots=True)
class EncoderSettings:
    """Encoder configuration. Application is always VOIP (speech-tuned, with LBRR support)."""

    sample_rate: int = 16000
    bitrate: int = 16000
    complexity: int = 9
    expected_loss_pct: int = 0
    inband_fec: bool = False
    dtx: bool = False
    frame_ms: int = 20
    vbr: bool = True

    def __post_init__(self) -> None:
        if self.sample_rate not in SAMPLE_RATES:
            raise CodecConfigError(f"sample rate {self.sample_rate} is not one of {SAMPLE_RATES}")
        if not BITRATE_MIN <= self.bitrate <= BITRATE_MAX:
            raise CodecConfigError(
                f"bitrate {self.bitrate} outside {BITRATE_MIN}-{BITRATE_MAX} bit/s"
            )
        if not 0 <= self.complexity <= 10:
            raise CodecConfigError(f"complexity {self.complexity} outside 0-10")
        if not 0 <= self.expected_loss_pct <= 100:
            raise CodecConfigError(f"expected loss {self.expected_loss_pct}% outside 0-100")
        if self.frame_ms not in FRAME_DURATIONS_MS:
            raise CodecConfigError(f"frame duration {self.frame_ms} ms not in {FRAME_DURATIONS_MS}")

    @property
    def frame_samples(self) -> int:
        return self.sample_rate * self.frame_ms // 1000


@dataclass(frozen=True, slots=True)
class EncoderReadback:
    """What libopus itself reports for each setting (proof that a setting took effect)."""

    bitrate: int
    complexity: int
    expected_loss_pct: int
    inband_fec: bool
    dtx: bool
    vbr: bool
    application: int
    lookahead: int


def _ctl_or_raise(ctl: Any, state: Any, request: Any, value: int | None = None) -> Any:
    try:
        return ctl(state, request, value)
    except opuslib.OpusError as exc:
        raise OpusCodecError(f"opus ctl failed: {exc}") from exc


def _finalize_state(destroy: Any, state: Any) -> None:
    destroy(state)


def _address(state: Any) -> int:
    address = ctypes.cast(state, ctypes.c_void_p).value
    if address is None:
        raise OpusCodecError("encoder state is a null pointer")
    return address


class OpusEncoder:
    """One mono Opus VOIP encoder. Not thread-safe (nothing in codec/ is)."""

    def __init__(self, settings: EncoderSettings | None = None) -> None:
        self._settings = settings or EncoderSettings()
        try:
            self._state = opus_enc.create_state(
                self._settings.sample_rate, 1, opuslib.APPLICATION_VOIP
            )
        except opuslib.OpusError as exc:
            raise OpusCodecError(f"cannot create encoder: {exc}") from exc
        self._finalizer = weakref.finalize(self, _finalize_state, opus_enc.destroy, self._state)
        self._out = ctypes.create_string_buffer(MAX_PACKET_BYTES)
        self._in = (ctypes.c_int16 * (self._settings.sample_rate * 60 // 1000))()
        self._in_view: Pcm16 = np.frombuffer(memoryview(self._in), dtype=np.int16)
        self._encode = opus_enc.libopus_encode
        self._apply(self._settings, first=True)
        self._scratch: Any = None  # encoder state copied by mark(), for reencode()
        self._marked = False

    @property
    def settings(self) -> EncoderSettings:
        return self._settings

    @property
    def frame_samples(self) -> int:
        return self._settings.frame_samples

    def configure(self, settings: EncoderSettings) -> None:
        """Change settings between frames (the sample rate is fixed for an encoder's life)."""
        if settings.sample_rate != self._settings.sample_rate:
            raise CodecConfigError("the sample rate of an existing encoder cannot change")
        self._apply(settings, first=False)

    def update(self, **changes: Any) -> None:
        """`configure` with only some fields changed, e.g. ``update(bitrate=24000)``."""
        self.configure(replace(self._settings, **changes))

    def _apply(self, new: EncoderSettings, first: bool) -> None:
        old = self._settings
        ctl = opus_enc.encoder_ctl
        state = self._state
        if first or new.bitrate != old.bitrate:
            _ctl_or_raise(ctl, state, opus_ctl.set_bitrate, new.bitrate)
        if first or new.complexity != old.complexity:
            _ctl_or_raise(ctl, state, opus_ctl.set_complexity, new.complexity)
        if first or new.expected_loss_pct != old.expected_loss_pct:
            _ctl_or_raise(ctl, state, opus_ctl.set_packet_loss_perc, new.expected_loss_pct)
        if first or new.inband_fec != old.inband_fec:
            # opuslib's `inband_fec` property setter drops the value (TypeError): use the ctl.
            _ctl_or_raise(ctl, state, opus_ctl.set_inband_fec, int(new.inband_fec))
        if first or new.dtx != old.dtx:
            # opuslib has no working `dtx` property: use the ctl.
            _ctl_or_raise(ctl, state, opus_ctl.set_dtx, int(new.dtx))
        if first or new.vbr != old.vbr:
            _ctl_or_raise(ctl, state, opus_ctl.set_vbr, int(new.vbr))
        if first:
            _ctl_or_raise(ctl, state, opus_ctl.set_signal, opuslib.SIGNAL_VOICE)
        self._settings = new

    def readback(self) -> EncoderReadback:
        """Query libopus for every setting (not our cached copy)."""
        ctl = opus_enc.encoder_ctl
        state = self._state
        return EncoderReadback(
            bitrate=int(_ctl_or_raise(ctl, state, opus_ctl.get_bitrate)),
            complexity=int(_ctl_or_raise(ctl, state, opus_ctl.get_complexity)),
            expected_loss_pct=int(_ctl_or_raise(ctl, state, opus_ctl.get_packet_loss_perc)),
            inband_fec=bool(_ctl_or_raise(ctl, state, opus_ctl.get_inband_fec)),
            dtx=bool(_ctl_or_raise(ctl, state, opus_ctl.get_dtx)),
            vbr=bool(_ctl_or_raise(ctl, state, opus_ctl.get_vbr)),
            application=int(_ctl_or_raise(ctl, state, opus_ctl.get_application)),
            lookahead=int(_ctl_or_raise(ctl, state, opus_ctl.get_lookahead)),
        )

    @property
    def lookahead(self) -> int:
        """Encoder delay in samples at the input rate."""
        return int(_ctl_or_raise(opus_enc.encoder_ctl, self._state, opus_ctl.get_lookahead))

    @property
    def pre_skip(self) -> int:
        """Samples at 48 kHz a decoder must discard (RFC 7845 OpusHead pre-skip)."""
        return self.lookahead * OPUS_CLOCK // self._settings.sample_rate

    @property
    def in_dtx(self) -> bool:
        """True while the last frame was a DTX (not-to-be-transmitted) frame."""
        return bool(_ctl_or_raise(opus_enc.encoder_ctl, self._state, _get_in_dtx))

    def reset(self) -> None:
        _ctl_or_raise(opus_enc.encoder_ctl, self._state, opus_ctl.reset_state)
        self._marked = False

    def encode(self, pcm: Pcm16 | bytes) -> bytes:
        """Encode exactly one frame (`frame_samples` mono int16 samples) to one Opus packet."""
        samples = self._load(pcm)
        return self._encode_loaded(self._state, samples)

    def mark(self) -> None:
        """Remember the current state, so the next frame can also be coded differently."""
        if self._scratch is None:
            try:
                self._scratch = opus_enc.create_state(
                    self._settings.sample_rate, 1, opuslib.APPLICATION_VOIP
                )
            except opuslib.OpusError as exc:
                raise OpusCodecError(f"cannot create scratch encoder: {exc}") from exc
            # The finalize registry keeps the finalizer alive; nothing to store.
            weakref.finalize(self, _finalize_state, opus_enc.destroy, self._scratch)
        size = opus_enc.libopus_get_size(1)
        ctypes.memmove(_address(self._scratch), _address(self._state), size)
        self._marked = True

    def reencode(self, pcm: Pcm16 | bytes, bitrate: int) -> bytes:
        """The frame after :meth:`mark`, coded from the marked state at `bitrate`, no FEC.

        The live state is not touched. A receiver that decoded everything before that frame
        can decode the result in its place (a low-bitrate redundant copy that fits its decoder
        state). Only one re-encoding per mark.
        """
        if not self._marked:
            raise CodecConfigError("reencode() needs a mark() before the frame")
        if not BITRATE_MIN <= bitrate <= BITRATE_MAX:
            raise CodecConfigError(f"bitrate {bitrate} outside {BITRATE_MIN}-{BITRATE_MAX} bit/s")
        self._marked = False
        ctl = opus_enc.encoder_ctl
        _ctl_or_raise(ctl, self._scratch, opus_ctl.set_bitrate, bitrate)
        _ctl_or_raise(ctl, self._scratch, opus_ctl.set_inband_fec, 0)
        _ctl_or_raise(ctl, self._scratch, opus_ctl.set_packet_loss_perc, 0)
        samples = self._load(pcm)
        return self._encode_loaded(self._scratch, samples)

    def _load(self, pcm: Pcm16 | bytes) -> int:
        samples = self._settings.frame_samples
        if isinstance(pcm, np.ndarray):
            if pcm.dtype != np.int16 or pcm.shape != (samples,):
                raise CodecConfigError(f"need {samples} int16 samples, got {pcm.dtype} {pcm.shape}")
            self._in_view[:samples] = pcm
        else:
            if len(pcm) != 2 * samples:
                raise CodecConfigError(f"need {2 * samples} bytes of PCM, got {len(pcm)}")
            ctypes.memmove(self._in, pcm, len(pcm))
        return samples

    def _encode_loaded(self, state: Any, samples: int) -> bytes:
        length = self._encode(state, self._in, samples, self._out, MAX_PACKET_BYTES)
        if length < 0:
            raise OpusCodecError(f"opus_encode failed ({length})", length)
        return ctypes.string_at(self._out, length)


class OpusDecoder:
    """One mono Opus decoder producing int16 PCM at `sample_rate`."""

    def __init__(self, sample_rate: int = 16000) -> None:
        if sample_rate not in SAMPLE_RATES:
            raise CodecConfigError(f"sample rate {sample_rate} is not one of {SAMPLE_RATES}")
        self.sample_rate = sample_rate
        try:
            self._state = opus_dec.create_state(sample_rate, 1)
        except opuslib.OpusError as exc:
            raise OpusCodecError(f"cannot create decoder: {exc}") from exc
        self._finalizer = weakref.finalize(self, _finalize_state, opus_dec.destroy, self._state)
        self._max_samples = sample_rate * 120 // 1000  # the longest Opus packet
        self._pcm = (ctypes.c_int16 * self._max_samples)()
        self._pcm_view: Pcm16 = np.frombuffer(memoryview(self._pcm), dtype=np.int16)
        self._decode = opus_dec.libopus_decode

    def samples_for(self, duration_48k: int) -> int:
        """Convert a 48 kHz duration to samples at this decoder's rate."""
        return duration_48k * self.sample_rate // OPUS_CLOCK

    def decode(self, packet: bytes) -> Pcm16:
        """Decode one packet (all its frames)."""
        if not packet:
            raise OpusPacketError("an empty packet cannot be decoded; use conceal()")
        count = self._decode(self._state, packet, len(packet), self._pcm, self._max_samples, 0)
        if count < 0:
            raise OpusCodecError(f"opus_decode failed ({count}) on {len(packet)} bytes", count)
        return self._pcm_view[:count].copy()

    def decode_fec(self, next_packet: bytes, samples: int) -> Pcm16:
        """Recover the frame *before* `next_packet` from its in-band FEC (LBRR) data.

        `samples` is the lost frame's length at this decoder's rate. Without LBRR in
        `next_packet`, libopus conceals instead. Decode `next_packet` normally afterwards.
        """
        self._check_span(samples)
        count = self._decode(self._state, next_packet, len(next_packet), self._pcm, samples, 1)
        if count < 0:
            raise OpusCodecError(f"FEC decode failed ({count})", count)
        return self._pcm_view[:count].copy()

    def conceal(self, samples: int) -> Pcm16:
        """Packet-loss concealment for `samples` (a multiple of 2.5 ms)."""
        self._check_span(samples)
        # opuslib's decode(None) fails on len(None); empty bytes with length 0 is libopus' PLC.
        count = self._decode(self._state, b"", 0, self._pcm, samples, 0)
        if count < 0:
            raise OpusCodecError(f"concealment failed ({count})", count)
        return self._pcm_view[:count].copy()

    def reset(self) -> None:
        _ctl_or_raise(opus_dec.decoder_ctl, self._state, opus_ctl.reset_state)

    def _check_span(self, samples: int) -> None:
        quantum = self.sample_rate // 400  # 2.5 ms
        if samples <= 0 or samples % quantum or samples > self._max_samples:
            raise CodecConfigError(f"{samples} samples is not a multiple of 2.5 ms up to 120 ms")


# RFC 6716 §3.1: frame size (48 kHz samples) for each TOC configuration number.
_SILK = (480, 960, 1920, 2880)
_HYBRID = (480, 960)
_CELT = (120, 240, 480, 960)
_CONFIG_FRAME_SAMPLES = (
    _SILK * 3 + _HYBRID * 2 + _CELT * 4  # configs 0-11 SILK, 12-15 hybrid, 16-31 CELT
)


# 48 kHz samples of a packet by TOC byte for codes 0-2; 0 for code 3 (its count byte decides).
TOC_SAMPLES = tuple(
    0 if toc & 3 == 3 else _CONFIG_FRAME_SAMPLES[toc >> 3] * (1 if toc & 3 == 0 else 2)
    for toc in range(256)
)


def packet_duration(packet: bytes) -> int:
    """Duration of an Opus packet in 48 kHz samples, from its TOC byte alone (no decoder)."""
    if not packet:
        raise OpusPacketError("empty packet")
    toc = packet[0]
    frame = _CONFIG_FRAME_SAMPLES[toc >> 3]
    code = toc & 0x03
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        if len(packet) < 2:
            raise OpusPacketError("code-3 packet without a frame-count byte")
        count = packet[1] & 0x3F
        if count == 0:
            raise OpusPacketError("code-3 packet with zero frames")
    total = frame * count
    if total > 5760:
        raise OpusPacketError(f"packet lasts {total / 48:.1f} ms, over Opus' 120 ms")
    return total


def silence_packet(duration_48k: int) -> bytes:
    """A packet of zero-length SILK-WB frames: decoders conceal it (gap filler, RFC 6716 §3.2.1).

    Used to keep Ogg granule positions continuous across gaps. `duration_48k` must be a positive
    multiple of 20 ms up to 120 ms.
    """
    if duration_48k <= 0 or duration_48k % 960 or duration_48k > 5760:
        raise CodecConfigError("silence packets are 20-120 ms in 20 ms steps")
    frames = duration_48k // 960
    toc_wb_20ms = 9 << 3
    if frames == 1:
        return bytes([toc_wb_20ms])
    # Code 3, CBR: the frame count byte, then nothing: every frame is 0 bytes long.
    return bytes([toc_wb_20ms | 0x03, frames])
