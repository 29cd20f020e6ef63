"""A terminal's voice, sans-I/O: talking with loss-adaptive protection, listening with reports.

:class:`VoiceSession` is what every real endpoint (the paho and asyncio terminal clients, the
softphone, the simulator's live-audio terminals) uses for docs/protocol.md §9:

- talking: a :class:`~codec.stream.VoiceSender` with a
  :class:`~codec.protection.ProtectionController`; every `rr` the gateway forwards (§9.2) goes
  to :meth:`VoiceSession.on_forwarded`, so the next messages carry the protection the worst
  listener needs (§9.3). The controller's state outlives the burst.
- listening: a :class:`~codec.stream.VoicePlayer` (jitter buffer, decoder, reception monitor)
  for the one call being played; :meth:`VoiceSession.hear` returns the `rr` message due after
  a frame (one per second while the burst plays, one more as soon as its END arrives, none for
  an interval in which no message could be judged, §9.1) for the shell to publish on
  `ctrl/up` at QoS 0.

No sockets, no threads, no clock: `now` (monotonic seconds) comes in with every call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from codec.frame import VoiceFrame
from codec.jitter import JitterConfig
from codec.opus import EncoderSettings, Pcm16
from codec.protection import (
    ProtectionController,
    ProtectionPolicy,
    ProtectionSettings,
    ReceiverReport,
)
from codec.stream import PlayoutChunk, VoicePlayer, VoiceSender
from devices.values import (
    ScanList,
    SessionError,
    forwarded_report,
    key_fields,
    report_message,
)

_LOG = logging.getLogger(__name__)
# A terminal plays at least one packet behind the talker: on a clean path the measured target is
# a few ms, and a host's scheduling stalls (up to ~20 ms, on every listener at once, a few a
# minute on loopback) would otherwise make packets late. Under jitter the target is above it.
TERMINAL_JITTER = JitterConfig(min_delay_ms=20.0)


@dataclass(slots=True)
class VoiceCounters:
    reports_sent: int = 0  # `rr` handed to the shell to publish
    reports_applied: int = 0  # forwarded `rr` fed to the protection controller
    reports_rejected: int = 0  # forwarded `rr` that were not valid reports
    frames_heard: int = 0  # frames given to the player
    frames_ignored: int = 0  # frames of another call than the one played


class VoiceSession:
    """Encoder + protection controller (talk), player + reception monitor (listen)."""

    def __init__(
        self,
        sample_rate: int = 16000,
        *,
        policy: ProtectionPolicy | None = None,
        settings: EncoderSettings | None = None,
        packets_per_message: int = 1,
        jitter: JitterConfig | None = None,
        report_interval_s: float = 1.0,
        scan: ScanList | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._log = logger or _LOG
        policy = policy or ProtectionPolicy()
        base = settings or EncoderSettings(sample_rate=sample_rate, bitrate=policy.bitrate)
        self.controller = ProtectionController(policy, logger=self._log)
        self.sender = VoiceSender(
            base, packets_per_message, controller=self.controller, logger=self._log
        )
        self.player = VoicePlayer(
            sample_rate,
            jitter or TERMINAL_JITTER,
            report_interval_s=report_interval_s,
            logger=self._log,
        )
        self.sample_rate = sample_rate
        self.scan = scan
        self.counters = VoiceCounters()
        self.talking_key: str | None = None  # floor key of the burst being sent
        self.playing_key: str | None = None  # floor key of the call whose frames we play
        self._rejected_logged = False
        self._playing_ended = False

    # ---- talking ------------------------------------------------------------------------

    @property
    def talking(self) -> bool:
        return self.sender.burst is not None

    def protection(self, now: float) -> ProtectionSettings:
        """What the sender uses now (for a UI or a log line)."""
        return self.controller.settings(now)

    def start_talk(
        self, burst: int, now: float, timestamp: int = 0, key: str | None = None
    ) -> None:
        """The floor on `key` was granted with `burst`: encode from now on, protected as the
        reports so far say. `timestamp`: the 48 kHz timestamp of the first sample (§3)."""
        self.talking_key = key
        self.sender.start_burst(burst, now, timestamp)

    def talk(self, pcm: Pcm16, now: float) -> list[VoiceFrame]:
        """Microphone samples in; the voice frames they complete out (to publish on `key`)."""
        return self.sender.push_pcm(pcm, now)

    def speech_chunks(self, pcm: Pcm16) -> Iterator[tuple[float, Pcm16]]:
        """Recorded speech as a microphone would deliver it: (seconds from the start of the
        burst when the chunk has been captured, 20 ms of samples), for real-time pacing."""
        step = self.sample_rate // 50
        for index in range(0, len(pcm), step):
            chunk = np.ascontiguousarray(pcm[index : index + step])
            yield (index + len(chunk)) / self.sample_rate, chunk

    def end_talk(self, now: float) -> VoiceFrame | None:
        """PTT released: the last message (END), or None if no burst was under way."""
        self.talking_key = None
        if self.sender.burst is None:
            return None
        return self.sender.end_burst(now)

    def on_forwarded(self, body: dict[str, Any], now: float) -> bool:
        """A `ctrl/down` message: if it is a forwarded `rr` (§9.2), adapt to it; True if so.

        The controller keeps every listener's estimate across bursts, so reports are applied
        whether or not a burst is under way (a report about a burst that just ended still says
        what the channel is like). An invalid report is counted and logged once.
        """
        if body.get("type") != "rr":
            return False
        try:
            report = forwarded_report(body)
        except SessionError as exc:
            self.counters.reports_rejected += 1
            if not self._rejected_logged:
                self._rejected_logged = True
                self._log.warning("ignoring an invalid forwarded receiver report: %s", exc)
            return True
        self.apply(report, now)
        return True

    def apply(self, report: ReceiverReport, now: float) -> None:
        """Feed a receiver report (already parsed) to the protection controller."""
        self.sender.on_report(report, now)
        self.counters.reports_applied += 1

    # ---- listening ----------------------------------------------------------------------

    def hear(self, key: str, frame: VoiceFrame, now: float) -> dict[str, Any] | None:
        """A received frame on floor `key`: play it if it is the call being played (the scan
        list decides when there is one), and return the `rr` message due now, if any."""
        if not self._plays(key, frame):
            self.counters.frames_ignored += 1
            return None
        self.playing_key = key
        self._playing_ended = frame.end
        self.player.receive(frame, now)
        self.counters.frames_heard += 1
        return self.report_due(now)

    def _plays(self, key: str, frame: VoiceFrame) -> bool:
        if self.scan is not None:
            return self.scan.offer(key)
        # Without a scan list: the call being played keeps the speaker until it ends; a new
        # burst (START) takes over.
        return self.playing_key in (None, key) or frame.start or self._playing_ended

    def report_due(self, now: float) -> dict[str, Any] | None:
        """The `rr` about the call being played if one is due now (§9.1 How often)."""
        key = self.playing_key
        if key is None:
            return None
        report = self.player.receiver_report(now, **key_fields(key))
        if report is None:
            return None
        self.counters.reports_sent += 1
        return report_message(report)

    def ended(self, key: str) -> None:
        """The floor on `key` went idle: another call may be played."""
        if self.scan is not None:
            self.scan.ended(key)
        if self.playing_key == key:
            self.playing_key = None

    def pull(self, now: float) -> PlayoutChunk:
        """The next chunk of audio to play (its length follows the playout item)."""
        return self.player.pull(now)
