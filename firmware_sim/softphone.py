"""The softphone: a PC as a handheld — microphone, speaker, PTT — on the real protocol client.

:class:`Softphone` owns an :class:`AsyncTerminalClient`, encodes the microphone while it holds
the floor (real-time pace: 20 ms of audio per tick) with loss-adaptive protection driven by the
receiver reports the gateway forwards, and plays what it receives through the jitter buffer and
decoder, sending receiver reports — all through one :class:`devices.voice.VoiceSession`. The
keyboard UI around it is :mod:`xixin.commands.terminal`; tests drive it directly with WAV files
in place of a sound card.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from codec.protection import ProtectionPolicy
from devices.aio_client import AsyncTerminalClient
from devices.session import (
    Command,
    Control,
    FloorNews,
    FrameIn,
    Incoming,
    PendingRequest,
    Reply,
    body_key,
    key_fields,
)
from devices.voice import VoiceSession
from firmware_sim.audio import CHUNK, RATE, Microphone, Speaker, WavMicrophone

log = logging.getLogger(__name__)
TICK_S = CHUNK / RATE  # 20 ms


@dataclass(slots=True)
class Ptt:
    key: str
    request_id: str
    phase: str = "requesting"  # requesting | queued | talking
    burst: int | None = None
    stop_at: float = float("inf")


class Softphone:
    """One handheld's worth of behaviour; also the client's TerminalHandler."""

    def __init__(
        self,
        client: AsyncTerminalClient,
        talkgroups: list[str],
        mic: Microphone,
        speaker: Speaker,
        logger: logging.Logger | None = None,
        policy: ProtectionPolicy | None = None,
    ) -> None:
        if not talkgroups:
            raise ValueError("the softphone needs at least one talkgroup")
        self.client = client
        self.talkgroups = list(talkgroups)
        self.selected = self.talkgroups[0]
        self.mic = mic
        self.speaker = speaker
        self.log = logger or log
        # Talk with loss-adaptive protection, listen with receiver reports (§9).
        self.voice = VoiceSession(RATE, policy=policy, logger=self.log)
        self.ptt: Ptt | None = None
        self.sos = False
        self.messages: list[str] = []  # texts, denials, revocations: the UI's message line
        self.heard_ms = 0.0
        self.sent_frames = 0
        self._task: asyncio.Task[None] | None = None
        self._next_pull = 0.0
        client.handler = self

    def note(self, text: str) -> None:
        self.messages.append(text)
        del self.messages[:-20]

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await self.client.start()
        self.client.affiliate_nowait(self.talkgroups)
        self._task = asyncio.create_task(self._run(), name="softphone")

    async def stop(self) -> None:
        if self.ptt is not None:
            self.release()
        if self._task is not None:
            self._task.cancel()
        await self.client.stop()
        self.mic.close()
        self.speaker.close()

    # ---- user actions -------------------------------------------------------------------

    def select(self, index: int) -> None:
        if 0 <= index < len(self.talkgroups) and self.ptt is None:
            self.selected = self.talkgroups[index]

    def press(self) -> None:
        if self.ptt is not None or not self.client.is_connected:
            return
        pending, message = self.client.session.floor_request(
            time.monotonic(), emergency=self.sos, **key_fields(self.selected)
        )
        self.ptt = Ptt(self.selected, pending.id)
        self.client.send_request(pending, message)

    def release(self) -> None:
        ptt, self.ptt = self.ptt, None
        if ptt is None:
            return
        now = time.monotonic()
        end = self.voice.end_talk(now) if ptt.phase == "talking" else None
        if end is not None:
            self.client.send_frame(end, key=ptt.key)
            self.sent_frames += 1
        if self.client.is_connected:
            self.client.send_request(*self.client.session.floor_release(now, **key_fields(ptt.key)))

    def toggle_sos(self) -> None:
        self.sos = not self.sos
        if self.client.is_connected:
            # with the position the client knows (`xixin terminal --position`), if any
            self.client.send_request(*self.client.sos_request(self.sos))

    # ---- TerminalHandler -----------------------------------------------------------------

    def on_connected(self, now: float) -> None:
        self.note("connected")

    def on_disconnected(self, now: float) -> None:
        self.ptt = None
        self.note("connection lost; reconnecting")

    def on_expired(self, request: PendingRequest, now: float) -> None:
        if self.ptt is not None and request.id == self.ptt.request_id:
            self.ptt = None
            self.note("no answer from the gateway")

    def on_incoming(self, incoming: Incoming, now: float) -> None:
        if isinstance(incoming, FrameIn):
            if incoming.frame is not None and incoming.key == self._listening_key():
                report = self.voice.hear(incoming.key, incoming.frame, now)
                if report is not None and self.client.is_connected:
                    self.client.send(self.client.session.report(report))
        elif isinstance(incoming, Control) and self.voice.on_forwarded(incoming.body, now):
            return  # a listener's report, forwarded by the gateway: the sender adapted
        elif isinstance(incoming, Reply | Control | FloorNews):
            if incoming.body.get("type") == "floor_idle":
                key = body_key(incoming.body)
                if key is not None:
                    self.voice.ended(key)
            self._floor(incoming.body, now)
        elif isinstance(incoming, Command):
            text = incoming.body.get("text")
            self.note(f"{incoming.cmd}: {text}" if text else f"command {incoming.cmd}")
            if incoming.cmd == "stun" and self.ptt is not None:
                self.release()
            if incoming.cmd == "radio_check":
                self.client.answer_radio_check(incoming.id)
                return
            known = ("text", "assign", "stun", "revive", "status")
            self.client.ack(incoming.id, incoming.cmd in known, None if incoming.cmd in known
                            else "unknown command")  # fmt: skip

    def _listening_key(self) -> str | None:
        """The call to play: the selected talkgroup if busy, else any busy one."""
        floors = self.client.session.floors
        me = self.client.device_id
        busy = [k for k, v in floors.items() if v.holder not in (None, me)]
        if self.selected in busy:
            return self.selected
        return busy[0] if busy else None

    def _floor(self, body: dict[str, Any], now: float) -> None:
        kind, ptt = body.get("type"), self.ptt
        if ptt is None or body_key(body) != ptt.key:
            return
        if kind == "floor_granted" and ptt.phase != "talking":
            burst = body.get("burst")
            if isinstance(burst, int):
                ptt.phase, ptt.burst = "talking", burst
                self.voice.start_talk(burst, now, key=ptt.key)
                if isinstance(self.mic, WavMicrophone):
                    self.mic.rewind()
        elif kind == "floor_queued":
            ptt.phase = "queued" if ptt.phase == "requesting" else ptt.phase
        elif kind in ("floor_deny", "error") and ptt.phase != "talking":
            self.note(f"floor denied: {body.get('reason') or body.get('code')}")
            self.ptt = None
        elif kind == "floor_revoke" and body.get("burst") == ptt.burst:
            grace = body.get("grace_ms")
            self.note(f"floor revoked: {body.get('reason')}")
            ptt.stop_at = now + (grace / 1000.0 if isinstance(grace, int) else 0.0)

    # ---- the 20 ms clock ---------------------------------------------------------------

    async def _run(self) -> None:
        start = time.monotonic()
        self._next_pull = start
        ticks = 0
        while True:
            ticks += 1
            await asyncio.sleep(max(0.0, start + ticks * TICK_S - time.monotonic()))
            try:
                self.tick(time.monotonic())
            except Exception:
                self.log.exception("softphone tick failed")

    def tick(self, now: float) -> None:
        ptt = self.ptt
        if ptt is not None and ptt.phase == "talking":
            if now >= ptt.stop_at:
                self.release()
            else:
                for frame in self.voice.talk(self.mic.read(CHUNK), now):
                    self.client.send_frame(frame, key=ptt.key)
                    self.sent_frames += 1
        while self._next_pull <= now:
            chunk = self.voice.pull(now)
            self.speaker.play(chunk.pcm)
            if chunk.item.kind.value != "silence":
                self.heard_ms += chunk.item.duration_ms
            self._next_pull += max(chunk.item.duration_ms, 10.0) / 1000.0

    # ---- what the UI shows ---------------------------------------------------------------

    def status(self) -> str:
        session = self.client.session
        view = session.floors.get(self.selected)
        ptt = self.ptt
        if not self.client.is_connected:
            floor = "offline"
        elif session.stunned:
            floor = "STUNNED by dispatch"
        elif ptt is not None and ptt.phase == "talking":
            floor = f"TALKING on {ptt.key}"
        elif ptt is not None and ptt.phase == "queued":
            floor = f"queued (position {view.position if view else '?'})"
        elif ptt is not None:
            floor = "requesting the floor…"
        elif view is not None and view.holder:
            floor = f"{view.holder} talking ({view.priority or 'normal'})"
        else:
            floor = "idle"
        tgs = " ".join(
            f"[{i + 1}:{tg}]" if tg == self.selected else f" {i + 1}:{tg} "
            for i, tg in enumerate(self.talkgroups)
        )
        sos = "  SOS!" if self.sos else ""
        return f"{self.client.device_id}  {tgs}  | {floor}{sos}"
