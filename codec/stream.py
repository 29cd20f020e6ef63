"""Endpoint voice streams: PCM -> protected voice frames (sender), frames -> PCM (player).

These tie the pieces together for every endpoint (simulated terminal, softphone, dispatcher,
recorder): :class:`VoiceSender` encodes, packs docs/protocol.md §3 frames, applies the
:class:`~codec.protection.ProtectionController`'s decisions (bitrate, FEC, RED, RED2) and skips
DTX silence; :class:`VoicePlayer` feeds a :class:`~codec.jitter.JitterBuffer`, executes its playout
items with a real decoder and produces receiver reports. Both are sans-I/O: PCM, frames and
`now` in, PCM, frames and reports out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from codec.errors import CodecConfigError, OpusCodecError
from codec.frame import MAX_MESSAGE_MS, MIN_MESSAGE_MS, VoiceFrame
from codec.jitter import JitterBuffer, JitterConfig, PlayoutItem, PlayoutKind
from codec.opus import OPUS_CLOCK, EncoderSettings, OpusDecoder, OpusEncoder, Pcm16
from codec.pcm import level_dbfs
from codec.protection import (
    ProtectionController,
    ProtectionSettings,
    ReceiverReport,
    ReceptionMonitor,
)
from codec.redundancy import DeepRedundancyBudget

_LOG = logging.getLogger(__name__)
_DTX_MAX_BYTES = 2  # libopus marks a frame not worth transmitting with a 1-2 byte packet


@dataclass(frozen=True, slots=True)
class SenderCounters:
    messages: int
    packets: int
    dtx_skipped: int
    opus_bytes: int  # primary packets
    redundant_bytes: int  # RED copies (previous message)
    audio_samples: int  # 48 kHz samples of audio encoded (sent or skipped)
    redundant2_bytes: int = 0  # RED2 copies (two messages back)
    redundant2_copies: int = 0

    @property
    def kbps_on_air(self) -> float:
        """Opus payload (primary + redundant) per second of audio, in kbit/s."""
        if not self.audio_samples:
            return 0.0
        seconds = self.audio_samples / OPUS_CLOCK
        payload = self.opus_bytes + self.redundant_bytes + self.redundant2_bytes
        return payload * 8 / seconds / 1000.0


class VoiceSender:
    """Encodes talk bursts into voice frames with loss-adaptive protection."""

    def __init__(
        self,
        settings: EncoderSettings | None = None,
        packets_per_message: int = 1,
        controller: ProtectionController | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._encoder = OpusEncoder(settings or EncoderSettings())
        base = self._encoder.settings
        span = base.frame_ms * packets_per_message
        if not MIN_MESSAGE_MS <= span <= MAX_MESSAGE_MS:
            raise CodecConfigError(f"{packets_per_message} x {base.frame_ms} ms is not 20-60 ms")
        self.packets_per_message = packets_per_message
        self.controller = controller
        self._log = logger or _LOG
        self._frame_48k = OPUS_CLOCK * base.frame_ms // 1000
        self._pending_pcm = np.zeros(0, dtype=np.int16)
        self._packets: list[bytes] = []
        self._burst: int | None = None
        self._seq = 0
        self._ts = 0
        self._message_ts = 0
        self._previous_last: bytes | None = None  # last packet of the previous message if adjacent
        self._red = False
        # RED2: copies re-encoded at `_red2_bitrate` of the last packets of the adjacent
        # messages just sent, (packet count, copy or None), oldest first, at most two.
        self._red2_bitrate = 0
        self._red2_budget: DeepRedundancyBudget | None = None
        self._chain: list[tuple[int, bytes | None]] = []
        self._copy: bytes | None = None  # RED2 copy of the message being filled
        self._counts = dict.fromkeys(
            ("messages", "packets", "dtx", "opus", "red", "audio", "red2", "copies"), 0
        )

    @property
    def encoder(self) -> OpusEncoder:
        return self._encoder

    @property
    def burst(self) -> int | None:
        return self._burst

    def counters(self) -> SenderCounters:
        c = self._counts
        return SenderCounters(
            c["messages"],
            c["packets"],
            c["dtx"],
            c["opus"],
            c["red"],
            c["audio"],
            c["red2"],
            c["copies"],
        )

    def reset_counters(self) -> None:
        for key in self._counts:
            self._counts[key] = 0

    def on_report(self, report: ReceiverReport, now: float) -> None:
        if self.controller is not None:
            self._apply(self.controller.on_report(report, now))

    def _apply(self, wanted: ProtectionSettings) -> None:
        current = self._encoder.settings
        target = replace(
            current,
            bitrate=wanted.bitrate,
            expected_loss_pct=wanted.expected_loss_pct,
            inband_fec=wanted.fec,
        )
        if target != current:
            self._encoder.configure(target)
        self._red = wanted.red
        self._red2_bitrate = wanted.red2_bitrate if wanted.red else 0
        if self._red2_bitrate:
            budget = self._red2_budget
            cap, copy_bitrate = wanted.max_bitrate_on_air, wanted.red2_bitrate
            if budget is None or (budget.max_bitrate_on_air, budget.copy_bitrate) != (
                cap,
                copy_bitrate,
            ):
                self._red2_budget = DeepRedundancyBudget(cap, copy_bitrate)

    def start_burst(self, burst: int, now: float, timestamp: int = 0) -> None:
        """Begin a talk burst with the burst id from floor_granted."""
        if not 1 <= burst <= 0xFFFF:
            raise CodecConfigError(f"burst id {burst} outside 1-65535")
        self._burst = burst
        self._seq = 0
        self._ts = self._message_ts = timestamp & 0xFFFFFFFF
        self._pending_pcm = np.zeros(0, dtype=np.int16)
        self._packets = []
        self._previous_last = None
        self._chain = []
        self._copy = None
        self._encoder.reset()
        if self.controller is not None:
            self._apply(self.controller.settings(now))
        if self._red2_budget is not None:
            self._red2_budget.reset()

    def push_pcm(self, pcm: Pcm16, now: float) -> list[VoiceFrame]:
        """Add microphone samples (any length); return the messages completed by them."""
        if self._burst is None:
            raise CodecConfigError("push_pcm outside a burst: call start_burst first")
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise CodecConfigError("PCM must be a 1-D int16 array")
        data = np.concatenate([self._pending_pcm, pcm]) if len(self._pending_pcm) else pcm
        size = self._encoder.frame_samples
        out: list[VoiceFrame] = []
        whole = len(data) // size * size
        for start in range(0, whole, size):
            message = self._add_packet(self._encode(data[start : start + size]), now)
            if message is not None:
                out.append(message)
        self._pending_pcm = data[whole:].copy()
        return out

    def end_burst(self, now: float) -> VoiceFrame:
        """Flush (zero-padding the last frame) and return the message carrying END."""
        if self._burst is None:
            raise CodecConfigError("end_burst outside a burst")
        size = self._encoder.frame_samples
        if len(self._pending_pcm):
            tail = np.zeros(size, dtype=np.int16)
            tail[: len(self._pending_pcm)] = self._pending_pcm
            self._pending_pcm = np.zeros(0, dtype=np.int16)
            self._packets.append(self._encode_counted(tail))
        while (
            self._packets and len(self._packets) * self._encoder.settings.frame_ms < MIN_MESSAGE_MS
        ):
            self._packets.append(self._encode_counted(np.zeros(size, dtype=np.int16)))
        message = self._emit(end=True)
        self._burst = None
        return message

    def _encode_counted(self, frame: Pcm16) -> bytes:
        return self._encoder.encode(frame)

    def _encode(self, frame: Pcm16) -> bytes:
        """Encode one frame; if it ends a message, maybe also make its RED2 copy."""
        budget = self._red2_budget if self._red2_bitrate else None
        last = len(self._packets) + 1 == self.packets_per_message
        if budget is None or not last:
            return self._encoder.encode(frame)
        self._encoder.mark()
        packet = self._encoder.encode(frame)
        if budget.wants(len(packet)):
            copy = self._encoder.reencode(frame, self._red2_bitrate)
            budget.made(len(copy))
            self._copy = copy if len(copy) < len(packet) else packet  # then exact is cheaper
        return packet

    def _add_packet(self, packet: bytes, now: float) -> VoiceFrame | None:
        self._packets.append(packet)
        if len(self._packets) < self.packets_per_message:
            return None
        if all(len(p) <= _DTX_MAX_BYTES for p in self._packets) and self._encoder.settings.dtx:
            # Nothing worth sending: the receiver fills the gap with comfort noise.
            count = len(self._packets)
            self._counts["dtx"] += count
            self._counts["audio"] += count * self._frame_48k
            self._ts = (self._ts + count * self._frame_48k) & 0xFFFFFFFF
            self._message_ts = self._ts
            self._packets = []
            self._previous_last = None  # the next message is not adjacent: no RED copy
            self._chain = []
            self._copy = None
            return None
        message = self._emit(end=False)
        if self.controller is not None:
            self._apply(self.controller.settings(now))
        return message

    def _red2_copy(self, count: int) -> bytes | None:
        """The RED2 copy for a message of `count` packets, if the chain and budget allow.

        Message seq - 2 must be adjacent to seq - 1, and seq - 1 as long as this one, so the
        receiver can place the copy (docs/protocol.md §9.4).
        """
        if len(self._chain) < 2 or self._red2_budget is None or not self._red2_bitrate:
            return None
        (_, copy), (previous_count, _) = self._chain
        if copy is None or previous_count != count:
            return None
        return copy if self._red2_budget.affordable(len(copy)) else None

    def _emit(self, end: bool) -> VoiceFrame:
        assert self._burst is not None
        packets = tuple(self._packets)
        redundant = self._previous_last if self._red and packets else None
        redundant2 = self._red2_copy(len(packets)) if redundant is not None else None
        frame = VoiceFrame(
            burst=self._burst,
            seq=self._seq,
            timestamp=self._message_ts,
            frame_ms=self._encoder.settings.frame_ms,
            packets=packets,
            start=self._seq == 0,
            end=end,
            fec=self._encoder.settings.inband_fec,
            redundant=redundant,
            redundant2=redundant2,
        )
        duration_s = len(packets) * self._frame_48k / OPUS_CLOCK
        primary_bytes = sum(len(p) for p in packets)
        red_bytes = len(redundant) if redundant else 0
        red2_bytes = len(redundant2) if redundant2 else 0
        if self._red2_budget is not None and self._red2_bitrate:
            self._red2_budget.sent(duration_s, primary_bytes + red_bytes, red2_bytes)
        self._chain = [*self._chain[-1:], (len(packets), self._copy)]
        self._copy = None
        c = self._counts
        c["messages"] += 1
        c["packets"] += len(packets)
        c["opus"] += primary_bytes
        c["red"] += red_bytes
        c["red2"] += red2_bytes
        c["copies"] += 1 if redundant2 else 0
        c["audio"] += len(packets) * self._frame_48k
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._message_ts + len(packets) * self._frame_48k) & 0xFFFFFFFF
        self._message_ts = self._ts
        self._previous_last = packets[-1] if packets else None
        self._packets = []
        return frame


@dataclass(frozen=True, slots=True)
class PlayoutChunk:
    pcm: Pcm16
    item: PlayoutItem
    level_dbfs: float


class VoicePlayer:
    """Jitter buffer + decoder + reception monitor for one listening endpoint."""

    def __init__(
        self,
        sample_rate: int = 16000,
        config: JitterConfig | None = None,
        quiet_dbfs: float = -55.0,
        report_interval_s: float = 1.0,
        logger: logging.Logger | None = None,
    ) -> None:
        self._log = logger or _LOG
        self.jitter = JitterBuffer(config, logger=self._log)
        self.monitor = ReceptionMonitor(report_interval_s)
        self._decoder = OpusDecoder(sample_rate)
        self.sample_rate = sample_rate
        self.quiet_dbfs = quiet_dbfs
        self._quiet = False
        self._late_seen = 0
        self.decode_errors = 0

    def receive(self, frame: VoiceFrame, now: float) -> None:
        self.monitor.on_frame(frame, now)
        self.jitter.push(frame, now)
        late = self.jitter.late_discarded
        if late > self._late_seen:
            self.monitor.note_late(late - self._late_seen)
            self._late_seen = late

    def receiver_report(
        self, now: float, tg: str | None = None, call: str | None = None
    ) -> ReceiverReport | None:
        return self.monitor.poll(now, tg=tg, call=call)

    def pull(self, now: float) -> PlayoutChunk:
        """Produce the next chunk of audio (its length follows the playout item)."""
        item = self.jitter.pull(now, quiet=self._quiet)
        pcm, level = self._render(item)
        if item.droppable and level < self.quiet_dbfs:
            # Accelerate: this packet's audio is quiet, so skipping it is inaudible.
            self.jitter.drop(item)
            item = self.jitter.pull(now, quiet=True)
            pcm, level = self._render(item)
        self._quiet = item.kind is PlayoutKind.SILENCE or level < self.quiet_dbfs
        return PlayoutChunk(pcm, item, level)

    def _render(self, item: PlayoutItem) -> tuple[Pcm16, float]:
        if item.burst_start:
            self._decoder.reset()
        samples = self._decoder.samples_for(item.duration)
        try:
            pcm = self._execute(item, samples)
        except OpusCodecError as exc:
            self.decode_errors += 1
            self._log.warning("undecodable packet in burst %s: %s", item.burst, exc)
            pcm = self._decoder.conceal(samples)
        return pcm, level_dbfs(pcm)

    def _execute(self, item: PlayoutItem, samples: int) -> Pcm16:
        if item.kind in (PlayoutKind.NORMAL, PlayoutKind.RED):
            assert item.packet is not None
            return self._decoder.decode(item.packet)
        if item.kind is PlayoutKind.FEC:
            assert item.packet is not None
            return self._decoder.decode_fec(item.packet, samples)
        if item.kind in (PlayoutKind.EXPAND, PlayoutKind.CNG):
            return self._decoder.conceal(samples)
        return np.zeros(samples, dtype=np.int16)
