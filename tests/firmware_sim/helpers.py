"""Shared helpers for the firmware simulator tests: a firmware on an injected clock."""

from __future__ import annotations

import functools
import json
import random
from typing import Any

import numpy as np

from devices.session import Incoming, TerminalSession
from firmware_sim.firmware import Firmware
from firmware_sim.gps import Route
from firmware_sim.model import Connect, Effect, FirmwareConfig, SendRequest, TerminalProfile
from firmware_sim.voice import SPEECH_RATE, SpeechReel, encode_reel
from protocol.org import default_org

WALL0 = 1_764_300_000.0


@functools.cache
def tone_reel() -> SpeechReel:
    """Two seconds of a warbling tone: real Opus packets without espeak-ng."""
    t = np.arange(2 * SPEECH_RATE) / SPEECH_RATE
    pcm = (8000 * np.sin(2 * np.pi * (300 + 80 * np.sin(2 * np.pi * 3 * t)) * t)).astype(np.int16)
    return encode_reel([pcm])


class Rig:
    """A firmware plus its own session, with helpers to play the gateway's part."""

    def __init__(
        self,
        config: FirmwareConfig | None = None,
        device: str = "T001",
        role: str = "officer",
        talkgroups: tuple[str, ...] = ("grid-01", "area-renxi", "all"),
        seed: int = 1,
    ) -> None:
        self.session = TerminalSession(device)
        profile = TerminalProfile(device, "grid-01", role, talkgroups, talkgroups[0])
        route = Route.from_grid(default_org().grids["grid-01"])
        self.fw = Firmware(
            profile,
            config or FirmwareConfig(),
            self.session,
            now=0.0,
            wall_offset=WALL0,
            rng=random.Random(seed),
            route=route,
            reel=tone_reel(),
        )

    def take(self) -> list[Effect]:
        out = list(self.fw.outbox)
        self.fw.outbox.clear()
        return out

    def feed(self, topic_rest: str, now: float, **body: Any) -> Incoming:
        """Deliver a message as the broker would, through the session, to the firmware."""
        topic = (
            f"xixin/v1/dev/{self.session.device_id}/ctrl/down"
            if topic_rest == "down"
            else f"xixin/v1/{topic_rest}"
        )
        incoming = self.session.on_message(topic, json.dumps({"v": 1, **body}).encode())
        self.fw.on_incoming(incoming, now)
        return incoming

    def run(self, until: float, now: float) -> float:
        """Tick at every wakeup up to `until`; returns the time reached."""
        while True:
            wake = max(now, self.fw.next_wakeup())
            if wake > until:
                return until
            now = wake
            self.fw.tick(now)

    def connect(self, now: float = 0.1) -> None:
        """Boot, connect and affiliate to every talkgroup."""
        self.fw.power_on(0.0)
        self.fw.on_connected(now)
        pending, _ = self.session.affiliate(now, list(self.fw.profile.talkgroups))
        self.feed(
            "down", now, type="affiliated", re=pending.id, tgs=list(self.fw.profile.talkgroups)
        )
        self.take()

    def run_answered(self, until: float, now: float) -> float:
        """Like run(), but playing a gateway that grants every floor request, answers every
        other request, and a network that reconnects at once. Returns the time reached."""
        burst = 0
        while True:
            for effect in self.take():
                if isinstance(effect, Connect):
                    self.fw.on_connected(now)
                elif isinstance(effect, SendRequest):
                    body = json.loads(effect.message.payload)
                    reply: dict[str, Any] = {"re": body["id"]}
                    if body["type"] == "floor_request":
                        burst += 1
                        reply.update(type="floor_granted", tg=body.get("tg"), burst=burst)
                        reply["max_ms"] = 30000
                    else:
                        reply["type"] = {"floor_release": "floor_released"}.get(
                            body["type"], f"{body['type']}_ack"
                        )
                    self.feed("down", now, **reply)
            wake = max(now, self.fw.next_wakeup())
            if wake > until:
                return until
            now = wake
            self.fw.tick(now)
