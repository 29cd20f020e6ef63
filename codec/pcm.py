"""PCM helpers: WAV bytes in/out, resampling, per-frame level (dBFS) for meters.

Everything works on mono int16 numpy arrays and on bytes, never on files, so it stays pure.
"""

from __future__ import annotations

import io
import math
import wave
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from codec.errors import PcmError

Pcm16 = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float64]

SILENCE_DBFS = -100.0  # the level reported for digital silence (log of zero)
_FULL_SCALE = 32768.0
_ZERO_CROSSINGS = 16  # half-length of the resampling filter, in zero crossings of the sinc
_KAISER_BETA = 8.6  # ~80 dB stop-band attenuation
_ROLLOFF = 0.94  # cut-off as a fraction of the lower Nyquist: keeps the transition band clean
_BLOCK = 8192  # output samples per vectorised resampling block (bounds memory)


@dataclass(frozen=True, slots=True)
class Pcm:
    """Mono 16-bit audio."""

    samples: Pcm16
    rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate


def read_wav(data: bytes) -> Pcm:
    """Parse a PCM WAV file given as bytes; stereo is averaged to mono, 8/24/32-bit become 16."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise PcmError(f"not a PCM WAV file: {exc}") from exc
    if rate <= 0 or channels <= 0:
        raise PcmError(f"bad WAV header: {channels} channels at {rate} Hz")
    usable = len(frames) - len(frames) % (width * channels)
    raw = frames[:usable]
    if width == 1:
        wide = (np.frombuffer(raw, np.uint8).astype(np.int32) - 128) << 8
    elif width == 2:
        wide = np.frombuffer(raw, "<i2").astype(np.int32)
    elif width == 3:
        triples = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        value = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        wide = np.where(value & 0x800000, value - (1 << 24), value) >> 8
    elif width == 4:
        wide = np.frombuffer(raw, "<i4").astype(np.int64).__rshift__(16).astype(np.int32)
    else:
        raise PcmError(f"unsupported sample width {width} bytes")
    if channels > 1:
        wide = wide.reshape(-1, channels).mean(axis=1).astype(np.int32)
    return Pcm(np.clip(wide, -32768, 32767).astype(np.int16), rate)


def write_wav(samples: Pcm16, rate: int) -> bytes:
    """Mono 16-bit WAV file as bytes."""
    _check_pcm(samples)
    if rate <= 0:
        raise PcmError(f"bad sample rate {rate}")
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    return out.getvalue()


def to_int16(signal: npt.NDArray[np.floating] | FloatArray) -> Pcm16:
    """Round and saturate a float signal in int16 units."""
    return np.clip(np.rint(signal), -32768, 32767).astype(np.int16)


@lru_cache(maxsize=16)
def _polyphase_bank(up: int, down: int) -> tuple[FloatArray, int]:
    """Filter taps arranged as bank[phase, k]; returns (bank, K) with k in [-K, K]."""
    widest = max(up, down)
    half = _ZERO_CROSSINGS * widest  # half-length in the up-sampled domain
    taps_each_side = half // up + 1
    ks = np.arange(-taps_each_side, taps_each_side + 1)
    phases = np.arange(up)
    t = phases[:, None] + ks[None, :] * up  # position in the up-sampled domain
    cutoff = _ROLLOFF / widest  # relative to the up-sampled Nyquist
    inside = np.abs(t) <= half
    window = np.zeros(t.shape)
    window[inside] = np.kaiser(2 * half + 1, _KAISER_BETA)[t[inside] + half]
    bank = up * cutoff * np.sinc(cutoff * t) * window
    return bank, taps_each_side


def resample(samples: Pcm16, from_rate: int, to_rate: int) -> Pcm16:
    """Band-limited resampling between any two integer rates (e.g. 8/16/48 kHz, 22.05 kHz).

    Polyphase windowed-sinc; output length is ceil(len * to_rate / from_rate).
    """
    _check_pcm(samples)
    if from_rate <= 0 or to_rate <= 0:
        raise PcmError(f"bad rates {from_rate} -> {to_rate}")
    if from_rate == to_rate or len(samples) == 0:
        return samples.copy()
    common = math.gcd(from_rate, to_rate)
    up, down = to_rate // common, from_rate // common
    bank, k_max = _polyphase_bank(up, down)
    n_out = -(-len(samples) * up // down)
    padded = np.concatenate([np.zeros(k_max), samples.astype(np.float64), np.zeros(k_max + 1)])
    ks = np.arange(-k_max, k_max + 1)
    out = np.empty(n_out)
    for start in range(0, n_out, _BLOCK):
        n = np.arange(start, min(start + _BLOCK, n_out))
        pos = n * down
        base, phase = pos // up, pos % up
        # y[n] = sum_k x[base - k] * h[phase + k*up]; padded index shifts by k_max.
        idx = base[:, None] - ks[None, :] + k_max
        out[start : start + len(n)] = np.einsum("ij,ij->i", padded[idx], bank[phase])
    return to_int16(out)


def level_dbfs(samples: Pcm16) -> float:
    """RMS level relative to a full-scale square wave; SILENCE_DBFS for silence or no samples."""
    _check_pcm(samples)
    if len(samples) == 0:
        return SILENCE_DBFS
    rms = math.sqrt(float(np.mean(np.square(samples, dtype=np.float64))))
    if rms <= 0.0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 20.0 * math.log10(rms / _FULL_SCALE))


def frame_levels_dbfs(samples: Pcm16, rate: int, frame_ms: int = 20) -> FloatArray:
    """Level per frame (a trailing partial frame is measured too), for level meters."""
    _check_pcm(samples)
    size = rate * frame_ms // 1000
    if size <= 0:
        raise PcmError(f"frame of {frame_ms} ms at {rate} Hz has no samples")
    count = -(-len(samples) // size)
    padded = np.zeros(count * size, dtype=np.float64)
    padded[: len(samples)] = samples
    frames = padded.reshape(count, size)
    lengths = np.full(count, size, dtype=np.float64)
    if count and len(samples) % size:
        lengths[-1] = len(samples) % size
    power = np.square(frames).sum(axis=1) / lengths
    with np.errstate(divide="ignore"):
        levels = 10.0 * np.log10(power / (_FULL_SCALE * _FULL_SCALE))
    floored: FloatArray = np.maximum(levels, SILENCE_DBFS)
    return floored


def frames_of(samples: Pcm16, frame_samples: int) -> list[Pcm16]:
    """Split into whole frames, zero-padding the last one (what an encoder needs)."""
    _check_pcm(samples)
    if frame_samples <= 0:
        raise PcmError("frame size must be positive")
    count = -(-len(samples) // frame_samples)
    padded = np.zeros(count * frame_samples, dtype=np.int16)
    padded[: len(samples)] = samples
    return list(padded.reshape(count, frame_samples))


def _check_pcm(samples: object) -> None:
    if not isinstance(samples, np.ndarray) or samples.dtype != np.int16 or samples.ndim != 1:
        raise PcmError("PCM must be a 1-D int16 numpy array")
