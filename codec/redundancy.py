"""Second-level redundancy (RED2, docs/protocol.md §9.4): which packets travel a third time.

With RED every message carries an exact copy of the previous message's last packet, so a packet
is lost only when two messages in a row are (p² of them at random loss p). Those double losses
are what is left to hear — each is a concealed 20 ms, which costs speech quality far more than
its share of time. A third exact copy would cost a whole primary stream; instead message N also
carries message N − 2's last packet re-encoded at a low bitrate from the encoder state before it
(:meth:`codec.opus.OpusEncoder.reencode`), so it decodes in the receiver's state almost like the
original. There is room for only some of them under the cap on air, so:

- a token bucket holds what the cap allows and what has been sent (primary packets and both
  kinds of copies), so RED2 never takes the stream above the cap for longer than the bucket's
  depth;
- the spare rate (cap minus primary and RED traffic, smoothed) over the cost of a RED2 copy gives
  the share of packets that can have one; they go to the largest primary packets of the recent
  past. In VBR Opus the large packets are the onsets and transitions whose concealment is most
  audible (measured: selecting by size recovers as much PESQ as selecting by the concealment
  error itself).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from codec.errors import CodecConfigError

_ALPHA = 0.05  # smoothing of the rates: about 20 messages
_HISTORY = 100  # packet sizes the threshold is taken from (2 s of 20 ms messages)


class DeepRedundancyBudget:
    """Token bucket and size threshold for RED2 copies under a cap on the bitrate on air."""

    def __init__(
        self, max_bitrate_on_air: int, copy_bitrate: int, bucket_ms: float = 200.0
    ) -> None:
        if max_bitrate_on_air <= 0 or copy_bitrate <= 0 or bucket_ms <= 0:
            raise CodecConfigError("the cap, the copies' bitrate and the bucket must be positive")
        self.max_bitrate_on_air = max_bitrate_on_air
        self.copy_bitrate = copy_bitrate
        self._depth_bits = max_bitrate_on_air * bucket_ms / 1000.0
        self._bits = 0.0
        self._spare_bits: float | None = None  # per message, after primary and RED traffic
        self._copy_bits: float | None = None  # per RED2 copy
        self._sizes: deque[int] = deque(maxlen=_HISTORY)

    @property
    def share(self) -> float:
        """The fraction of packets the spare rate can give a RED2 copy (0..1)."""
        if self._spare_bits is None or not self._copy_bits:
            return 0.0
        return min(1.0, max(0.0, self._spare_bits / self._copy_bits))

    def wants(self, packet_bytes: int) -> bool:
        """Should this primary packet get a RED2 copy? (Ask once per candidate packet.)"""
        self._sizes.append(packet_bytes)
        share = self.share
        if share <= 0.0 or self._copy_bits is None or self._bits < self._copy_bits:
            return False
        if packet_bytes * 8 <= self._copy_bits:
            return False  # no larger than its copy: (near) silence, which conceals inaudibly
        threshold = float(np.quantile(np.fromiter(self._sizes, dtype=float), 1.0 - share))
        return packet_bytes >= threshold

    def made(self, copy_bytes: int) -> None:
        """A RED2 copy of this size was encoded (sent or not): learn what copies cost."""
        bits = copy_bytes * 8.0
        if self._copy_bits is None:
            self._copy_bits = bits
        else:
            self._copy_bits += _ALPHA * (bits - self._copy_bits)

    def affordable(self, copy_bytes: int) -> bool:
        """Is there room in the bucket for a copy of this size now?"""
        return self._bits >= copy_bytes * 8

    def sent(self, duration_s: float, base_bytes: int, copy_bytes: int = 0) -> None:
        """Account a message: its duration, primary + RED bytes, and its RED2 copy's bytes."""
        allowance = self.max_bitrate_on_air * duration_s
        spare = allowance - base_bytes * 8
        if self._copy_bits is None:  # until a copy was made: what its bitrate promises
            self._copy_bits = self.copy_bitrate * duration_s
        # Starts from "no spare" and learns it: RED2 comes in gradually, never in a rush.
        previous = 0.0 if self._spare_bits is None else self._spare_bits
        self._spare_bits = previous + _ALPHA * (spare - previous)
        self._bits = min(self._depth_bits, self._bits + spare - copy_bytes * 8)

    def reset(self) -> None:
        """Start a burst with an empty bucket (the learnt rates are kept)."""
        self._bits = 0.0
