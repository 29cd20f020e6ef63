"""Receiving: per-burst frame accounting for every listener, and decoding probes.

:class:`ReceiverMeter` is cheap enough for every simulated listener: it counts frames per burst
(expected from the sequence numbers, received, duplicates), notices late entry (joining a burst
already under way) and records mouth-to-arrival delay from the frames' wall-clock timestamps
(see :mod:`firmware_sim.voice`). :class:`VoiceProbe` is a listener that really plays: the codec's
jitter buffer and Opus decoder (:class:`codec.stream.VoicePlayer`), pulled at playout pace, so
its mouth-to-ear delay includes packetisation, network, jitter buffering and concealment.

:class:`Histogram` keeps delays in 1 ms buckets so fleets can merge them across processes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from codec.frame import VoiceFrame
from codec.jitter import PlayoutKind
from codec.opus import OPUS_CLOCK
from codec.stream import PlayoutChunk, VoicePlayer
from devices.voice import TERMINAL_JITTER, VoiceSession
from firmware_sim.voice import TS_MOD, ts_to_wall

_PLAYED = (PlayoutKind.NORMAL, PlayoutKind.FEC, PlayoutKind.RED)
# A probe's sound card takes 10 ms periods while idle (as WebRTC's audio devices do), so a
# burst starts within 10 ms of its playout time rather than within a 20 ms frame.
PROBE_JITTER = replace(TERMINAL_JITTER, idle_tick_ms=10)
_RESYNC_S = 0.1  # a playout clock this far behind (a stalled event loop) restarts from now


class Histogram:
    """Non-negative values in 1-unit buckets (values above `limit` land in the last one)."""

    def __init__(self, limit: int = 5000) -> None:
        self.limit = limit
        self.counts: dict[int, int] = {}
        self.total = 0

    def add(self, value: float) -> None:
        bucket = int(value)
        if bucket < 0:
            bucket = 0
        elif bucket > self.limit:
            bucket = self.limit
        counts = self.counts
        counts[bucket] = counts.get(bucket, 0) + 1
        self.total += 1

    def merge(self, other: Histogram | dict[int, int]) -> None:
        counts = other.counts if isinstance(other, Histogram) else other
        for bucket, count in counts.items():
            key = int(bucket)
            self.counts[key] = self.counts.get(key, 0) + count
            self.total += count

    def percentile(self, p: float) -> float | None:
        """The value below which `p` percent of the samples fall (bucket midpoint)."""
        if not self.total:
            return None
        rank = p / 100.0 * self.total
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return bucket + 0.5
        return max(self.counts) + 0.5

    def to_dict(self) -> dict[str, int]:
        return {str(k): v for k, v in self.counts.items()}


@dataclass(slots=True)
class _Burst:
    first_seq: int
    highest: int
    end_seq: int | None = None
    taken_seen: bool = False
    received: set[int] = field(default_factory=set)


@dataclass(slots=True)
class ReceptionTotals:
    bursts: int = 0
    frames_expected: int = 0
    frames_received: int = 0
    duplicates: int = 0
    late_entries: int = 0

    @property
    def loss_pct(self) -> float:
        if not self.frames_expected:
            return 0.0
        lost = max(0, self.frames_expected - self.frames_received)
        return 100.0 * lost / self.frames_expected

    def add(self, other: ReceptionTotals) -> None:
        self.bursts += other.bursts
        self.frames_expected += other.frames_expected
        self.frames_received += other.frames_received
        self.duplicates += other.duplicates
        self.late_entries += other.late_entries


class ReceiverMeter:
    """One listener's view of every burst it heard.

    A burst is judged (expected vs received) `linger_s` after it ended — floor idle, or the next
    burst on the same talkgroup — so frames delayed past the end still count; frames of a burst
    already judged are stragglers.
    """

    def __init__(self, linger_s: float = 1.0) -> None:
        self.linger_s = linger_s
        self.totals = ReceptionTotals()
        self.mouth_to_arrival = Histogram()
        self.late_entry_ms = Histogram()
        self.stragglers = 0
        self._open: dict[tuple[str, int], _Burst] = {}
        self._ending: dict[tuple[str, int], float] = {}
        self._closed: deque[tuple[str, int]] = deque(maxlen=64)
        self.closed_received: dict[tuple[str, int], int] = {}  # judged bursts -> frames heard
        self._taken: set[tuple[str, int]] = set()
        self._joined_at: float | None = None

    def joined(self, now_wall: float) -> None:
        """The terminal (re)joined its talkgroups: a burst already running is a late entry."""
        self._joined_at = now_wall

    def taken(self, key: str, burst: int) -> None:
        """`floor_taken` arrived before the burst's frames: we hear it from its start."""
        if (key, burst) not in self._open:
            self._taken.add((key, burst))
            if len(self._taken) > 64:
                self._taken.pop()

    def frame(
        self, key: str, burst: int, seq: int, timestamp: int, end: bool, audio: bool, wall: float
    ) -> None:
        """One received frame's header (`wall`: its arrival, wall clock)."""
        ident = (key, burst)
        state = self._open.get(ident)
        if state is None:
            if ident in self._closed:
                self.stragglers += 1
                return
            state = self._open_burst(ident, seq, wall)
        received = state.received
        if seq in received:
            self.totals.duplicates += 1
            return
        received.add(seq)
        if seq > state.highest:
            state.highest = seq
        if end:
            state.end_seq = seq
        if audio:
            # ts_to_wall inlined: this runs for every frame every listener hears.
            back = (round(wall * OPUS_CLOCK) - timestamp) % TS_MOD
            self.mouth_to_arrival.add(back * 1000.0 / OPUS_CLOCK)

    def _open_burst(self, ident: tuple[str, int], seq: int, now_wall: float) -> _Burst:
        from_start = ident in self._taken or seq == 0
        self._taken.discard(ident)
        state = _Burst(first_seq=0 if from_start else seq, highest=seq, taken_seen=from_start)
        self._open[ident] = state
        if not from_start:
            self.totals.late_entries += 1
            if self._joined_at is not None:
                self.late_entry_ms.add((now_wall - self._joined_at) * 1000.0)
        for other in self._open:
            if other[0] == ident[0] and other != ident:
                self._ending.setdefault(other, now_wall + self.linger_s)
        return state

    def ended(self, key: str, now_wall: float, burst: int | None = None) -> None:
        """The burst(s) on `key` ended; judge them after the linger time."""
        for ident in self._open:
            if ident[0] == key and burst in (None, ident[1]):
                self._ending.setdefault(ident, now_wall + self.linger_s)

    @property
    def next_sweep(self) -> float | None:
        return min(self._ending.values()) if self._ending else None

    def sweep(self, now_wall: float) -> None:
        for ident, due in list(self._ending.items()):
            if due <= now_wall:
                self._close(ident)

    def _close(self, ident: tuple[str, int]) -> None:
        self._ending.pop(ident, None)
        state = self._open.pop(ident, None)
        if state is None:
            return
        self._closed.append(ident)
        last = state.end_seq if state.end_seq is not None else state.highest
        heard = sum(1 for s in state.received if state.first_seq <= s <= last)
        self.totals.bursts += 1
        self.totals.frames_expected += last - state.first_seq + 1
        self.totals.frames_received += heard
        self.closed_received[ident] = heard
        if len(self.closed_received) > 2000:
            del self.closed_received[next(iter(self.closed_received))]

    def received(self, key: str, burst: int) -> int:
        """Frames of one burst heard so far (open or judged)."""
        state = self._open.get((key, burst))
        if state is not None:
            return len(state.received)
        return self.closed_received.get((key, burst), 0)

    def close_all(self) -> None:
        for ident in list(self._open):
            self._close(ident)


class VoiceProbe:
    """A listener that decodes and plays out (jitter buffer + Opus), measuring mouth-to-ear, and
    reports what it receives (its :class:`devices.voice.VoiceSession` says when)."""

    def __init__(self, sample_rate: int = 16000, voice: VoiceSession | None = None) -> None:
        self.voice = voice or VoiceSession(sample_rate, jitter=PROBE_JITTER)
        self.mouth_to_ear = Histogram()
        self.played_ms = 0.0
        self.active = False
        self.next_pull = 0.0

    @property
    def player(self) -> VoicePlayer:
        return self.voice.player

    def receive(self, frame: VoiceFrame, now: float, key: str = "sim") -> dict[str, Any] | None:
        """Play `frame` of the call on floor `key`; the `rr` due now, if any."""
        report = self.voice.hear(key, frame, now)
        if not self.active:
            self.active = True
            self.next_pull = now
        return report

    def pull(self, now: float, now_wall: float) -> PlayoutChunk:
        """Play the next chunk at `now`; schedules the next pull after its duration.

        Like a sound card, the pulls keep their own pace: the next one is due one chunk after
        this one was *due*, not after it ran, so a timer that fires late does not push the
        playout clock (and the mouth-to-ear delay) back a little more on every chunk.
        """
        chunk = self.voice.pull(now)
        item = chunk.item
        if item.kind in _PLAYED and item.timestamp is not None:
            mouth = ts_to_wall(item.timestamp, now_wall)
            self.mouth_to_ear.add((now_wall - mouth) * 1000.0)
            self.played_ms += item.duration_ms
        if item.kind is PlayoutKind.SILENCE and not self.player.jitter.pending:
            self.active = False  # idle until the next frame (a buffered burst keeps it going)
        due = self.next_pull if now - self.next_pull < _RESYNC_S else now
        self.next_pull = due + max(item.duration_ms, 10.0) / 1000.0
        return chunk
