"""Public types of the jitter buffer: playout items, configuration, statistics.

Split from codec/jitter.py to keep files small; import them from either module.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from codec.errors import CodecConfigError
from codec.opus import OPUS_CLOCK


class PlayoutKind(Enum):
    NORMAL = "normal"  # decode `packet`
    RED = "red"  # decode `packet`, a redundant copy carried by the following message
    FEC = "fec"  # decode the in-band FEC of `packet` (the packet after the missing one)
    EXPAND = "expand"  # conceal `duration` (loss, late packet, or delay growth)
    CNG = "cng"  # a DTX gap: nothing was lost, let the decoder make comfort noise
    SILENCE = "silence"  # no burst is playing


@dataclass(frozen=True, slots=True)
class PlayoutItem:
    """One decoding step. `duration` is in 48 kHz samples."""

    kind: PlayoutKind
    duration: int
    packet: bytes | None = None
    burst: int | None = None
    timestamp: int | None = None  # wire timestamp (48 kHz) of the audio played; None if inserted
    droppable: bool = False  # the player may drop this audio if quiet (accelerate)
    burst_start: bool = False
    ended: tuple[int, ...] = ()  # bursts that finished before this item

    @property
    def duration_ms(self) -> float:
        return self.duration * 1000.0 / OPUS_CLOCK


@dataclass(frozen=True, slots=True)
class JitterConfig:
    quantile: float = 0.95
    forget: float = 0.995
    min_delay_ms: float = 0.0
    start_delay_ms: float = 40.0  # the target until `start_samples` arrivals were measured
    start_samples: int = 50
    max_delay_ms: float = 1000.0
    max_hold_ms: float = 100.0  # how long to conceal in place waiting for a late packet
    burst_timeout_ms: float = 1000.0  # no packet for this long and nothing buffered: burst over
    # The target is the `quantile` of recent relative arrival delays plus `margin_ms`.
    margin_ms: float = 2.0
    # Playout delay is kept within [target - stretch_margin, target + one packet +
    # stretch_margin): it grows below that band and shrinks above it. With stretch_margin no
    # larger than margin_ms it is never below the measured quantile, so a packet that came
    # within it is never late, whatever the phase of the playout clock; one packet wide plus
    # margins, so growing and shrinking cannot alternate, nor the target's wobble from one
    # arrival to the next make the delay grow.
    stretch_margin_ms: float = 2.0
    # A late packet raises the target to its own relative delay plus `margin_ms`; that floor
    # halves every `late_half_life_s`. A packet more than `late_raise_max_ms` past its playout
    # time is taken for an outage, not jitter, and raises nothing.
    late_half_life_s: float = 5.0
    late_raise_max_ms: float = 200.0
    # Delay is shrunk (a quiet packet dropped) only after this many quiet outputs in a row:
    # in a pause between talk spurts, never in the quiet moments of a word.
    shrink_after_quiet: int = 5
    # While a lossy stream carries RED/FEC, the protection for a packet travels in the next
    # message, one packet later: the target then also covers this quantile of the next
    # message's arrival (its relative delay plus one packet). Lower than `quantile`, because a
    # missing protection costs only when the primary is missing too.
    protected_quantile: float = 0.9
    # A new burst whose talker's clock agrees with the previous bursts' (its first message
    # within the target of their least delay) starts from that least delay rather than from its
    # own first message, which may itself have been delayed: that delay would be added to all
    # of the burst's audio. Remembered this long after the last message.
    base_memory_s: float = 30.0
    idle_tick_ms: int = 20

    def __post_init__(self) -> None:
        if not 0 <= self.min_delay_ms <= self.max_delay_ms:
            raise CodecConfigError("need 0 <= min_delay_ms <= max_delay_ms")
        if self.start_delay_ms < 0 or self.start_samples < 0:
            raise CodecConfigError("start delay and start samples must be non-negative")
        if self.max_hold_ms < 0 or self.burst_timeout_ms <= 0 or self.stretch_margin_ms < 0:
            raise CodecConfigError("hold, timeout and margin must be non-negative")
        if self.margin_ms < 0 or self.late_half_life_s <= 0 or self.late_raise_max_ms < 0:
            raise CodecConfigError("margin and late raise limits must be non-negative")
        if not 0.5 <= self.protected_quantile < 1.0 or self.base_memory_s < 0:
            raise CodecConfigError("need 0.5 <= protected_quantile < 1 and base_memory_s >= 0")
        if self.shrink_after_quiet < 1:
            raise CodecConfigError("shrink_after_quiet must be at least 1")
        if self.idle_tick_ms not in (10, 20, 40, 60):
            raise CodecConfigError("idle tick must be 10, 20, 40 or 60 ms")


@dataclass(frozen=True, slots=True)
class JitterStats:
    """Counters in the spirit of NetEQ's NetworkStatistics (rates are fractions, 0..1)."""

    packets_received: int
    packets_played: int
    duplicates: int
    late_discarded: int
    reordered: int
    malformed: int
    fec_recovered: int
    red_recovered: int
    concealed: int  # packets lost and neither FEC- nor RED-recovered
    expand_frames: int  # all concealment frames (loss, waiting for late packets, stretching)
    accelerate: int
    preemptive_expand: int
    cng_frames: int
    output_samples: int  # 48 kHz samples of burst audio produced (silence excluded)
    expand_samples: int
    bursts_started: int
    bursts_ended: int
    bursts_timed_out: int
    current_delay_ms: float
    target_delay_ms: float
    mean_waiting_ms: float
    max_waiting_ms: float
    p95_waiting_ms: float
    red2_recovered: int = 0  # of red_recovered, from RED2 copies (two messages back)

    @property
    def expand_rate(self) -> float:
        return self.expand_samples / self.output_samples if self.output_samples else 0.0

    @property
    def late_rate(self) -> float:
        return self.late_discarded / self.packets_received if self.packets_received else 0.0
