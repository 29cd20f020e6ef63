"""One console talk target's floor and voice, sans-I/O: press, PCM, release and the gateway's
control replies in; MQTT publishes and floor notices for the console out.

A `Speaker` is what a terminal's PTT button and microphone are, for a dispatcher account's
talker id (`xixin-u-<name>`, docs/protocol.md §5.4): it asks for the floor with the same
`floor_request` a terminal sends (so floor control, priority and scope checks, relaying and
recording apply unchanged), encodes the microphone's 16 kHz PCM with Opus into §3 frames once
granted, and ends the burst with END and `floor_release`. Audio that arrives between the press
and the grant is kept (up to `PREGRANT_S`) and sent first, so the first words are not lost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np

from codec.frame import VoiceFrame, encode_frame
from codec.opus import OPUS_CLOCK
from codec.stream import VoiceSender
from gateway.voice.targets import PCM_RATE, Target
from protocol import topics

PREGRANT_S: Final = 2.0  # audio kept between press and grant
ANSWER_TIMEOUT_S: Final = 6.0  # no answer to a floor request within this: denied (`no_answer`)
_PREGRANT_SAMPLES: Final = int(PREGRANT_S * PCM_RATE)
#: Talking, audio may run ahead of real time by this much (network bunching); beyond, it is
#: dropped: a client sending faster than it speaks cannot flood the relay and its listeners.
AHEAD_S: Final = 1.0

State = Literal["idle", "requesting", "queued", "talking"]
NoticeState = Literal["granted", "queued", "denied", "preempted", "released"]
#: (holder, queued devices in grant order) of the target's floor, as the gateway sees it now
FloorView = Callable[[], tuple[str | None, tuple[str, ...]]]


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0


@dataclass(frozen=True, slots=True)
class Notice:
    """What the console is told: `{"type":"floor","state","by","reason"}` (+ burst, position)."""

    state: NoticeState
    by: str | None = None
    reason: str | None = None
    burst: int | None = None
    position: int | None = None

    def message(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "floor", "state": self.state, "by": self.by, "reason": self.reason,
        }  # fmt: skip
        if self.burst is not None:
            body["burst"] = self.burst
        if self.position is not None:
            body["position"] = self.position
        return body


@dataclass(slots=True)
class Output:
    publishes: list[Publish] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)


class Speaker:
    def __init__(
        self,
        talker: str,
        target: Target,
        floor_view: FloorView,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.talker = talker
        self.target = target
        self.floor_view = floor_view
        self.wall = wall
        self.state: State = "idle"
        self.burst: int | None = None
        self.frames_sent = 0
        self.dropped_pcm = 0  # samples that arrived while not pressed, or beyond PREGRANT_S
        self._sender = VoiceSender()
        self._request_id: str | None = None
        self._deadline = 0.0
        self._ids = 0
        self._allowed = 0.0  # samples that may be sent now (a bucket refilled at PCM_RATE)
        self._refilled = 0.0
        self._pending: list[np.ndarray[Any, np.dtype[np.int16]]] = []
        self._pending_samples = 0
        self._uplink = (
            topics.tg_up(target.id, talker) if target.kind == "tg" else topics.call_up(talker)
        )

    @property
    def active(self) -> bool:
        return self.state != "idle"

    # ---- console input ------------------------------------------------------------------------

    def press(self, now: float) -> Output:
        out = Output()
        if self.state != "idle":
            return out
        self._ids += 1
        self._request_id = f"console-{self._ids}"
        self.state = "requesting"
        self._deadline = now + ANSWER_TIMEOUT_S
        self._control(out, "floor_request", id=self._request_id)
        return out

    def release(self, now: float) -> Output:
        out = Output()
        if self.state == "idle":
            return out
        if self.state == "talking":
            self._end_burst(out, now)
        self.state = "idle"
        self._clear_pending()
        self._ids += 1
        self._control(out, "floor_release", id=f"console-{self._ids}")
        out.notices.append(Notice("released"))
        return out

    def pcm(self, data: bytes, now: float) -> Output:
        """Microphone samples (16 kHz s16le); sent once granted, kept while waiting."""
        out = Output()
        samples = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int16)
        if self.state == "talking":
            ceiling = (PREGRANT_S + AHEAD_S) * PCM_RATE
            self._allowed = min(ceiling, self._allowed + (now - self._refilled) * PCM_RATE)
            self._refilled = now
            if len(samples) > self._allowed:
                self.dropped_pcm += len(samples)
                return out
            self._allowed -= len(samples)
            self._send(out, self._sender.push_pcm(samples, now))
        elif self.state in ("requesting", "queued"):
            self._pending.append(samples)
            self._pending_samples += len(samples)
            while self._pending_samples > _PREGRANT_SAMPLES:
                dropped = self._pending.pop(0)
                self._pending_samples -= len(dropped)
                self.dropped_pcm += len(dropped)
        else:
            self.dropped_pcm += len(samples)
        return out

    def tick(self, now: float) -> Output:
        out = Output()
        if self.state == "requesting" and now >= self._deadline:
            self.state = "idle"
            self._clear_pending()
            out.notices.append(Notice("denied", reason="no_answer"))
        return out

    # ---- the gateway's replies (`ctrl/down` of the talker) ------------------------------------

    def control(self, message: dict[str, Any], now: float) -> Output:
        out = Output()
        if not self._mine(message):
            return out
        kind = message.get("type")
        if kind == "floor_granted":
            self._granted(out, message, now)
        elif kind == "floor_queued" and self.state in ("requesting", "queued"):
            self.state = "queued"
            holder, _ = self.floor_view()
            position = message.get("position")
            place = position if isinstance(position, int) else None
            out.notices.append(Notice("queued", by=holder, position=place))
        elif kind == "floor_deny" and self.state in ("requesting", "queued"):
            self.state = "idle"
            self._clear_pending()
            out.notices.append(Notice("denied", reason=str(message.get("reason"))))
        elif kind == "floor_revoke" and self.state == "talking":
            self._revoked(out, str(message.get("reason")), now)
        return out

    def _mine(self, message: dict[str, Any]) -> bool:
        """A reply to this speaker's request, or news of its target's floor."""
        if "re" in message and message["re"] is not None:
            return bool(message["re"] == self._request_id)
        field_name, value = next(iter(self.target.request_field.items()))
        return bool(message.get(field_name) == value)

    def _granted(self, out: Output, message: dict[str, Any], now: float) -> None:
        burst = message.get("burst")
        if not isinstance(burst, int):
            return
        if self.state == "talking":
            return  # a repeated grant of the burst we are sending
        if self.state == "idle":  # granted after we let go: give it back
            self._control(out, "floor_release", id=f"console-{self._ids}")
            return
        self.state = "talking"
        self.burst = burst
        self._allowed = (PREGRANT_S + AHEAD_S) * PCM_RATE - self._pending_samples
        self._refilled = now
        self._sender.start_burst(burst, now, int(self.wall() * OPUS_CLOCK))
        out.notices.append(Notice("granted", burst=burst))
        if self._pending:
            waiting = np.concatenate(self._pending)
            self._clear_pending()
            self._send(out, self._sender.push_pcm(waiting, now))

    def _revoked(self, out: Output, reason: str, now: float) -> None:
        self._end_burst(out, now)
        self.state = "idle"
        self._ids += 1
        self._control(out, "floor_release", id=f"console-{self._ids}")
        if reason == "preempted":
            holder, queue = self.floor_view()
            by = queue[0] if queue else (holder if holder != self.talker else None)
            out.notices.append(Notice("preempted", by=by, reason=reason))
        else:
            out.notices.append(Notice("released", reason=reason))

    # ---- output -------------------------------------------------------------------------------

    def _control(self, out: Output, kind: str, **fields: Any) -> None:
        body = {"v": 1, "type": kind, **fields, **self.target.request_field}
        out.publishes.append(Publish(topics.ctrl_up(self.talker), json.dumps(body).encode(), 1))

    def _send(self, out: Output, frames: list[VoiceFrame]) -> None:
        for frame in frames:
            out.publishes.append(Publish(self._uplink, encode_frame(frame)))
        self.frames_sent += len(frames)

    def _end_burst(self, out: Output, now: float) -> None:
        self._send(out, [self._sender.end_burst(now)])
        self.burst = None

    def _clear_pending(self) -> None:
        self._pending = []
        self._pending_samples = 0
