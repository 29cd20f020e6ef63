"""Listening from the console: talkgroup downlinks (and the account's private calls) decoded to
PCM for the browser, with who talks and where.

`ListenDecoder` is the sans-I/O core: MQTT messages in (`tg/{tg}/down` voice frames,
`tg/{tg}/ctrl` floor broadcasts, the talker's `voice/down`), console messages out:

- JSON `{"type":"burst_start","talkgroup","talker","talker_name","position":{lat,lon}|null,
  "burst"}` and `{"type":"burst_end","talkgroup","talker","burst"}`;
- binary audio: byte 0 the talkgroup's index in the session's list (255: a private call to
  the account), byte 1 the codec (1: PCM s16le 16 kHz mono), then the samples of one frame.

Decoding is on the server (docs/protocol.md §12.2 says why). A frame lost on the way is
concealed by the decoder so the audio keeps its timeline; a new burst starts a fresh decoder
state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from codec.errors import CodecError
from codec.frame import FLAG_END, FrameError, frame_audio
from codec.opus import OpusDecoder
from gateway.voice.targets import PCM_RATE
from protocol import topics

log = logging.getLogger(__name__)

CODEC_PCM16: Final = 1
CALL_INDEX: Final = 255
CALL_STREAM: Final = "call"  # the `talkgroup` of a private call's burst messages
_MAX_GAP: Final = 25  # frames concealed at most for a hole (0.5 s at 20 ms)

#: device -> (display name, {lat, lon} or None)
Describe = Callable[[str], tuple[str | None, dict[str, float] | None]]
Message = dict[str, Any] | bytes


@dataclass(slots=True)
class _Stream:
    index: int
    name: str
    decoder: OpusDecoder
    burst: int | None = None
    talker: str | None = None
    next_seq: int = 0
    open: bool = False


class ListenDecoder:
    def __init__(
        self,
        talkgroups: Sequence[str],
        own_talker: str | None,
        describe: Describe,
        holder: Callable[[str], str | None] = lambda _stream: None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.log = logger or log
        self.describe = describe
        self.holder = holder  # who holds a stream's floor now (talkgroup id or CALL_STREAM)
        self._streams: dict[str, _Stream] = {}
        for index, tg in enumerate(talkgroups):
            self._streams[topics.tg_down(tg)] = _Stream(index, tg, OpusDecoder(PCM_RATE))
        self._ctrl = {topics.tg_ctrl(tg): topics.tg_down(tg) for tg in talkgroups}
        if own_talker is not None:
            self._streams[topics.voice_down(own_talker)] = _Stream(
                CALL_INDEX, CALL_STREAM, OpusDecoder(PCM_RATE)
            )
        self.bad_frames = 0
        self.decoded_frames = 0

    def subscriptions(self) -> list[tuple[str, int]]:
        return [(t, 0) for t in self._streams] + [(t, 1) for t in self._ctrl]

    def handle(self, topic: str, payload: bytes) -> list[Message]:
        stream = self._streams.get(topic)
        if stream is not None:
            return self._frame(stream, payload)
        down = self._ctrl.get(topic)
        if down is not None:
            return self._floor(self._streams[down], payload)
        return []

    # ---- floor broadcasts ---------------------------------------------------------------------

    def _floor(self, stream: _Stream, payload: bytes) -> list[Message]:
        try:
            message = json.loads(payload)
        except (UnicodeDecodeError, ValueError):
            return []
        if not isinstance(message, dict):
            return []
        out: list[Message] = []
        if message.get("type") == "floor_taken" and isinstance(message.get("by"), str):
            burst = message.get("burst")
            if stream.open and stream.burst == burst:
                if stream.talker != message["by"]:  # its frames came first: now we know who
                    stream.talker = message["by"]
                    out.append(self._start_message(stream))
                return out  # else announced again (a repeated request): same burst
            out += self._end(stream)
            self._begin(stream, message["by"], burst if isinstance(burst, int) else None, out)
        elif message.get("type") == "floor_idle":
            out += self._end(stream)
        return out

    def _begin(
        self, stream: _Stream, talker: str | None, burst: int | None, out: list[Message]
    ) -> None:
        stream.open, stream.talker, stream.burst = True, talker, burst
        stream.decoder.reset()
        stream.next_seq = 0
        out.append(self._start_message(stream))

    def _start_message(self, stream: _Stream) -> dict[str, Any]:
        name, position = self.describe(stream.talker) if stream.talker else (None, None)
        return {
            "type": "burst_start",
            "talkgroup": stream.name,
            "talker": stream.talker,
            "talker_name": name,
            "position": position,
            "burst": stream.burst,
        }

    def _end(self, stream: _Stream) -> list[Message]:
        if not stream.open:
            return []
        stream.open = False
        return [
            {
                "type": "burst_end",
                "talkgroup": stream.name,
                "talker": stream.talker,
                "burst": stream.burst,
            }
        ]

    # ---- voice --------------------------------------------------------------------------------

    def _frame(self, stream: _Stream, payload: bytes) -> list[Message]:
        try:
            flags, burst, seq, frame_ms, packets = frame_audio(payload)
        except FrameError:
            self.bad_frames += 1
            return []
        out: list[Message] = []
        if stream.burst != burst or not stream.open:
            if stream.burst == burst and not stream.open:
                return out  # a straggler of a burst already ended
            out += self._end(stream)
            self._begin(stream, self.holder(stream.name), burst, out)
            stream.next_seq = seq
        missing = (seq - stream.next_seq) & 0xFFFF
        if missing >= 0x8000:
            return out  # late or repeated: already played past it
        try:
            pcm = [stream.decoder.conceal(frame_ms * PCM_RATE // 1000 * len(packets))
                   for _ in range(min(missing, _MAX_GAP))]  # fmt: skip
            pcm += [stream.decoder.decode(packet) for packet in packets if packet]
        except CodecError as exc:
            self.bad_frames += 1
            self.log.debug("undecodable frame on %s: %s", stream.name, exc)
            return out
        stream.next_seq = (seq + 1) & 0xFFFF
        self.decoded_frames += 1
        head = bytes((stream.index, CODEC_PCM16))
        out += [head + chunk.astype("<i2").tobytes() for chunk in pcm if len(chunk)]
        if flags & FLAG_END:
            out += self._end(stream)
        return out
