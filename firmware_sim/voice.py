"""Talking: burst lengths, real speech (espeak-ng or WAV files) encoded with Opus, paced sending.

Speech is synthesised once per process into a *reel* of 20 ms Opus packets (phrases with pauses
between them); every burst plays a slice of the reel, so a thousand simulated talkers cost no
encoding at run time. :class:`BurstSender` is sans-I/O: it says which voice frames are due at a
given time — a message is sent once all of its audio has been "spoken" (real-time pace).

Each burst's 48 kHz frame timestamp starts at the wall clock of the moment capture began (in
48 kHz ticks, modulo 2^32; the protocol leaves the origin to the sender). A receiver on the same
host can then tell, from any frame, when its audio entered the talker's microphone: that is how
the simulator measures mouth-to-ear delay without a side channel, also across processes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import random
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codec.errors import CodecError
from codec.frame import VoiceFrame
from codec.opus import OPUS_CLOCK, EncoderSettings, OpusEncoder, Pcm16
from codec.pcm import read_wav, resample
from devices.voice import VoiceSession
from firmware_sim.errors import AudioError, SimError

TS_MOD = 1 << 32
SPEECH_RATE = 16000
PACKET_MS = 20
BURST_MEAN_S = 4.7  # mean talk burst in public-safety PTT call logs
PHRASES = (
    ("en-us", "Control, unit seven. On scene at the Minsheng compound gate."),
    ("en-us", "Copy that. Two volunteers are heading to the basketball court."),
    ("cmn", "收到，我们正在前往七里亭社区。"),
    ("en-us", "Traffic is clear on Fengxi road, continuing the patrol."),
    ("cmn", "凤西村一切正常，继续巡逻。"),
    ("en-us", "Request an ambulance to the Science City service station."),
)


@dataclass(frozen=True, slots=True)
class BurstLengths:
    """Talk-burst durations: log-normal with the given mean, clipped to [low, high] seconds."""

    mean_s: float = BURST_MEAN_S
    sigma: float = 0.55
    low_s: float = 0.6
    high_s: float = 25.0

    def __post_init__(self) -> None:
        if self.mean_s <= 0 or self.sigma < 0 or not 0 < self.low_s < self.high_s:
            raise SimError("burst lengths need mean > 0, sigma >= 0 and 0 < low < high")

    def draw(self, rng: random.Random) -> float:
        mu = math.log(self.mean_s) - self.sigma**2 / 2  # so that E[X] = mean_s before clipping
        return min(self.high_s, max(self.low_s, rng.lognormvariate(mu, self.sigma)))


def synthesize(text: str, voice: str = "en-us", rate: int = SPEECH_RATE) -> Pcm16:
    """Speak `text` with espeak-ng; mono int16 PCM at `rate`."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise AudioError("espeak-ng is not installed (apt-get install espeak-ng); use --wav")
    try:
        wav = subprocess.run(
            [exe, "-v", voice, "-s", "165", "--stdout", text],
            check=True,
            capture_output=True,
            timeout=20,
        ).stdout
        pcm = read_wav(wav)
    except (subprocess.SubprocessError, OSError, CodecError) as exc:
        raise AudioError(f"espeak-ng failed on {text!r}: {exc}") from exc
    return resample(pcm.samples, pcm.rate, rate) if pcm.rate != rate else pcm.samples


def load_wav(path: Path, rate: int = SPEECH_RATE) -> Pcm16:
    try:
        pcm = read_wav(path.read_bytes())
    except (OSError, CodecError) as exc:
        raise AudioError(f"cannot use {path} as speech: {exc}") from exc
    return resample(pcm.samples, pcm.rate, rate) if pcm.rate != rate else pcm.samples


@dataclass(frozen=True, slots=True)
class SpeechReel:
    """A loop of 20 ms Opus packets of speech (and the PCM it came from)."""

    packets: tuple[bytes, ...]
    pcm: Pcm16

    @property
    def seconds(self) -> float:
        return len(self.packets) * PACKET_MS / 1000.0


def encode_reel(clips: Sequence[Pcm16], pause_s: float = 0.4, bitrate: int = 16000) -> SpeechReel:
    """Concatenate clips with pauses and encode them into 20 ms packets."""
    if not clips:
        raise AudioError("no speech to encode")
    gap = np.zeros(int(pause_s * SPEECH_RATE), dtype=np.int16)
    pcm = np.concatenate([part for clip in clips for part in (clip, gap)])
    size = SPEECH_RATE * PACKET_MS // 1000
    pcm = np.concatenate([pcm, np.zeros((-len(pcm)) % size, dtype=np.int16)])
    encoder = OpusEncoder(EncoderSettings(sample_rate=SPEECH_RATE, bitrate=bitrate))
    packets = tuple(encoder.encode(pcm[i : i + size]) for i in range(0, len(pcm), size))
    return SpeechReel(packets, pcm)


def cache_dir() -> Path:
    """Where synthesised reels are kept between runs (XIXIN_CACHE_DIR, else ~/.cache/xixin)."""
    base = os.environ.get("XIXIN_CACHE_DIR")
    return Path(base) if base else Path.home() / ".cache" / "xixin"


def save_reel(reel: SpeechReel, path: Path) -> None:
    lengths = np.array([len(p) for p in reel.packets], dtype=np.int32)
    blob = np.frombuffer(b"".join(reel.packets), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(temp, lengths=lengths, blob=blob, pcm=reel.pcm)
    os.replace(temp, path)


def load_reel(path: Path) -> SpeechReel:
    with np.load(path) as data:
        lengths, blob, pcm = data["lengths"], data["blob"].tobytes(), data["pcm"]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    packets = tuple(blob[offsets[i] : offsets[i + 1]] for i in range(len(lengths)))
    return SpeechReel(packets, pcm.astype(np.int16))


@functools.cache
def phrase_reel() -> SpeechReel:
    """The shared reel of espeak-ng phrases: built once, then read from the cache directory."""
    key = hashlib.sha256(repr((PHRASES, SPEECH_RATE, PACKET_MS, 16000)).encode()).hexdigest()
    path = cache_dir() / f"reel-{key[:16]}.npz"
    try:
        return load_reel(path)
    except (OSError, ValueError, KeyError):
        pass  # not cached yet (or unreadable): build it
    reel = encode_reel([synthesize(text, voice) for voice, text in PHRASES])
    with contextlib.suppress(OSError):  # read-only home: synthesise again next time
        save_reel(reel, path)
    return reel


@functools.cache
def tone_reel() -> SpeechReel:
    """A warbling tone (speech-like pitch movement) for when espeak-ng is missing."""
    t = np.arange(2 * SPEECH_RATE) / SPEECH_RATE
    tone = 8000 * np.sin(2 * np.pi * (300 + 80 * np.sin(2 * np.pi * 3 * t)) * t)
    return encode_reel([tone.astype(np.int16)])


@functools.cache
def wav_reel(paths: tuple[Path, ...]) -> SpeechReel:
    return encode_reel([load_wav(p) for p in paths])


def wall_to_ts(wall_s: float) -> int:
    return round(wall_s * OPUS_CLOCK) % TS_MOD


def ts_to_wall(ts: int, now_wall: float) -> float:
    """The wall time a 48 kHz timestamp stands for (the most recent such time before now)."""
    back = (round(now_wall * OPUS_CLOCK) - ts) % TS_MOD
    return now_wall - back / OPUS_CLOCK


class BurstSender:
    """Paces one talk burst: which messages are due at `now` (sans-I/O)."""

    def __init__(self, reel: SpeechReel, packets_per_message: int = 1) -> None:
        if packets_per_message not in (1, 2, 3):
            raise SimError("a message carries 1-3 packets of 20 ms (20-60 ms)")
        self.reel = reel
        self.per_message = packets_per_message
        self.burst: int | None = None
        self._start = 0.0
        self._ts0 = 0
        self._offset = 0
        self._total = 0  # packets in this burst
        self._sent = 0  # packets sent
        self._seq = 0
        self.ended = True

    @property
    def span_s(self) -> float:
        return self.per_message * PACKET_MS / 1000.0

    def start(
        self, burst: int, now: float, wall_s: float, duration_s: float, rng: random.Random
    ) -> None:
        """Capture begins at `now` (monotonic) = `wall_s` (wall clock)."""
        self.burst = burst
        self._start = now
        self._ts0 = wall_to_ts(wall_s)
        self._offset = rng.randrange(len(self.reel.packets))
        self._total = max(self.per_message, int(duration_s * 1000 / PACKET_MS))
        self._sent = 0
        self._seq = 0
        self.ended = False

    @property
    def next_due(self) -> float:
        """When the next message's audio is complete."""
        upto = min(self._total, self._sent + self.per_message)
        return self._start + upto * PACKET_MS / 1000.0

    @property
    def finished_audio(self) -> bool:
        return self._sent >= self._total

    def due(self, now: float) -> list[VoiceFrame]:
        """Messages whose audio has been captured by `now`; the last one carries END."""
        out: list[VoiceFrame] = []
        while not self.ended and self.next_due <= now + 1e-9:
            count = min(self.per_message, self._total - self._sent)
            out.append(self._message(count, end=self._sent + count >= self._total))
        return out

    def stop(self, now: float = 0.0) -> VoiceFrame | None:
        """End early (release / revoke): a bare END marker, or None if already ended."""
        del now
        if self.ended or self.burst is None:
            return None
        return self._message(0, end=True)

    def _message(self, count: int, end: bool) -> VoiceFrame:
        assert self.burst is not None
        n = len(self.reel.packets)
        packets = tuple(
            self.reel.packets[(self._offset + self._sent + i) % n] for i in range(count)
        )
        frame = VoiceFrame(
            burst=self.burst,
            seq=self._seq & 0xFFFF,
            timestamp=(self._ts0 + self._sent * OPUS_CLOCK * PACKET_MS // 1000) % TS_MOD,
            frame_ms=PACKET_MS,
            packets=packets,
            start=self._seq == 0,
            end=end,
        )
        self._seq += 1
        self._sent += count
        if end:
            self.ended = True
        return frame


class LiveBurstSender:
    """Paces one talk burst like :class:`BurstSender`, but encodes the reel's speech at run
    time through a :class:`devices.voice.VoiceSession`: with the loss-adaptive protection that
    the receiver reports forwarded to this terminal ask for (docs/protocol.md §9.3). Each
    message is encoded when its audio has been captured; the burst ends with a bare END."""

    def __init__(self, reel: SpeechReel, voice: VoiceSession) -> None:
        if voice.sample_rate != SPEECH_RATE:
            raise SimError(f"live talkers encode {SPEECH_RATE} Hz speech")
        self.reel = reel
        self.voice = voice
        self.per_message = voice.sender.packets_per_message
        self.burst: int | None = None
        self._start = 0.0
        self._offset = 0  # in packets of the reel
        self._total = 0
        self._sent = 0
        self.ended = True

    @property
    def span_s(self) -> float:
        return self.per_message * PACKET_MS / 1000.0

    def start(
        self, burst: int, now: float, wall_s: float, duration_s: float, rng: random.Random
    ) -> None:
        """Capture begins at `now` (monotonic) = `wall_s` (wall clock)."""
        self.burst = burst
        self._start = now
        self._offset = rng.randrange(len(self.reel.packets))
        self._total = max(self.per_message, int(duration_s * 1000 / PACKET_MS))
        self._sent = 0
        self.ended = False
        self.voice.start_talk(burst, now, timestamp=wall_to_ts(wall_s))

    @property
    def next_due(self) -> float:
        upto = min(self._total, self._sent + self.per_message)
        return self._start + upto * PACKET_MS / 1000.0

    @property
    def finished_audio(self) -> bool:
        return self._sent >= self._total

    def due(self, now: float) -> list[VoiceFrame]:
        """Messages whose audio has been captured by `now`; then the END marker."""
        out: list[VoiceFrame] = []
        size = SPEECH_RATE * PACKET_MS // 1000
        pcm, n = self.reel.pcm, len(self.reel.packets)
        while not self.ended and self.next_due <= now + 1e-9:
            at = self.next_due
            count = min(self.per_message, self._total - self._sent)
            first = (self._offset + self._sent) % n
            index = [(first + i) % n for i in range(count)]
            chunk = np.concatenate([pcm[i * size : (i + 1) * size] for i in index])
            self._sent += count
            out += self.voice.talk(chunk, at)
            if self._sent >= self._total:
                end = self.stop(at)
                if end is not None:
                    out.append(end)
        return out

    def stop(self, now: float = 0.0) -> VoiceFrame | None:
        """End (release / revoke / all said): the last message, or None if already ended."""
        if self.ended or self.burst is None:
            return None
        self.ended = True
        return self.voice.end_talk(now)
