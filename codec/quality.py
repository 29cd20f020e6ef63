"""Voice quality under an impaired network: encode -> impairment -> jitter buffer -> decode.

Pure computation: 16 kHz PCM and a seed in, a :class:`QualityResult` out. A discrete-event
simulation drives a real :class:`~codec.stream.VoiceSender` (with its protection controller), a
network model (random or bursty loss, jitter, reordering) and a real
:class:`~codec.stream.VoicePlayer`; receiver reports travel back to the sender with a delay, as
they would through the gateway.

Scoring. PESQ-WB (ITU-T P.862.2, `pesq` package) is computed on the audio exactly as a listener
hears it, from the start of the burst's playout (PESQ aligns delay itself). STOI (`pystoi`) needs
sample-aligned signals, so for STOI each played chunk is put back at the timestamp it represents
(chunks inserted by delay stretching are left out) and the codec lookahead is removed.

First and warm bursts. The listener's first burst is always measured (`first_burst_*`): a cold
jitter buffer and protection controller, as a listener joining a talkgroup hears it. With
`warmup` (the default) the clip is then sent again and that burst gives the main figures: the
protection controller and the delay estimator start it with what they learnt on this channel,
as they would on a talkgroup in use. `warmup=False` sends only the first burst.

Phase. Whether a packet makes its playout slot can depend on the phase between the talker's
packets and the listener's playout clock; :func:`phase_sweep` replays the same network draws
with every arrival shifted by 0-20 ms and reports the worst PESQ-WB.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from codec.errors import QualityError
from codec.frame import VoiceFrame
from codec.jitter import JitterConfig
from codec.opus import OPUS_CLOCK, EncoderSettings, Pcm16
from codec.protection import (
    ProtectionController,
    ProtectionPolicy,
    ProtectMode,
    ReceiverReport,
)
from codec.stream import VoicePlayer, VoiceSender

RATE = 16000  # PESQ-WB's rate; the whole evaluation runs wideband
_FIRST_BURST, _MEASURED_BURST = 1, 2
_GAP_S = 1.0  # silence between the first and the warm burst
_DRAIN_S = 5.0  # a burst must have finished playing this long after its last message


@dataclass(frozen=True, slots=True)
class Impairment:
    """Network model. `jitter_ms` follows netem: delay uniform in base ± jitter."""

    loss_pct: float = 0.0
    burst_len: float = 1.0  # mean length of a loss run; 1 = independent (random) loss
    jitter_ms: float = 0.0
    reorder_pct: float = 0.0  # chance a message is held back an extra 1-2 frame times
    base_delay_ms: float = 40.0

    def __post_init__(self) -> None:
        if not 0 <= self.loss_pct < 100:
            raise QualityError(f"loss {self.loss_pct}% outside 0-100")
        if self.burst_len < 1:
            raise QualityError("mean loss burst length must be >= 1")
        if self.jitter_ms < 0 or self.reorder_pct < 0 or self.base_delay_ms < 0:
            raise QualityError("jitter, reorder and delay must be non-negative")


class Channel:
    """Gilbert-Elliott loss (or Bernoulli when burst_len == 1) plus delay variation."""

    def __init__(
        self, impairment: Impairment, rng: np.random.Generator, shift_s: float = 0.0
    ) -> None:
        self.impairment = impairment
        self.shift_s = shift_s
        self._rng = rng
        loss = impairment.loss_pct / 100.0
        self._leave_bad = 1.0 / impairment.burst_len
        self._enter_bad = loss * self._leave_bad / (1.0 - loss) if loss else 0.0
        self._bad = False
        self.sent = 0
        self.lost = 0

    def arrival(self, send_time: float, frame_s: float) -> float | None:
        """Arrival time of a message sent at `send_time`, or None if it is lost."""
        imp = self.impairment
        self.sent += 1
        if imp.burst_len == 1.0:
            lost = bool(self._rng.random() < imp.loss_pct / 100.0)
        else:
            threshold = self._leave_bad if self._bad else self._enter_bad
            if self._rng.random() < threshold:
                self._bad = not self._bad
            lost = self._bad
        if lost:
            self.lost += 1
            return None
        jitter = imp.jitter_ms / 1000.0
        base = max(imp.base_delay_ms / 1000.0, jitter)
        delay = base + float(self._rng.uniform(-jitter, jitter))
        if imp.reorder_pct and self._rng.random() < imp.reorder_pct / 100.0:
            delay += frame_s * float(self._rng.uniform(1.0, 2.0))
        return send_time + delay + self.shift_s


@dataclass(frozen=True, slots=True)
class QualityConfig:
    bitrate: int = 16000
    protect: ProtectMode = ProtectMode.AUTO
    max_kbps_on_air: float = 32.0
    red_depth: int = 2  # 1: RED copies only (no RED2)
    complexity: int = 9
    frame_ms: int = 20
    warmup: bool = True  # False: only the first (cold) burst is sent
    report_delay_ms: float = 100.0  # receiver report -> gateway -> talker
    impairment: Impairment = field(default_factory=Impairment)
    jitter: JitterConfig = field(default_factory=JitterConfig)
    # Added to every arrival: the same network draws at another phase against the listener's
    # playout clock (what a phase sweep varies).
    arrival_shift_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class QualityResult:
    pesq_wb: float
    stoi: float
    expand_rate: float
    late_rate: float
    added_delay_mean_ms: float
    added_delay_p95_ms: float
    kbps_on_air: float
    channel_loss_pct: float
    fec_recovered: int
    red_recovered: int
    concealed: int
    final_bitrate: int
    final_fec: bool
    final_red: bool
    seconds: float
    red2_recovered: int = 0  # of red_recovered, from RED2 copies
    # The listener's first burst (a cold jitter buffer and protection controller); with
    # warmup=False it is the burst measured above.
    first_burst_pesq_wb: float = 0.0
    first_burst_stoi: float = 0.0
    first_burst_expand_rate: float = 0.0
    first_burst_late_rate: float = 0.0
    target_delay_ms: float = 0.0  # the jitter buffer's target playout delay at the end
    # Filled by phase_sweep(): the worst PESQ-WB (of either burst) over arrival shifts.
    phase_sweep_min: float | None = None
    phase_sweep_worst_shift_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Run:
    """Output of one simulated burst."""

    heard: list[Pcm16] = field(default_factory=list)
    aligned: Pcm16 = field(default_factory=lambda: np.zeros(0, dtype=np.int16))


@dataclass(frozen=True, slots=True)
class _BurstScore:
    pesq_wb: float
    stoi: float
    expand_rate: float
    late_rate: float
    fec: int
    red: int
    red2: int
    concealed: int


def evaluate(reference: Pcm16, config: QualityConfig, seed: int = 1) -> QualityResult:
    """Send `reference` (16 kHz mono int16, at least 1 s) through the pipeline and score it.

    The first burst is always measured (`first_burst_*`); with `warmup` the clip is then sent
    again and that second, warm burst gives the main figures.
    """
    if reference.dtype != np.int16 or reference.ndim != 1:
        raise QualityError("reference must be 1-D int16 PCM at 16 kHz")
    if len(reference) < RATE:
        raise QualityError("need at least one second of speech")
    rng = np.random.default_rng(seed)
    channel = Channel(config.impairment, rng, config.arrival_shift_ms / 1000.0)
    policy = ProtectionPolicy(
        mode=config.protect,
        bitrate=config.bitrate,
        max_bitrate_on_air=int(config.max_kbps_on_air * 1000),
        red_depth=config.red_depth,
    )
    settings = EncoderSettings(
        sample_rate=RATE,
        bitrate=config.bitrate,
        complexity=config.complexity,
        frame_ms=config.frame_ms,
    )
    sender = VoiceSender(settings, controller=ProtectionController(policy))
    player = VoicePlayer(RATE, config.jitter)
    sim = _Simulation(
        sender, player, channel, config, float(rng.uniform(0, config.frame_ms / 1000))
    )
    first = _measure(sim, reference, _FIRST_BURST, 0.0)
    main = first
    if config.warmup:
        main = _measure(sim, reference, _MEASURED_BURST, sim.next_pull + _GAP_S)
    stats = player.jitter.stats()
    counters = sender.counters()
    protection = sender.controller.settings(sim.next_pull) if sender.controller else None
    return QualityResult(
        pesq_wb=main.pesq_wb,
        stoi=main.stoi,
        expand_rate=main.expand_rate,
        late_rate=main.late_rate,
        added_delay_mean_ms=stats.mean_waiting_ms,
        added_delay_p95_ms=stats.p95_waiting_ms,
        kbps_on_air=counters.kbps_on_air,
        channel_loss_pct=100.0 * channel.lost / channel.sent if channel.sent else 0.0,
        fec_recovered=main.fec,
        red_recovered=main.red,
        concealed=main.concealed,
        final_bitrate=sender.encoder.settings.bitrate,
        final_fec=sender.encoder.settings.inband_fec,
        final_red=bool(protection and protection.red),
        seconds=len(reference) / RATE,
        red2_recovered=main.red2,
        first_burst_pesq_wb=first.pesq_wb,
        first_burst_stoi=first.stoi,
        first_burst_expand_rate=first.expand_rate,
        first_burst_late_rate=first.late_rate,
        target_delay_ms=stats.target_delay_ms,
    )


def _measure(sim: _Simulation, reference: Pcm16, burst: int, start: float) -> _BurstScore:
    """Send and play one burst; score what was heard. Counters and waiting times restart."""
    sim.sender.reset_counters()
    sim.channel.sent = sim.channel.lost = 0
    jitter = sim.player.jitter
    before = jitter.stats()
    jitter.reset_waiting()
    run = sim.run_burst(reference, burst, start)
    after = jitter.stats()
    heard = np.concatenate(run.heard) if run.heard else np.zeros(0, dtype=np.int16)
    lookahead = sim.sender.encoder.lookahead
    aligned = np.zeros(len(reference), dtype=np.int16)
    shifted = run.aligned[lookahead : lookahead + len(reference)]
    aligned[: len(shifted)] = shifted
    received = after.packets_received - before.packets_received
    late = after.late_discarded - before.late_discarded
    output = after.output_samples - before.output_samples
    expand = after.expand_samples - before.expand_samples
    return _BurstScore(
        pesq_wb=_pesq(reference, heard[: len(reference) + RATE]),
        stoi=_stoi(reference, aligned),
        expand_rate=expand / output if output else 0.0,
        late_rate=late / received if received else 0.0,
        fec=after.fec_recovered - before.fec_recovered,
        red=after.red_recovered - before.red_recovered,
        red2=after.red2_recovered - before.red2_recovered,
        concealed=after.concealed - before.concealed,
    )


def phase_sweep(
    reference: Pcm16,
    config: QualityConfig,
    seed: int = 1,
    span_ms: float = 20.0,
    step_ms: float = 0.5,
) -> QualityResult:
    """evaluate() at arrival shifts 0, step, ..., span ms; the shift 0 result, with the worst
    PESQ-WB of any shift and burst as `phase_sweep_min` (and the shift where it happened).

    The network draws are the same at every shift: only the phase between the talker's packets
    and the listener's playout clock changes.
    """
    if step_ms <= 0 or span_ms < 0:
        raise QualityError("phase sweep needs a positive step and a non-negative span")
    shifts = [i * step_ms for i in range(int(span_ms / step_ms + 1e-9) + 1)]
    base = evaluate(reference, replace(config, arrival_shift_ms=shifts[0]), seed)
    worst, worst_shift = min(base.pesq_wb, base.first_burst_pesq_wb), shifts[0]
    for shift in shifts[1:]:
        result = evaluate(reference, replace(config, arrival_shift_ms=shift), seed)
        score = min(result.pesq_wb, result.first_burst_pesq_wb)
        if score < worst:
            worst, worst_shift = score, shift
    return replace(base, phase_sweep_min=worst, phase_sweep_worst_shift_ms=worst_shift)


class _Simulation:
    """Discrete-event loop: sender ticks, arrivals, playout pulls, reports."""

    def __init__(
        self,
        sender: VoiceSender,
        player: VoicePlayer,
        channel: Channel,
        config: QualityConfig,
        pull_phase: float,
    ) -> None:
        self.sender = sender
        self.player = player
        self.channel = channel
        self.config = config
        self.frame_s = config.frame_ms / 1000.0
        self.next_pull = pull_phase
        self._order = itertools.count()
        self._arrivals: list[tuple[float, int, VoiceFrame]] = []
        self._reports: list[tuple[float, int, ReceiverReport]] = []

    def run_burst(self, pcm: Pcm16, burst: int, start: float) -> _Run:
        """Send `pcm` as one burst from `start`; play until it ends; return what was heard."""
        size = RATE * self.config.frame_ms // 1000
        frames = -(-len(pcm) // size)
        base_ts = (burst * 7919 * 960) & 0xFFFFFFFF  # arbitrary, exercises wrap-free offsets
        self.sender.start_burst(burst, start, timestamp=base_ts)
        run = _Run(aligned=np.zeros(len(pcm) + 4 * RATE, dtype=np.int16))
        for index in range(frames):
            now = start + index * self.frame_s
            chunk = pcm[index * size : (index + 1) * size]
            if len(chunk) < size:
                chunk = np.concatenate([chunk, np.zeros(size - len(chunk), dtype=np.int16)])
            self._send(self.sender.push_pcm(chunk, now), now)
            self._advance(now + self.frame_s, burst, run, base_ts)
        now = start + frames * self.frame_s
        self._send([self.sender.end_burst(now)], now)
        if not self._advance(now + _DRAIN_S, burst, run, base_ts):
            raise QualityError("the burst did not end: the jitter buffer never finished it")
        return run

    def _send(self, messages: list[VoiceFrame], now: float) -> None:
        for message in messages:
            arrival = self.channel.arrival(now, self.frame_s)
            if arrival is not None:
                heapq.heappush(self._arrivals, (arrival, next(self._order), message))

    def _advance(self, horizon: float, burst: int, run: _Run, base_ts: int) -> bool:
        """Run events before `horizon`; True as soon as `burst` has finished playing."""
        while True:
            t_arrival = self._arrivals[0][0] if self._arrivals else float("inf")
            t_report = self._reports[0][0] if self._reports else float("inf")
            now = min(t_arrival, t_report, self.next_pull)
            if now >= horizon:
                return False
            if now == t_arrival:
                self.player.receive(heapq.heappop(self._arrivals)[2], now)
            elif now == t_report:
                self.sender.on_report(heapq.heappop(self._reports)[2], now)
            elif self._pull(burst, run, base_ts):
                return True

    def _pull(self, burst: int, run: _Run, base_ts: int) -> bool:
        now = self.next_pull
        chunk = self.player.pull(now)
        item = chunk.item
        self.next_pull += item.duration / OPUS_CLOCK
        report = self.player.receiver_report(now, tg="sim")
        if report is not None:
            due = now + self.config.report_delay_ms / 1000.0
            heapq.heappush(self._reports, (due, next(self._order), report))
        if item.burst == burst:
            run.heard.append(chunk.pcm)
            if item.timestamp is not None:
                at = ((item.timestamp - base_ts) % (1 << 32)) * RATE // OPUS_CLOCK
                piece = chunk.pcm[: max(0, len(run.aligned) - at)]
                run.aligned[at : at + len(piece)] = piece
        return burst in item.ended


def _pesq(reference: Pcm16, degraded: Pcm16) -> float:
    from pesq import pesq

    if len(degraded) < RATE // 4:
        return 1.0
    try:
        return float(pesq(RATE, reference.astype(np.float64), degraded.astype(np.float64), "wb"))
    except Exception as exc:  # the pesq package raises its own untyped errors
        raise QualityError(f"PESQ failed: {exc}") from exc


def _stoi(reference: Pcm16, degraded: Pcm16) -> float:
    from pystoi import stoi

    return float(stoi(reference.astype(np.float64), degraded.astype(np.float64), RATE))
