"""PCM helpers: WAV bytes round trip, resampling accuracy, levels."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from codec.errors import PcmError
from codec.pcm import (
    SILENCE_DBFS,
    frame_levels_dbfs,
    frames_of,
    level_dbfs,
    read_wav,
    resample,
    to_int16,
    write_wav,
)


def tone(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 10000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return to_int16(amplitude * np.sin(2 * np.pi * freq * t))


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def test_wav_round_trip() -> None:
    samples = tone(440, 16000)
    pcm = read_wav(write_wav(samples, 16000))
    assert pcm.rate == 16000
    assert np.array_equal(pcm.samples, samples)
    assert pcm.duration_s == pytest.approx(1.0)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_wav_widths_and_stereo_become_mono_16_bit(width: int) -> None:
    left = tone(300, 8000, 0.1)
    stereo = np.stack([left, left], axis=1).astype(np.int32)
    if width == 1:
        raw = ((stereo >> 8) + 128).astype(np.uint8).tobytes()
    elif width == 2:
        raw = stereo.astype("<i2").tobytes()
    elif width == 3:
        wide = (stereo.astype(np.int64) << 8).reshape(-1)
        raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in wide)
    else:
        raw = (stereo.astype(np.int64) << 16).astype("<i4").tobytes()
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(width)
        wav.setframerate(8000)
        wav.writeframes(raw)
    pcm = read_wav(out.getvalue())
    tolerance = 256 if width == 1 else 1
    assert np.abs(pcm.samples.astype(np.int32) - left).max() <= tolerance


def test_bad_wav_rejected() -> None:
    with pytest.raises(PcmError):
        read_wav(b"RIFF\x00\x00not a wave file")
    with pytest.raises(PcmError):
        write_wav(np.zeros(10, dtype=np.float32), 16000)


@pytest.mark.parametrize(
    ("src", "dst", "freq"),
    [
        (16000, 48000, 1000),
        (48000, 16000, 3000),
        (16000, 8000, 1000),
        (8000, 16000, 500),
        (8000, 48000, 700),
        (22050, 16000, 1500),
    ],
)
def test_resample_keeps_frequency_and_level(src: int, dst: int, freq: float) -> None:
    samples = tone(freq, src)
    out = resample(samples, src, dst)
    assert len(out) == -(-len(samples) * dst // src)
    assert dominant_hz(out, dst) == pytest.approx(freq, abs=2.0)
    middle = slice(len(out) // 10, -len(out) // 10)  # skip the filter's edges
    assert level_dbfs(out[middle]) == pytest.approx(level_dbfs(samples), abs=0.2)


def test_downsampling_removes_what_cannot_be_represented() -> None:
    above_nyquist = tone(6000, 16000)  # 8 kHz output cannot carry 6 kHz
    assert level_dbfs(resample(above_nyquist, 16000, 8000)) < -60


def test_levels() -> None:
    assert level_dbfs(np.zeros(160, dtype=np.int16)) == SILENCE_DBFS
    assert level_dbfs(np.zeros(0, dtype=np.int16)) == SILENCE_DBFS
    full_square = np.array([32767, -32768] * 80, dtype=np.int16)
    assert level_dbfs(full_square) == pytest.approx(0.0, abs=0.01)
    sine = tone(1000, 16000, amplitude=32767)
    assert level_dbfs(sine) == pytest.approx(-3.01, abs=0.05)
    quiet_then_loud = np.concatenate([np.zeros(320, np.int16), sine[:330]])
    levels = frame_levels_dbfs(quiet_then_loud, 16000, 20)
    assert len(levels) == 3  # two whole frames and a partial one
    assert levels[0] == SILENCE_DBFS
    assert levels[1] == pytest.approx(-3.01, abs=0.1)
    assert levels[2] == pytest.approx(-3.01, abs=1.0)


def test_frames_of_pads_the_last_frame() -> None:
    frames = frames_of(np.arange(700, dtype=np.int16), 320)
    assert [len(f) for f in frames] == [320, 320, 320]
    assert frames[2][60:].max() == 0
    with pytest.raises(PcmError):
        frames_of(np.zeros(10, dtype=np.int16), 0)
