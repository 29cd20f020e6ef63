"""Loss-adaptive protection (docs/protocol.md §9): receiver reports and the sender's policy.

Receivers measure each burst with :class:`ReceptionMonitor` (RFC 3550 style: loss from sequence
numbers, interarrival jitter) and send a :class:`ReceiverReport` (`rr`) about once a second.
The talker's :class:`ProtectionController` turns the reports of all its listeners into
:class:`ProtectionSettings` — bitrate, expected-loss %, in-band FEC, redundancy (RED) — within a
cap on the bitrate on air, and drops back once the channel has been clean for a while.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from enum import StrEnum

from codec.errors import CodecConfigError, ReportError
from codec.frame import VoiceFrame
from codec.opus import BITRATE_MAX, BITRATE_MIN, OPUS_CLOCK

_LOG = logging.getLogger(__name__)
_SEQ_MOD = 1 << 16


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """What a receiver measured on one burst (docs/protocol.md §9). Its `rr` message is built
    and parsed by the protocol package; the talkgroup or call names the stream, nothing more."""

    burst: int
    loss_pct: float
    jitter_ms: float
    tg: str | None = None
    call: str | None = None
    expected: int | None = None
    received: int | None = None
    late_pct: float | None = None
    interval_ms: int | None = None
    sender: str | None = None  # `from`: set by the gateway when it forwards the report

    def __post_init__(self) -> None:
        if (self.tg is None) == (self.call is None):
            raise ReportError("a report names exactly one of tg or call")
        if not 1 <= self.burst <= 0xFFFF:
            raise ReportError(f"burst {self.burst} outside 1-65535")
        for name in ("loss_pct", "late_pct"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and 0.0 <= value <= 100.0):
                raise ReportError(f"{name} {value} outside 0-100")
        if not (math.isfinite(self.jitter_ms) and 0.0 <= self.jitter_ms <= 60_000.0):
            raise ReportError(f"jitter_ms {self.jitter_ms} outside 0-60000")
        for name in ("expected", "received", "interval_ms"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1_000_000:
                raise ReportError(f"{name} {value} outside 0-1000000")


class ReceptionMonitor:
    """Receiver-side measurement of one stream of bursts; produces a report per interval.

    Loss counts messages (not RED copies) missing from the sequence. A message is judged only
    once `reorder_slack` later messages have arrived (or the burst has ended), so a reordered
    message is not reported lost and then found.
    """

    def __init__(self, interval_s: float = 1.0, reorder_slack: int = 3) -> None:
        if interval_s <= 0 or reorder_slack < 0:
            raise CodecConfigError("report interval must be positive, reorder slack >= 0")
        self.interval_s = interval_s
        self.reorder_slack = reorder_slack
        self._burst: int | None = None
        self._highest = -1  # unwrapped; sequence numbers start at 0 in every burst
        self._judged_upto = -1  # messages up to here are already in a report
        self._arrived: set[int] = set()
        self._jitter = 0.0
        self._last_transit: float | None = None
        self._last_report = 0.0
        self._ended = False
        self._late = 0

    def on_frame(self, frame: VoiceFrame, now: float) -> None:
        if frame.burst != self._burst:
            self._burst = frame.burst
            self._highest = self._judged_upto = -1
            self._late = 0
            self._arrived.clear()
            self._last_transit = None
            self._last_report = now
            self._ended = False
        seq = self._unwrap(frame.seq)
        if seq in self._arrived or seq <= self._judged_upto:
            return  # duplicate, or too late to change a report already sent
        self._arrived.add(seq)
        self._highest = max(self._highest, seq)
        # RFC 3550 §6.4.1 interarrival jitter, in seconds, smoothed by 1/16.
        transit = now - frame.timestamp / OPUS_CLOCK
        if self._last_transit is not None:
            delta = transit - self._last_transit
            # Timestamps wrap every ~24.8 h; a wrap shows up as a huge delta: skip that sample.
            if abs(delta) < 60.0:
                self._jitter += (abs(delta) - self._jitter) / 16.0
        self._last_transit = transit
        if frame.end:
            self._ended = True

    def note_late(self, count: int = 1) -> None:
        """Packets that arrived but too late to play (from the jitter buffer)."""
        self._late += count

    def _unwrap(self, raw: int) -> int:
        base = max(self._highest, 0)
        return base + ((raw - base + _SEQ_MOD // 2) % _SEQ_MOD) - _SEQ_MOD // 2

    def poll(
        self, now: float, tg: str | None = None, call: str | None = None
    ) -> ReceiverReport | None:
        """A report if one is due (interval elapsed, or the burst just ended), else None."""
        if self._burst is None:
            return None
        if not self._ended and now - self._last_report < self.interval_s:
            return None
        upto = self._highest if self._ended else self._highest - self.reorder_slack
        expected = upto - self._judged_upto
        if expected <= 0:
            return None
        received = sum(1 for seq in range(self._judged_upto + 1, upto + 1) if seq in self._arrived)
        late = 100.0 * min(self._late, received) / received if received else 0.0
        report = ReceiverReport(
            burst=self._burst,
            loss_pct=100.0 * (expected - received) / expected,
            jitter_ms=self._jitter * 1000.0,
            tg=tg,
            call=call,
            expected=expected,
            received=received,
            late_pct=late,
            interval_ms=round((now - self._last_report) * 1000),
        )
        self._arrived = {seq for seq in self._arrived if seq > upto}
        self._judged_upto = upto
        self._late = 0
        self._last_report = now
        self._ended = False
        return report


class ProtectMode(StrEnum):
    AUTO = "auto"
    OFF = "off"
    FEC = "fec"
    RED = "red"


@dataclass(frozen=True, slots=True)
class ProtectionPolicy:
    mode: ProtectMode = ProtectMode.AUTO
    bitrate: int = 16000  # primary bitrate on a clean channel
    max_bitrate_on_air: int = 32000  # primary + redundant Opus payload
    fec_min_bitrate: int = 20000  # libopus 1.3.1 codes no wideband LBRR below about this
    red_min_bitrate: int = 12000  # a RED copy only pays off with a primary at least this good
    red_depth: int = 2  # 2: RED also sends low-bitrate copies two messages late (RED2)
    red2_bitrate: int = 8000  # bitrate of those copies; as many as the cap leaves room for
    fec_on_pct: float = 1.0  # loss at which protection starts (FEC when RED does not fit)
    red_on_pct: float = 1.0  # loss at which redundancy starts
    release_ratio: float = 0.5  # a level is left below release_ratio x its entry loss...
    release_hold_s: float = 5.0  # ...sustained this long
    forced_loss_pct: int = 5  # expected loss told to the encoder in forced `fec` mode
    report_timeout_s: float = 30.0  # forget reports older than this

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "mode", ProtectMode(self.mode))  # accept "auto" etc.
        except ValueError as exc:
            raise CodecConfigError(f"unknown protection mode {self.mode!r}") from exc
        if not BITRATE_MIN <= self.bitrate <= BITRATE_MAX:
            raise CodecConfigError(f"bitrate {self.bitrate} outside {BITRATE_MIN}-{BITRATE_MAX}")
        if self.max_bitrate_on_air < self.bitrate:
            raise CodecConfigError("the on-air cap is below the clean-channel bitrate")
        if not 0 < self.fec_on_pct <= self.red_on_pct <= 100:
            raise CodecConfigError("need 0 < fec_on_pct <= red_on_pct <= 100")
        if not 0 < self.release_ratio <= 1 or self.release_hold_s < 0:
            raise CodecConfigError("bad release ratio or hold")
        if self.red_depth not in (1, 2):
            raise CodecConfigError(f"RED depth {self.red_depth} is not 1 or 2")
        if not BITRATE_MIN <= self.red2_bitrate <= BITRATE_MAX:
            raise CodecConfigError(f"RED2 bitrate {self.red2_bitrate} out of range")


@dataclass(frozen=True, slots=True)
class ProtectionSettings:
    bitrate: int
    expected_loss_pct: int
    fec: bool
    red: bool
    red2_bitrate: int = 0  # RED2 copies at this bitrate (0: none)...
    max_bitrate_on_air: int = 0  # ...as many as fit under this cap with everything else

    @property
    def bitrate_on_air(self) -> int:
        return self.bitrate * (2 if self.red else 1)


@dataclass(slots=True)
class _Listener:
    loss: float
    updated: float


@dataclass(slots=True)
class _State:
    level: int = 0  # 0 clean, 1 FEC, 2 RED
    calm_since: float | None = None
    listeners: dict[str, _Listener] = field(default_factory=dict)


class ProtectionController:
    """The talker's policy. Feed it every forwarded report; ask `settings(now)` per message."""

    def __init__(
        self, policy: ProtectionPolicy | None = None, logger: logging.Logger | None = None
    ):
        self.policy = policy or ProtectionPolicy()
        self._log = logger or _LOG
        self._state = _State()

    @property
    def loss_estimate_pct(self) -> float:
        listeners = self._state.listeners.values()
        return max((item.loss for item in listeners), default=0.0)

    def on_report(self, report: ReceiverReport, now: float) -> ProtectionSettings:
        source = report.sender or ""
        weight = 1.0 if (report.expected or 0) >= 25 else 0.5  # short intervals are noisy
        # What the listener misses at playout: lost, or arrived too late to be played. A RED
        # copy or LBRR in the next message restores either.
        received_share = 1.0 - report.loss_pct / 100.0
        missing = min(100.0, report.loss_pct + (report.late_pct or 0.0) * received_share)
        listener = self._state.listeners.get(source)
        if listener is None:
            listener = self._state.listeners[source] = _Listener(missing, now)
        else:
            # Fast attack, slow release: protection reacts at once and relaxes gradually.
            alpha = 0.7 if missing > listener.loss else 0.25
            listener.loss += weight * alpha * (missing - listener.loss)
            listener.updated = now
        return self.settings(now)

    def settings(self, now: float) -> ProtectionSettings:
        policy = self.policy
        self._expire(now)
        loss = self.loss_estimate_pct
        if policy.mode is ProtectMode.OFF:
            return self._shape(0, loss)
        if policy.mode is ProtectMode.FEC:
            return self._shape(1, max(loss, float(policy.forced_loss_pct)))
        if policy.mode is ProtectMode.RED:
            return self._shape(2, loss)
        return self._shape(self._auto_level(loss, now), loss)

    def _expire(self, now: float) -> None:
        listeners = self._state.listeners
        for source in [
            s for s, item in listeners.items() if now - item.updated > self.policy.report_timeout_s
        ]:
            del listeners[source]

    def _auto_level(self, loss: float, now: float) -> int:
        policy = self.policy
        state = self._state
        wanted = 2 if loss >= policy.red_on_pct else 1 if loss >= policy.fec_on_pct else 0
        if wanted >= state.level:
            if wanted > state.level:
                self._log.info(
                    "protection up: level %d -> %d at %.1f%% loss", state.level, wanted, loss
                )
            state.level = wanted
            state.calm_since = None
            return wanted
        entry = policy.red_on_pct if state.level == 2 else policy.fec_on_pct
        if loss >= policy.release_ratio * entry:
            state.calm_since = None
            return state.level
        if state.calm_since is None:
            state.calm_since = now
        if now - state.calm_since >= policy.release_hold_s:
            self._log.info(
                "protection down: level %d -> %d at %.1f%% loss", state.level, wanted, loss
            )
            state.level = wanted
            state.calm_since = None
        return state.level

    def _shape(self, level: int, loss: float) -> ProtectionSettings:
        """Turn a protection level into encoder settings within the on-air cap.

        Redundancy first: a RED copy restores a lost packet bit-exactly and costs no quality
        on a clean channel, whereas libopus' LBRR costs about one PESQ point and needs about
        20 kbit/s. FEC is added to RED when the cap leaves the primary enough rate for LBRR;
        the RED copy then carries the LBRR of the packet before it (two packets of protection).
        FEC alone is the fallback when the cap cannot carry a usable RED copy.
        """
        policy = self.policy
        cap = policy.max_bitrate_on_air
        expected = max(1, min(100, math.ceil(loss)))
        if level == 0:
            return ProtectionSettings(policy.bitrate, 0, fec=False, red=False)
        red_primary = min(policy.bitrate, cap // 2, BITRATE_MAX)
        if level == 2 and red_primary >= policy.red_min_bitrate:
            if red_primary >= policy.fec_min_bitrate:
                return ProtectionSettings(red_primary, expected, fec=True, red=True)
            # Without LBRR, telling the encoder about loss only makes it code less efficiently.
            # The cap's remainder goes to RED2 copies, which cover double losses.
            red2 = policy.red2_bitrate if policy.red_depth == 2 else 0
            return ProtectionSettings(red_primary, 0, False, True, red2, cap)
        fec_bitrate = min(BITRATE_MAX, cap, max(policy.bitrate, policy.fec_min_bitrate))
        if fec_bitrate >= policy.fec_min_bitrate:
            return ProtectionSettings(fec_bitrate, expected, fec=True, red=False)
        self._log.debug("no protection fits in %d bit/s", cap)
        return ProtectionSettings(policy.bitrate, 0, fec=False, red=False)
