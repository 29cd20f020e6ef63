"""Voice on a terminal client, shared by :mod:`devices.client` and :mod:`devices.aio_client`.

Both clients talk and listen through a :class:`devices.voice.VoiceSession` (loss-adaptive
protection, docs/protocol.md §9) the same way; only how they send a frame, read the clock and
guard the session (a lock on the threaded paho client, nothing on the event loop) differ. Those
three are the hooks of :class:`ClientTalk`; :func:`voice_incoming` is the listening half.
:func:`paced` / :func:`apaced` release frames or microphone chunks at real-time pace.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from codec.frame import VoiceFrame
from codec.opus import Pcm16
from devices.errors import ClientError
from devices.session import Control, FloorNews, FrameIn, Incoming, body_key, target_key
from devices.voice import VoiceSession

__all__ = ["ClientTalk", "apaced", "frame_schedule", "paced", "voice_incoming"]

T = TypeVar("T")


def frame_schedule(frames: Iterable[VoiceFrame]) -> Iterator[tuple[float, VoiceFrame]]:
    """Each frame with when its audio would have been captured (seconds from the start): a
    message of N x 20 ms leaves N x 20 ms after the previous one."""
    audio_s = 0.0
    for frame in frames:
        audio_s += frame.frame_ms * len(frame.packets) / 1000.0
        yield audio_s, frame


def paced(
    schedule: Iterable[tuple[float, T]],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Iterator[T]:
    """Yield each item of `schedule` once its time (seconds from the first pull) has come."""
    start = clock()
    for due_s, item in schedule:
        delay = start + due_s - clock()
        if delay > 0:
            sleep(delay)
        yield item


async def apaced(
    schedule: Iterable[tuple[float, T]], clock: Callable[[], float]
) -> AsyncIterator[T]:
    """:func:`paced` on the event loop."""
    start = clock()
    for due_s, item in schedule:
        delay = start + due_s - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        yield item


class ClientTalk:
    """start_talk / talk / end_talk on the client's `voice` (a mixin of both clients)."""

    voice: VoiceSession | None

    def _talk_now(self) -> float:
        """The clock the voice session runs on."""
        raise NotImplementedError

    def _talk_guard(self) -> AbstractContextManager[object]:
        """Held while the voice session is touched (never while sending)."""
        return contextlib.nullcontext()

    def _send_talk_frame(self, frame: VoiceFrame, key: str) -> None:
        """Send one frame of the burst to the floor `key` (`tg` or ``call:{peer}``)."""
        raise NotImplementedError

    def _voice(self) -> VoiceSession:
        if self.voice is None:
            raise ClientError("this client was made without voice (voice=VoiceSession())")
        return self.voice

    def start_talk(self, burst: int, tg: str | None = None, call: str | None = None) -> None:
        """Start encoding a burst on a granted floor (`burst` from floor_granted)."""
        key = target_key(tg, call)
        voice = self._voice()
        with self._talk_guard():
            voice.start_talk(burst, self._talk_now(), key=key)

    def talk(self, pcm: Pcm16) -> int:
        """Encode microphone samples and send the frames they complete; returns how many."""
        voice = self._voice()
        with self._talk_guard():
            key = voice.talking_key
            if key is None:
                raise ClientError("talk() outside a burst: call start_talk first")
            frames = voice.talk(pcm, self._talk_now())
        for frame in frames:
            self._send_talk_frame(frame, key)
        return len(frames)

    def end_talk(self) -> None:
        """Send the burst's last message (END); nothing if no burst is under way."""
        voice = self._voice()
        with self._talk_guard():
            key = voice.talking_key
            frame = voice.end_talk(self._talk_now())
        if frame is not None and key is not None:
            self._send_talk_frame(frame, key)


def voice_incoming(voice: VoiceSession, incoming: Incoming, now: float) -> dict[str, Any] | None:
    """Feed one received message to `voice`: play frames, adapt to forwarded reports, end a
    call on `floor_idle`. Returns the receiver report that fell due (to send), if any."""
    if isinstance(incoming, FrameIn):
        if incoming.frame is not None:
            return voice.hear(incoming.key, incoming.frame, now)
    elif isinstance(incoming, Control):
        voice.on_forwarded(incoming.body, now)
    elif isinstance(incoming, FloorNews) and incoming.body.get("type") == "floor_idle":
        key = body_key(incoming.body)
        if key is not None:
            voice.ended(key)
    return None
