"""Microphones and speakers for the softphone: a sound card through PyAudio, or WAV files.

PyAudio is optional (`pip install 'xixin[audio]'`, which needs PortAudio). :func:`open_audio`
says clearly why a sound card cannot be used, and the softphone then reads its "microphone"
from a WAV file and writes what it hears to another one.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from codec.opus import Pcm16
from codec.pcm import write_wav
from firmware_sim.errors import AudioError
from firmware_sim.voice import load_wav

RATE = 16000
CHUNK = RATE // 50  # 20 ms
CARD_START_TIMEOUT_S = 8.0  # a card's streams settle within this, or the softphone says so


class Microphone(Protocol):
    def read(self, samples: int) -> Pcm16:
        """The next `samples` of captured audio (silence if the device has less)."""
        ...

    def rewind(self) -> None:
        """PTT pressed: what comes next starts the talk (a file from its start, a card from now)."""
        ...

    def close(self) -> None: ...


class Speaker(Protocol):
    def play(self, pcm: Pcm16) -> None: ...

    def close(self) -> None: ...


class SilentMicrophone:
    def read(self, samples: int) -> Pcm16:
        return np.zeros(samples, dtype=np.int16)

    def rewind(self) -> None:
        pass

    def close(self) -> None:
        pass


class WavMicrophone:
    """Plays a WAV file into the microphone, from the start at every press, looping (or, with
    `loop=False`, once: silence after its end, and `remaining` says when that is)."""

    def __init__(self, path: Path, loop: bool = True) -> None:
        self.pcm = load_wav(path, RATE)
        if not len(self.pcm):
            raise AudioError(f"{path} holds no audio")
        self.loop = loop
        self.position = 0

    def rewind(self) -> None:
        self.position = 0

    @property
    def remaining(self) -> int:
        """Samples left before the end of the file (from the start again when looping)."""
        return len(self.pcm) - self.position

    def read(self, samples: int) -> Pcm16:
        out = np.zeros(samples, dtype=np.int16)
        filled = 0
        while filled < samples and (self.loop or self.position < len(self.pcm)):
            take = min(samples - filled, len(self.pcm) - self.position)
            out[filled : filled + take] = self.pcm[self.position : self.position + take]
            filled += take
            self.position += take
            if self.loop:
                self.position %= len(self.pcm)
        return out

    def close(self) -> None:
        pass


class NullSpeaker:
    def play(self, pcm: Pcm16) -> None:
        pass

    def close(self) -> None:
        pass


class WavSpeaker:
    """Collects what is played and writes it to a WAV file on close (and on flush)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.chunks: list[Pcm16] = []

    def play(self, pcm: Pcm16) -> None:
        self.chunks.append(pcm.copy())

    @property
    def samples(self) -> Pcm16:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int16)

    def flush(self) -> None:
        try:
            self.path.write_bytes(write_wav(self.samples, RATE))
        except OSError as exc:
            raise AudioError(f"cannot write {self.path}: {exc}") from exc

    def close(self) -> None:
        self.flush()


class CardPace:
    """Whether a sound card's stream runs at its rate yet (sans-I/O: callers pass `now`).

    A stream opened through PulseAudio's ALSA plugin asks for a few periods at once, then stalls
    for 1.5-3 s before it settles (measured on this project's test machine): audio handed to a
    speaker meanwhile queues up and is dropped, and a microphone delivers nothing. Steady means
    the callbacks of the last `window_s` carried at least `fill` of it in audio, spread over at
    least half of it (a burst of periods at once is not a pace)."""

    def __init__(self, rate: int, window_s: float = 0.3, fill: float = 0.75) -> None:
        self.rate = rate
        self.window_s = window_s
        self.fill = fill
        self._calls: collections.deque[tuple[float, int]] = collections.deque()

    def record(self, now: float, frames: int) -> None:
        self._calls.append((now, frames))
        while self._calls and self._calls[0][0] <= now - self.window_s:
            self._calls.popleft()

    def steady(self, now: float) -> bool:
        recent = [(at, frames) for at, frames in self._calls if at > now - self.window_s]
        if not recent:
            return False
        carried_s = sum(frames for _, frames in recent) / self.rate
        spread_s = recent[-1][0] - recent[0][0]
        return carried_s >= self.fill * self.window_s and spread_s >= self.window_s / 2


class _CardStream:
    """One PyAudio stream of the sound card, 20 ms periods at RATE, run by its callback; the
    subclass's `_callback` must record every call in `pace` under `_lock`."""

    def __init__(self, pa: Any, pyaudio: Any, *, input: bool = False, output: bool = False) -> None:
        self._lock = threading.Lock()
        self.pace = CardPace(RATE)
        self._continue = pyaudio.paContinue  # before open(): the callback may run at once
        self._stream = pa.open(
            format=pyaudio.paInt16,
            channels=1,
            rate=RATE,
            input=input,
            output=output,
            frames_per_buffer=CHUNK,
            stream_callback=self._callback,
        )

    def _callback(self, data: Any, frames: int, info: Any, status: int) -> tuple[Any, int]:
        raise NotImplementedError

    def steady(self) -> bool:
        with self._lock:
            return self.pace.steady(time.monotonic())

    def close(self) -> None:
        self._stream.stop_stream()
        self._stream.close()


class CardMicrophone(_CardStream):
    """PyAudio input; the stream's callback fills a queue that read() takes 20 ms at a time.

    The card's callbacks and the softphone's 20 ms clock tick at the same rate but not in step
    (and a card may deliver several periods at once), so what was captured is kept in order and
    read oldest first: nothing is dropped or repeated while the reader keeps up. A short read
    (the card is behind the clock) is padded with silence in front, which leaves a one-period
    cushion for the next ones. rewind() (PTT pressed) drops what was captured before; more than
    `MAX_BACKLOG` waiting (a reader stalled that long) is dropped oldest first, to bound delay.
    """

    MAX_BACKLOG = RATE // 2  # 500 ms

    def __init__(self, pa: Any, pyaudio: Any) -> None:
        self._buffer = bytearray()
        self.underruns = 0
        self.discarded = 0  # samples dropped as stale
        super().__init__(pa, pyaudio, input=True)

    def _callback(self, data: bytes, frames: int, info: Any, status: int) -> tuple[None, int]:
        with self._lock:
            self.pace.record(time.monotonic(), frames)
            self._buffer += data
            if len(self._buffer) > 4 * self.MAX_BACKLOG:  # nobody reads (not talking)
                del self._buffer[: len(self._buffer) - 2 * self.MAX_BACKLOG]
        return None, self._continue

    def started(self) -> None:
        """The stream has settled: what it did while starting is not the user's trouble."""
        with self._lock:
            self._buffer.clear()
            self.underruns = 0

    def rewind(self) -> None:
        with self._lock:
            self._buffer.clear()

    def read(self, samples: int) -> Pcm16:
        need = 2 * samples
        with self._lock:
            if len(self._buffer) > 2 * self.MAX_BACKLOG:
                stale = len(self._buffer) - 2 * self.MAX_BACKLOG
                self.discarded += stale // 2
                del self._buffer[:stale]
            data = bytes(self._buffer[:need])
            del self._buffer[:need]
        pcm = np.frombuffer(data, dtype="<i2").astype(np.int16)
        if len(pcm) == samples:
            return pcm
        self.underruns += 1
        return np.concatenate([np.zeros(samples - len(pcm), dtype=np.int16), pcm])


class CardSpeaker(_CardStream):
    """PyAudio output fed from a queue by the stream's callback (silence when empty).

    At most `MAX_QUEUED` chunks (20 ms each) wait: when the card has fallen further behind (it
    stalled while the softphone kept playing), the oldest are dropped, so that the delay a stall
    adds does not stay for the rest of the session."""

    MAX_QUEUED = 25  # 500 ms

    def __init__(self, pa: Any, pyaudio: Any) -> None:
        self._queue: collections.deque[bytes] = collections.deque(maxlen=self.MAX_QUEUED)
        self._pending = b""
        self.underruns = 0  # the card wanted audio and there was none
        self.overruns = 0  # chunks dropped: the card was MAX_QUEUED chunks behind
        super().__init__(pa, pyaudio, output=True)

    def _callback(self, data: Any, frames: int, info: Any, status: int) -> tuple[bytes, int]:
        need = frames * 2
        with self._lock:
            self.pace.record(time.monotonic(), frames)
            while len(self._pending) < need and self._queue:
                self._pending += self._queue.popleft()
            out, self._pending = self._pending[:need], self._pending[need:]
            if len(out) < need:
                self.underruns += 1
        return out.ljust(need, b"\0"), self._continue

    def started(self) -> None:
        """The stream has settled: what it did while starting is not the user's trouble."""
        with self._lock:
            self.underruns = self.overruns = 0

    def play(self, pcm: Pcm16) -> None:
        with self._lock:
            if len(self._queue) == self._queue.maxlen:
                self.overruns += 1
            self._queue.append(pcm.astype("<i2").tobytes())


def card_report(mic: object, speaker: object) -> str | None:
    """What went wrong at the sound card, if it is one (for the user, at exit)."""
    parts = []
    if isinstance(mic, CardMicrophone):
        parts.append(f"microphone {mic.underruns} underruns, {mic.discarded / RATE:.2f} s stale")
    if isinstance(speaker, CardSpeaker):
        parts.append(f"speaker {speaker.underruns} underruns, {speaker.overruns} overruns")
    return "; ".join(parts) or None


class StartingStream(Protocol):
    def steady(self) -> bool: ...

    def started(self) -> None: ...


def wait_until_steady(
    streams: Sequence[StartingStream],
    timeout_s: float = CARD_START_TIMEOUT_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Until the streams of a card just opened run at their rate (see :class:`CardPace`), at
    most `timeout_s`; whether they do. Then their start-up counts are cleared."""
    deadline = clock() + timeout_s
    while not all(stream.steady() for stream in streams):
        if clock() >= deadline:
            return False
        sleep(CHUNK / RATE)
    for stream in streams:
        stream.started()
    return True


def open_sound_card(
    attempts: int = 3, pause_s: float = 0.5
) -> tuple[CardMicrophone, CardSpeaker, Any]:
    """Microphone and speaker of the default sound card; AudioError saying why not.

    A sound server that is busy (or restarting) can make PortAudio's probe miss the devices or
    fail the open: it is tried `attempts` times, `pause_s` apart, before giving up."""
    try:
        import pyaudio
    except ImportError as exc:
        raise AudioError(
            "no sound card support: PyAudio is not installed "
            "(pip install 'xixin[audio]', needs the PortAudio library)"
        ) from exc
    for attempt in range(1, attempts + 1):
        try:
            return _open_card(pyaudio)
        except AudioError:
            if attempt == attempts:
                raise
            time.sleep(pause_s)
    raise AudioError("no attempt to open the sound card")  # attempts < 1


def _open_card(pyaudio: Any) -> tuple[CardMicrophone, CardSpeaker, Any]:
    pa = pyaudio.PyAudio()
    try:
        devices = [pa.get_device_info_by_index(i) for i in range(pa.get_device_count())]
        if not any(d.get("maxInputChannels", 0) > 0 for d in devices):
            raise AudioError("no sound card with a microphone was found")
        if not any(d.get("maxOutputChannels", 0) > 0 for d in devices):
            raise AudioError("no sound card with a speaker was found")
        return CardMicrophone(pa, pyaudio), CardSpeaker(pa, pyaudio), pa
    except AudioError:
        pa.terminate()
        raise
    except OSError as exc:
        pa.terminate()
        raise AudioError(f"the sound card cannot be opened: {exc}") from exc


def open_audio(
    wav_in: Path | None, wav_out: Path | None, use_card: bool = True
) -> tuple[Microphone, Speaker, str]:
    """Pick the microphone and speaker; the text says what was chosen and why."""
    mic: Microphone | None = WavMicrophone(wav_in) if wav_in else None
    speaker: Speaker | None = WavSpeaker(wav_out) if wav_out else None
    notes: list[str] = []
    if use_card and (mic is None or speaker is None):
        try:
            card_mic, card_speaker, _ = open_sound_card()
            used: list[StartingStream] = []
            if mic is None:
                mic = card_mic
                used.append(card_mic)
            if speaker is None:
                speaker = card_speaker
                used.append(card_speaker)
            # Said once the card plays: until then what is heard would be dropped.
            if wait_until_steady(used):
                notes.append("sound card open")
            else:
                notes.append(
                    f"sound card slow: not at its rate after {CARD_START_TIMEOUT_S:g} s"
                    " (audio may drop)"
                )
        except AudioError as exc:
            notes.append(str(exc))
    if mic is None:
        mic = SilentMicrophone()
        notes.append("microphone: silence (use --wav-in FILE to talk from a WAV file)")
    elif wav_in:
        notes.append(f"microphone: {wav_in}")
    if speaker is None:
        speaker = NullSpeaker()
        notes.append("speaker: none (use --wav-out FILE to record what you hear)")
    elif wav_out:
        notes.append(f"speaker: {wav_out}")
    return mic, speaker, "; ".join(notes)
