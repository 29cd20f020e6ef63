"""Adaptive jitter buffer for voice frames, modelled on WebRTC NetEQ (sans-I/O, clock injected).

`push(frame, now)` stores the Opus packets of a :class:`~codec.frame.VoiceFrame`;
`pull(now, quiet)` is called whenever the sound card needs the next chunk and returns a
:class:`PlayoutItem` that says what to decode: a packet, a redundant (RED) copy, the in-band FEC
of the following packet, a concealment (PLC) span, comfort noise in a DTX gap, or silence between
bursts. :class:`codec.stream.VoicePlayer` executes the items with a real decoder.

Playout delay. Every arriving message yields a relative delay (arrival time minus the sender's
timestamp, relative to the earliest such offset in its burst); the target delay is the 0.95
quantile of a forgetting histogram of those (codec.delay) plus a small margin, re-evaluated on
every arrival. While a lossy stream carries FEC/RED, a packet's protection travels in the next
message, one packet later: the target then also covers a lower quantile (`protected_quantile`)
of that message's arrival, so the protection has usually arrived when it is needed without
adding a whole packet to every delay. A new burst whose first message is within the target of
the least delay of the bursts before it (a talker on the same clock) is measured from that
least delay, not from its own first messages, whose network delay would otherwise stay in the
whole burst. A late packet (one that comes after its slot was played) is evidence
the target is too small: it raises the target to that packet's delay plus the margin, a floor
that then fades (halving every `late_half_life_s`).

The playout clock. The sound card pulls at its own pace, at any phase against the talker's packets.
The playout delay (how long after a packet could first have come it is played) is kept in [target -
stretch margin, target + one packet + stretch margin): never below the measured jitter (the target
is its quantile plus a margin at least as large), so a packet that came within it is never late
whatever that phase; and wide enough that growing and shrinking cannot alternate, nor the target's
wobble from arrival to arrival make the delay grow a packet. A burst starts when its first packet is
target-delay old. During a burst the delay moves towards the band only where that is inaudible.
NetEQ stretches speech by pitch periods; we work per packet and only in pauses and DTX gaps:
*accelerate* lets the player drop a packet whose audio decodes quiet after several quiet outputs in
a row (a pause between talk spurts, never the quiet moment inside a word), *preemptive expand*
inserts a concealment frame after quiet output, DTX gaps are shortened or lengthened, and when the
buffer runs dry during a pause it conceals while holding its place, so a late packet is still played
(on a lossy stream, where the packet is more likely lost, only while the delay is below target). In
speech a missing packet is never waited for: shifting the timeline mid-word hurts more than one
concealed frame. So a new listener's start delay (`start_delay_ms`, used until enough arrivals were
measured) is shed only in pauses and between bursts, never by dropping speech.

Loss. A packet is known to be lost when a later one is there. It is then recovered from the next
packet's in-band FEC when that packet is present and was encoded with FEC, or from a RED copy
(a message carries the previous message's last packet) that was inserted on arrival, or from a
RED2 copy (the last packet of the message before that, usually re-encoded at a low bitrate);
otherwise it is concealed. A primary packet replaces a RED copy, and a RED copy a RED2 copy.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field, replace

from codec.delay import DelayHistogram
from codec.errors import CodecConfigError, OpusPacketError
from codec.frame import VoiceFrame
from codec.opus import OPUS_CLOCK, packet_duration
from codec.playout import JitterConfig, JitterStats, PlayoutItem, PlayoutKind

__all__ = ["JitterBuffer", "JitterConfig", "JitterStats", "PlayoutItem", "PlayoutKind"]

_LOG = logging.getLogger(__name__)
_TS_MOD = 1 << 32
_SEQ_MOD = 1 << 16
_ENDED_MEMORY = 32  # how many finished burst ids are remembered to discard their stragglers
_WAIT_MEMORY = 4096  # waiting-time samples kept for the percentile
_LOSS_ALPHA = 0.01  # memory of the missing-at-playout estimate: about 100 packets
_LOSSY = 0.002  # above it a stream counts as lossy (for ~3 s after a loss)
_EARLY_SEQ = 50  # below this sequence number a burst's origin is inferred
_MAX_BURSTS = 8  # bursts buffered at once (one talker at a time, slack for overlap)
_TS_WRAP_S = _TS_MOD / OPUS_CLOCK  # the wire timestamp wraps after this many seconds


_COUNTERS = (
    "received",
    "played",
    "duplicates",
    "late",
    "reordered",
    "malformed",
    "fec",
    "red",
    "red2",
    "concealed",
    "expand",
    "accelerate",
    "preemptive",
    "cng",
    "output",
    "expand_samples",
    "started",
    "ended",
    "timed_out",
)


@dataclass(slots=True)
class _Packet:
    payload: bytes
    arrival: float
    seq: int  # unwrapped message sequence number
    index: int  # position in its message
    last_in_message: bool
    fec: bool
    depth: int  # 0 primary, 1 RED copy (previous message), 2 RED2 copy (two messages back)
    duration: int

    @property
    def from_red(self) -> bool:
        return self.depth > 0


@dataclass(slots=True)
class _Burst:
    burst_id: int
    ts_ref_raw: int
    seq_ref_raw: int
    first_arrival: float
    last_arrival: float
    min_offset: float = float("inf")
    packets: dict[int, _Packet] = field(default_factory=dict)
    next_ts: int | None = None
    end_ts: int | None = None
    frame_duration: int = 960
    seen: set[int] = field(default_factory=set)
    seen_order: deque[int] = field(default_factory=lambda: deque(maxlen=1024))
    highest_seq: int | None = None
    last_played: _Packet | None = None
    holding: int = 0
    origin_ts: int | None = None  # where the burst began, when its first messages were lost

    def unwrap_ts(self, raw: int) -> int:
        return ((raw - self.ts_ref_raw + _TS_MOD // 2) % _TS_MOD) - _TS_MOD // 2

    def wire_ts(self, ts: int) -> int:
        return (self.ts_ref_raw + ts) % _TS_MOD

    def unwrap_seq(self, raw: int) -> int:
        value = ((raw - self.seq_ref_raw + _SEQ_MOD // 2) % _SEQ_MOD) - _SEQ_MOD // 2
        if self.highest_seq is not None and value < self.highest_seq - _SEQ_MOD // 2:
            value += _SEQ_MOD  # long bursts: keep counting past the reference
        return value

    def remember(self, seq: int) -> None:
        if len(self.seen_order) == self.seen_order.maxlen:
            self.seen.discard(self.seen_order[0])
        self.seen_order.append(seq)
        self.seen.add(seq)


class JitterBuffer:
    """NetEQ-style adaptive jitter buffer; see the module docstring."""

    def __init__(self, config: JitterConfig | None = None, logger: logging.Logger | None = None):
        self.config = config or JitterConfig()
        self._log = logger or _LOG
        self._delays = DelayHistogram(
            self.config.quantile, self.config.forget, self.config.protected_quantile
        )
        self._bursts: dict[int, _Burst] = {}
        self._current: _Burst | None = None
        self._ended: deque[int] = deque(maxlen=_ENDED_MEMORY)
        self._pending_ended: list[int] = []
        self._waits: deque[float] = deque(maxlen=_WAIT_MEMORY)
        self._wait_sum = 0.0
        self._wait_count = 0
        self._wait_max = 0.0
        self._current_delay = 0.0
        self._loss_ewma = 0.0
        self._protected_packet = 0  # packet duration while FEC/RED frames arrive, else 0
        self._clock = 0.0  # the latest `now` seen (push or pull)
        self._late_floor = 0.0  # target floor (s) set by the latest late packet, at _late_at
        self._late_at = 0.0
        self._base: float | None = None  # least offset (s, mod _TS_WRAP_S) of recent bursts
        self._base_at = 0.0  # when a message of those bursts last came
        self._quiet_run = 0  # consecutive quiet outputs
        self._counts = dict.fromkeys(_COUNTERS, 0)

    # ----------------------------------------------------------------------------- arrivals

    def push(self, frame: VoiceFrame, now: float) -> None:
        """Store an arriving frame. Late, duplicate and malformed data is counted and dropped."""
        count = self._counts
        count["received"] += len(frame.packets)
        self._clock = max(self._clock, now)
        if frame.burst in self._ended:
            count["late"] += len(frame.packets)
            return
        burst = self._bursts.get(frame.burst)
        if burst is None:
            burst = _Burst(frame.burst, frame.timestamp, frame.seq, now, now)
            self._bursts[frame.burst] = burst
            self._limit_bursts()
            self._start_from_base(burst, now)
        seq = burst.unwrap_seq(frame.seq)
        if seq in burst.seen:
            count["duplicates"] += len(frame.packets)
            return
        try:
            durations = [packet_duration(p) for p in frame.packets]
            red_duration = packet_duration(frame.redundant) if frame.redundant else 0
            red2_duration = packet_duration(frame.redundant2) if frame.redundant2 else 0
        except OpusPacketError as exc:
            count["malformed"] += max(1, len(frame.packets))
            self._log.debug("burst %d seq %d: malformed packet dropped: %s", frame.burst, seq, exc)
            return
        burst.remember(seq)
        if burst.highest_seq is not None and seq < burst.highest_seq:
            count["reordered"] += len(frame.packets)
        burst.highest_seq = seq if burst.highest_seq is None else max(burst.highest_seq, seq)
        burst.last_arrival = now
        ts = burst.unwrap_ts(frame.timestamp)
        relative = self._observe_delay(burst, ts, now)
        protected = frame.fec or frame.redundant is not None
        self._protected_packet = durations[0] if protected and durations else 0
        position = ts
        for index, (payload, duration) in enumerate(zip(frame.packets, durations, strict=True)):
            last = index == len(frame.packets) - 1
            packet = _Packet(payload, now, seq, index, last, frame.fec, 0, duration)
            if not self._store(burst, position, packet):
                self._raise_for_late(burst, position, relative, now)
            position += duration
            burst.frame_duration = duration
        if frame.end:
            burst.end_ts = position
        if frame.seq < _EARLY_SEQ and frame.packets:
            # Sequence numbers start at 0 (docs/protocol.md §3): this early in a burst we know
            # where it began even if its first messages are missing, and can conceal them.
            origin = ts - frame.seq * (position - ts)
            burst.origin_ts = origin if burst.origin_ts is None else min(burst.origin_ts, origin)
        if frame.redundant and red_duration and seq - 1 not in burst.seen:
            red = _Packet(frame.redundant, now, seq - 1, -1, True, frame.fec, 1, red_duration)
            self._store(burst, ts - red_duration, red, count_late=False)
        if frame.redundant2 and red2_duration and seq - 2 not in burst.seen:
            # Message seq - 1 is as long as this one (docs/protocol.md §9.4); RED2 copies are
            # coded without FEC.
            end = ts - (position - ts)
            red2 = _Packet(frame.redundant2, now, seq - 2, -1, True, False, 2, red2_duration)
            self._store(burst, end - red2_duration, red2, count_late=False)

    def _limit_bursts(self) -> None:
        while len(self._bursts) > _MAX_BURSTS:
            oldest = min(
                (b for b in self._bursts.values() if b is not self._current),
                key=lambda b: b.last_arrival,
            )
            self._bursts.pop(oldest.burst_id)
            self._ended.append(oldest.burst_id)

    def _observe_delay(self, burst: _Burst, ts: int, now: float) -> float:
        """Record the message's relative delay (s) and return it."""
        offset = now - ts / OPUS_CLOCK
        if offset < burst.min_offset:
            burst.min_offset = offset
            self._base = (offset - burst.ts_ref_raw / OPUS_CLOCK) % _TS_WRAP_S
        self._base_at = now
        relative = offset - burst.min_offset
        self._delays.add(relative)
        return relative

    def _start_from_base(self, burst: _Burst, now: float) -> None:
        """Measure a new burst from the least delay of the bursts before it, if it fits them.

        Offsets are compared on the wire's timestamp clock, so this holds for every talker
        whose capture clock agrees with the earlier talkers' (one host, or NTP). A first
        message later than that least delay by more than the target is a talker with another
        clock or a changed path: the burst is then measured from its own messages only.
        """
        if self._base is None or now - self._base_at > self.config.base_memory_s:
            return
        offset = (now - burst.ts_ref_raw / OPUS_CLOCK) % _TS_WRAP_S
        late_by = (offset - self._base + _TS_WRAP_S / 2) % _TS_WRAP_S - _TS_WRAP_S / 2
        if 0.0 < late_by <= self._target_s():
            burst.min_offset = now - late_by  # the burst's first message has timestamp 0

    def _store(self, burst: _Burst, ts: int, packet: _Packet, count_late: bool = True) -> bool:
        """Keep `packet` for slot `ts`; False if that slot was already played (late)."""
        if burst.next_ts is not None and ts < burst.next_ts:
            if count_late:
                self._counts["late"] += 1
            return False
        existing = burst.packets.get(ts)
        if existing is None or packet.depth < existing.depth:
            burst.packets[ts] = packet
        return True

    def _raise_for_late(self, burst: _Burst, ts: int, relative: float, now: float) -> None:
        """A late packet is evidence the target is too small: make it cover this delay."""
        assert burst.next_ts is not None
        # How far the playout has moved past this packet's slot. Far past is an outage (or a
        # talker's clock jump), not jitter: the target is left to the histogram then.
        overdue = (burst.next_ts - ts) / OPUS_CLOCK
        if overdue > self.config.late_raise_max_ms / 1000.0:
            return
        wanted = relative + self.config.margin_ms / 1000.0
        if wanted > self._late_floor_s(now):
            self._late_floor, self._late_at = wanted, now
            self._log.debug("late packet: target raised to %.1f ms", wanted * 1000.0)

    def _late_floor_s(self, now: float) -> float:
        if not self._late_floor:
            return 0.0
        age = max(0.0, now - self._late_at)
        return float(self._late_floor * 0.5 ** (age / self.config.late_half_life_s))

    # ----------------------------------------------------------------------------- playout

    @property
    def target_delay_ms(self) -> float:
        return self._target_s() * 1000.0

    def _target_s(self) -> float:
        config = self.config
        low, high = config.min_delay_ms / 1000.0, config.max_delay_ms / 1000.0
        measured = self._delays.target_s + config.margin_ms / 1000.0
        if self._delays.samples < config.start_samples:
            # Too few arrivals for a quantile: start safe, as NetEQ does (kStartDelayMs).
            measured = max(measured, config.start_delay_ms / 1000.0)
        measured = max(measured, self._late_floor_s(self._clock))
        if self._protected():
            # The next message, which carries this packet's protection, should be in too.
            lookahead = self._protected_packet / OPUS_CLOCK + config.margin_ms / 1000.0
            measured = max(measured, self._delays.second_s + lookahead)
        return min(high, max(low, measured))

    def _delay_band(self, step: int) -> tuple[float, float]:
        """The playout delays (s) left alone: [low, high); `step` is one packet (48 kHz).

        The target wobbles by a bucket or two with every arrival; a margin on both sides keeps
        a delay just under it from growing a whole packet (and staying there) for that.
        """
        target, margin = self._target_s(), self.config.stretch_margin_ms / 1000.0
        return max(0.0, target - margin), target + step / OPUS_CLOCK + margin

    def _lossy(self) -> bool:
        return self._loss_ewma >= _LOSSY

    def _protected(self) -> bool:
        """A lossy stream with FEC/RED: its protection should arrive in time to be used."""
        return self._lossy() and self._protected_packet > 0

    def _note_loss(self, lost: bool) -> None:
        self._loss_ewma += _LOSS_ALPHA * ((1.0 if lost else 0.0) - self._loss_ewma)

    def pull(self, now: float, quiet: bool = False) -> PlayoutItem:
        """The next thing to play. `quiet`: the previous output was quiet enough to stretch."""
        self._clock = max(self._clock, now)
        self._quiet_run = self._quiet_run + 1 if quiet else 0
        item = None
        if self._current is not None:
            item = self._play(self._current, now, quiet)
        if item is None:
            self._drop_stale(now)
            burst = self._next_ready_burst(now)
            if burst is not None:
                self._current = burst
                burst.next_ts = min(burst.packets)
                if burst.origin_ts is not None:
                    burst.next_ts = min(burst.next_ts, burst.origin_ts)
                self._counts["started"] += 1
                item = self._play(burst, now, quiet=False)
                if item is not None:
                    item = replace(item, burst_start=True)
        if item is None:
            tick = OPUS_CLOCK * self.config.idle_tick_ms // 1000
            item = PlayoutItem(PlayoutKind.SILENCE, tick)
        if self._pending_ended:
            item = replace(item, ended=tuple(self._pending_ended))
            self._pending_ended.clear()
        return item

    def _drop_stale(self, now: float) -> None:
        """Forget idle bursts that never got a playable packet (e.g. only an END marker)."""
        timeout = self.config.burst_timeout_ms / 1000.0
        for burst in list(self._bursts.values()):
            idle = now - burst.last_arrival > timeout
            if burst is not self._current and idle and not burst.packets:
                self._bursts.pop(burst.burst_id)
                self._ended.append(burst.burst_id)

    def _next_ready_burst(self, now: float) -> _Burst | None:
        waiting = [b for b in self._bursts.values() if b.next_ts is None and b.packets]
        if not waiting:
            return None
        burst = min(waiting, key=lambda b: b.first_arrival)
        first_ts = min(burst.packets)
        if burst.origin_ts is not None:
            first_ts = min(first_ts, burst.origin_ts)
        start_at = burst.min_offset + first_ts / OPUS_CLOCK + self._target_s()
        return burst if now >= start_at else None

    def _finish(self, burst: _Burst, timed_out: bool) -> None:
        self._bursts.pop(burst.burst_id, None)
        self._ended.append(burst.burst_id)
        self._pending_ended.append(burst.burst_id)
        self._counts["ended"] += 1
        if timed_out:
            self._counts["timed_out"] += 1
        if self._current is burst:
            self._current = None
        self._log.debug("burst %d ended%s", burst.burst_id, " (timeout)" if timed_out else "")

    def _play(self, burst: _Burst, now: float, quiet: bool) -> PlayoutItem | None:
        ts = burst.next_ts
        assert ts is not None
        if burst.end_ts is not None and ts >= burst.end_ts:
            self._finish(burst, timed_out=False)
            return None
        self._current_delay = now - (burst.min_offset + ts / OPUS_CLOCK)
        packet = burst.packets.get(ts)
        if packet is not None:
            return self._play_present(burst, ts, packet, now, quiet)
        later = [t for t in burst.packets if t > ts]
        if not later and burst.end_ts is None:
            return self._play_starved(burst, ts, now, quiet)
        if not later:
            return self._recover(burst, ts)  # the burst's last packets were lost
        following = burst.packets[min(later)]
        if self._is_dtx_gap(burst, following):
            return self._play_gap(burst, ts, min(later))
        return self._recover(burst, ts)

    def _play_present(
        self, burst: _Burst, ts: int, packet: _Packet, now: float, quiet: bool
    ) -> PlayoutItem:
        burst.holding = 0
        low, high = self._delay_band(packet.duration)
        if quiet and self._current_delay < low:
            self._counts["preemptive"] += 1
            return self._expand(burst, burst.frame_duration, None)
        # Too much delay, a pause between talk spurts and the next packet is already here: the
        # player may drop this one's audio if it decodes to something quiet (NetEQ's
        # accelerate, at packet granularity).
        droppable = (
            self._quiet_run >= self.config.shrink_after_quiet
            and self._current_delay >= high
            and (ts + packet.duration) in burst.packets
        )
        del burst.packets[ts]
        burst.next_ts = ts + packet.duration
        burst.last_played = packet
        self._note_loss(packet.from_red)
        wait = now - packet.arrival
        self._waits.append(wait)
        self._wait_sum += wait
        self._wait_count += 1
        self._wait_max = max(self._wait_max, wait)
        self._counts["played"] += 1
        self._counts["output"] += packet.duration
        kind = PlayoutKind.NORMAL
        if packet.from_red:
            kind = PlayoutKind.RED
            self._counts["red" if packet.depth == 1 else "red2"] += 1
        return PlayoutItem(
            kind,
            packet.duration,
            packet.payload,
            burst.burst_id,
            burst.wire_ts(ts),
            droppable=droppable,
        )

    def drop(self, item: PlayoutItem) -> None:
        """The player dropped `item`'s audio (it was droppable and quiet): count an accelerate.

        Nothing else changes: the buffer already moved past the packet, so the next pull at the
        same `now` plays the following packet and the delay is one packet shorter.
        """
        if not item.droppable:
            raise CodecConfigError("only a droppable item can be dropped")
        self._counts["accelerate"] += 1
        self._counts["output"] -= item.duration

    def _play_starved(self, burst: _Burst, ts: int, now: float, quiet: bool) -> PlayoutItem | None:
        timeout = self.config.burst_timeout_ms / 1000.0
        successor = any(
            b is not burst and b.next_ts is None and b.packets for b in self._bursts.values()
        )
        if now - burst.last_arrival > timeout or successor:
            self._finish(burst, timed_out=burst.end_ts is None and not successor)
            return None
        step = burst.frame_duration
        budget = self.config.max_hold_ms * OPUS_CLOCK / 1000.0
        low, _ = self._delay_band(step)
        below_band = self._current_delay < low
        if quiet and burst.holding * step < budget and (below_band or not self._lossy()):
            # Waiting costs nothing audible here: hold our place, the packet may be late. On a
            # lossy stream it is more likely lost: wait only while the delay is below the
            # target, or the wait would stay in every later packet's delay.
            burst.holding += 1
            return self._expand(burst, step, None)
        # In speech, shifting the timeline is worse than a concealed frame: move on. Whether
        # the packet is lost or late is not known yet (a late one is counted when it comes).
        burst.next_ts = ts + step
        self._note_loss(True)
        return self._expand(burst, step, ts)

    def _is_dtx_gap(self, burst: _Burst, following: _Packet) -> bool:
        last = burst.last_played
        return (
            last is not None
            and last.last_in_message
            and following.index == 0
            and following.seq == last.seq + 1
        )

    def _play_gap(self, burst: _Burst, ts: int, gap_end: int) -> PlayoutItem:
        step = burst.frame_duration
        low, high = self._delay_band(step)
        advance = step
        if self._current_delay >= high:
            excess = int((self._current_delay - low) * OPUS_CLOCK) // step * step
            advance = step + excess
        elif self._current_delay < low:
            advance = 0
        burst.next_ts = min(gap_end, ts + advance)
        self._counts["cng"] += 1
        self._counts["output"] += step
        return PlayoutItem(PlayoutKind.CNG, step, None, burst.burst_id, burst.wire_ts(ts))

    def _recover(self, burst: _Burst, ts: int) -> PlayoutItem:
        step = burst.frame_duration
        burst.next_ts = ts + step
        burst.holding = 0
        self._note_loss(True)
        following = burst.packets.get(ts + step)
        if following is not None and following.fec:
            self._counts["fec"] += 1
            self._counts["output"] += step
            return PlayoutItem(
                PlayoutKind.FEC, step, following.payload, burst.burst_id, burst.wire_ts(ts)
            )
        self._counts["concealed"] += 1
        return self._expand(burst, step, ts)

    def _expand(self, burst: _Burst, step: int, ts: int | None) -> PlayoutItem:
        self._counts["expand"] += 1
        self._counts["expand_samples"] += step
        self._counts["output"] += step
        wire = None if ts is None else burst.wire_ts(ts)
        return PlayoutItem(PlayoutKind.EXPAND, step, None, burst.burst_id, wire)

    # ----------------------------------------------------------------------------- statistics

    @property
    def pending(self) -> bool:
        """A burst is playing or buffered to start: keep pulling at the sound card's pace."""
        return self._current is not None or any(b.packets for b in self._bursts.values())

    @property
    def current_delay_ms(self) -> float:
        """The playout delay of the latest packet slot played (cheap, unlike stats())."""
        return self._current_delay * 1000.0

    @property
    def late_discarded(self) -> int:
        """Packets dropped for arriving after their playout time (cheap, unlike stats())."""
        return self._counts["late"]

    def reset_waiting(self) -> None:
        """Start the waiting-time statistics afresh (e.g. per call)."""
        self._waits.clear()
        self._wait_sum = self._wait_max = 0.0
        self._wait_count = 0

    def stats(self) -> JitterStats:
        c = self._counts
        waits = sorted(self._waits)
        p95 = waits[min(len(waits) - 1, int(0.95 * len(waits)))] if waits else 0.0
        mean = self._wait_sum / self._wait_count if self._wait_count else 0.0
        return JitterStats(
            packets_received=c["received"],
            packets_played=c["played"],
            duplicates=c["duplicates"],
            late_discarded=c["late"],
            reordered=c["reordered"],
            malformed=c["malformed"],
            fec_recovered=c["fec"],
            red_recovered=c["red"] + c["red2"],
            red2_recovered=c["red2"],
            concealed=c["concealed"],
            expand_frames=c["expand"],
            accelerate=c["accelerate"],
            preemptive_expand=c["preemptive"],
            cng_frames=c["cng"],
            output_samples=c["output"],
            expand_samples=c["expand_samples"],
            bursts_started=c["started"],
            bursts_ended=c["ended"],
            bursts_timed_out=c["timed_out"],
            current_delay_ms=self._current_delay * 1000.0,
            target_delay_ms=self.target_delay_ms,
            mean_waiting_ms=mean * 1000.0,
            max_waiting_ms=self._wait_max * 1000.0,
            p95_waiting_ms=p95 * 1000.0,
        )
