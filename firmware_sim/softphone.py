"""The softphone: a PC as a handheld — microphone, speaker, PTT — on the real protocol client.

:class:`Softphone` owns an :class:`AsyncTerminalClient`, encodes the microphone while it holds
the floor (real-time pace: 20 ms of audio per tick) with loss-adaptive protection driven by the
receiver reports the gateway forwards, and plays what it receives through the jitter buffer and
decoder, sending receiver reports — all through one :class:`devices.voice.VoiceSession`. The
keyboard UI around it is :mod:`xixin.commands.terminal`; tests drive it directly with WAV files
in place of a sound card.

What it measures, per burst: *access time* on the talking side (PTT press -> `floor_granted`),
and *mouth-to-ear* on the listening side. Like the simulator (:mod:`firmware_sim.voice`), the
softphone stamps each burst's frames with the wall clock of the moment capture began (48 kHz
ticks; the protocol leaves the origin to the sender), so a listener whose clock agrees with the
talker's (same host, or NTP-synchronised) reads from every frame when its audio entered the
microphone; mouth-to-ear is that time to the moment the decoded audio is handed to the speaker
(the sound card's own output buffer, one 20 ms period here, is not included). A frame from a
talker with another origin gives nonsense figures, and is not counted once it is a minute off.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
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
from firmware_sim.voice import ts_to_wall, wall_to_ts

log = logging.getLogger(__name__)
TICK_S = CHUNK / RATE  # 20 ms
_PLAYED = ("normal", "fec", "red")  # playout kinds that play received audio
MAX_CATCH_UP_S = 0.1  # the playout clock further behind than this restarts from now
_MAX_MOUTH_TO_EAR_MS = 60_000.0  # beyond this the talker's clock is not ours: not counted


@dataclass(slots=True)
class Ptt:
    key: str
    request_id: str
    phase: str = "requesting"  # requesting | queued | talking
    burst: int | None = None
    stop_at: float = float("inf")
    pressed_at: float = 0.0
    access_ms: float | None = None  # press -> floor_granted
    once: bool = False  # talking a file once: release when it is spoken


@dataclass(slots=True)
class HeardBurst:
    """One burst this softphone played: how much, and its mouth-to-ear delays (ms)."""

    burst: int
    key: str | None
    played_ms: float = 0.0
    mouth_to_ear_ms: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile (q in (0, 1]) of the mouth-to-ear delays, None if none."""
        values = sorted(self.mouth_to_ear_ms)
        if not values:
            return None
        return values[min(len(values), max(1, math.ceil(q * len(values)))) - 1]

    def summary(self) -> str:
        p50, p95 = self.percentile(0.5), self.percentile(0.95)
        where = f" on {self.key}" if self.key else ""
        if p50 is None or p95 is None:
            delays = "mouth-to-ear unknown"
        else:
            delays = f"mouth-to-ear p50 {p50:.0f} ms, p95 {p95:.0f} ms"
        return f"heard burst {self.burst}{where}: {self.played_ms / 1000:.1f} s, {delays}"


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
        self.notes_total = 0  # messages noted so far (the list keeps the last 20)
        self.heard_ms = 0.0
        self.sent_frames = 0
        self.access_ms: list[float] = []  # per granted press
        self.heard: list[HeardBurst] = []  # finished bursts, oldest first (the last 100)
        self._hearing: dict[int, HeardBurst] = {}
        self._once: WavMicrophone | None = None
        self.wall_offset = time.time() - time.monotonic()
        # When the 20 ms clock (capture and playout) ticks: at clock_origin + n * 20 ms
        # (monotonic; set before start(), e.g. to line up several softphones), else from start.
        self.clock_origin: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._next_pull = 0.0
        client.handler = self

    def note(self, text: str) -> None:
        self.messages.append(text)
        del self.messages[:-20]
        self.notes_total += 1

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

    def press(self) -> bool:
        """PTT pressed: request the floor on the selected talkgroup (False if it cannot)."""
        if self.ptt is not None or not self.client.is_connected:
            return False
        now = time.monotonic()
        pending, message = self.client.session.floor_request(
            now, emergency=self.sos, **key_fields(self.selected)
        )
        self.ptt = Ptt(self.selected, pending.id, pressed_at=now)
        self.client.send_request(pending, message)
        return True

    @property
    def ready(self) -> bool:
        """Connected, and the gateway accepted the selected talkgroup (affiliated)."""
        return self.client.is_connected and self.selected in self.client.session.talkgroups

    def talk_once(self, mic: WavMicrophone) -> bool:
        """Talk `mic`'s audio once: floor request, the audio at real-time pace from its start,
        release. False if the floor cannot be requested now (see `ready`)."""
        if self._once is not None or not self.press():
            return False
        assert self.ptt is not None
        self.ptt.once = True
        self._once = mic
        return True

    @property
    def talking_once(self) -> bool:
        """A talk_once is under way (requesting, queued or talking)."""
        return self._once is not None and self.ptt is not None and self.ptt.once

    def release(self) -> None:
        ptt, self.ptt = self.ptt, None
        if ptt is None:
            return
        now = time.monotonic()
        if ptt.once:
            self._once = None
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
        self._once = None
        self.note("connection lost; reconnecting")

    def on_expired(self, request: PendingRequest, now: float) -> None:
        if self.ptt is not None and request.id == self.ptt.request_id:
            self.ptt = None
            self._once = None
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
            if isinstance(incoming, Reply) and incoming.request.type == "affiliate":
                accepted = ", ".join(self.client.session.talkgroups) or "nothing"
                self.note(f"listening on {accepted}")
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
                # The burst starts with the next 20 ms of audio, captured by the next tick.
                ptt.phase, ptt.burst = "talking", burst
                ptt.access_ms = (now - ptt.pressed_at) * 1000.0
                self.access_ms.append(ptt.access_ms)
                del self.access_ms[:-100]
                self.note(f"floor granted on {ptt.key}: access time {ptt.access_ms:.0f} ms")
                (self._once if ptt.once and self._once else self.mic).rewind()
        elif kind == "floor_queued":
            ptt.phase = "queued" if ptt.phase == "requesting" else ptt.phase
        elif kind in ("floor_deny", "error") and ptt.phase != "talking":
            self.note(f"floor denied: {body.get('reason') or body.get('code')}")
            self.ptt = None
            self._once = None
        elif kind == "floor_revoke" and body.get("burst") == ptt.burst:
            grace = body.get("grace_ms")
            self.note(f"floor revoked: {body.get('reason')}")
            ptt.stop_at = now + (grace / 1000.0 if isinstance(grace, int) else 0.0)

    # ---- the 20 ms clock ---------------------------------------------------------------

    async def _run(self) -> None:
        start = self.clock_origin if self.clock_origin is not None else time.monotonic()
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
                self._capture(ptt, now)
        if now - self._next_pull > MAX_CATCH_UP_S:
            # The loop stalled: playing all that was missed at once would only queue it at the
            # speaker, adding the stall to the delay for good. The jitter buffer holds on.
            self._next_pull = now
        while self._next_pull <= now:
            chunk = self.voice.pull(now)
            self.speaker.play(chunk.pcm)
            self._heard(chunk.item, now)
            self._next_pull += max(chunk.item.duration_ms, 10.0) / 1000.0

    def _capture(self, ptt: Ptt, now: float) -> None:
        """Encode and send the 20 ms of audio the microphone captured up to `now`."""
        assert ptt.burst is not None
        once = self._once if ptt.once else None
        if once is not None and once.remaining <= 0:
            self.release()  # the file has been spoken
            return
        if self.voice.sender.burst != ptt.burst:
            # Frame timestamps: the wall clock at which this burst's first sample was captured.
            stamp = wall_to_ts(self.wall(now) - TICK_S)
            self.voice.start_talk(ptt.burst, now, timestamp=stamp, key=ptt.key)
        pcm = (once or self.mic).read(CHUNK)
        for frame in self.voice.talk(pcm, now):
            self.client.send_frame(frame, key=ptt.key)
            self.sent_frames += 1

    def wall(self, now: float) -> float:
        """The wall clock (s) at monotonic `now`."""
        return now + self.wall_offset

    def _heard(self, item: Any, now: float) -> None:
        """Account for one played chunk: time heard, mouth-to-ear, bursts that finished."""
        for burst in item.ended:
            self._finish(burst)
        kind = item.kind.value
        if kind == "silence":
            for burst in list(self._hearing):
                self._finish(burst)
            return
        self.heard_ms += item.duration_ms
        if item.burst is None:
            return
        record = self._hearing.get(item.burst)
        if record is None:
            record = self._hearing[item.burst] = HeardBurst(item.burst, self._listening_key())
        record.played_ms += item.duration_ms
        if kind in _PLAYED and item.timestamp is not None:
            wall = self.wall(now)
            delay_ms = (wall - ts_to_wall(item.timestamp, wall)) * 1000.0
            if delay_ms < _MAX_MOUTH_TO_EAR_MS:
                record.mouth_to_ear_ms.append(delay_ms)

    def _finish(self, burst: int) -> None:
        record = self._hearing.pop(burst, None)
        if record is None:
            return
        self.heard.append(record)
        del self.heard[:-100]
        self.note(record.summary())

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
