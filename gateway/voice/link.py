"""The gateway speaking as a dispatcher account: one MQTT connection per account that talks
from the console (its talker id `xixin-u-<name>`), shared by the account's talk sessions.

The connection uses the gateway's own broker account (on the managed broker its private Unix
socket), publishes the talker's retained `status` (`online` while a session is open; the Will
and the close say `offline`), sends `floor_request`/`floor_release` on the talker's `ctrl/up`
and voice frames on its uplink topics — exactly what a terminal sends, so the control plane
and relay treat it as one: floor control with dispatcher priority, membership, recording.
Replies on the talker's `ctrl/down` go to the account's speakers (gateway/voice/speaker.py).
At most one of them is pressed at a time (a second press is denied `talker_busy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from gateway.voice.speaker import Notice, Output, Speaker
from protocol import topics
from transport.client import ClientOptions, MqttClient, Will

log = logging.getLogger(__name__)

TICK_S = 0.25
#: Builds a connection's options: (client id, will, subscriptions) -> ClientOptions
OptionsFactory = Callable[[str, Will, list[tuple[str, int]]], ClientOptions]
NoticeSink = Callable[[Notice], None]


def _status(state: str) -> bytes:
    return json.dumps(
        {"v": 1, "state": state, "ts": int(time.time() * 1000), "fw": "xixin-console"}
    ).encode()


class TalkerLink:
    def __init__(
        self,
        talker: str,
        client_id: str,
        options: OptionsFactory,
        logger: logging.Logger | None = None,
    ) -> None:
        self.talker = talker
        self.log = logger or log
        self._speakers: dict[Speaker, NoticeSink] = {}
        self.users = 0
        self.client = MqttClient(
            options(
                client_id,
                Will(topics.status(talker), _status("offline")),
                [(topics.ctrl_down(talker), 1)],
            ),
            self._on_message,
            on_connect=self._on_connect,
            logger=self.log,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.bad_replies = 0

    # ---- lifecycle ----------------------------------------------------------------------------

    async def open(self, timeout: float = 10.0) -> None:
        self._tasks = [
            asyncio.create_task(self.client.run(), name=f"talker-{self.talker}"),
            asyncio.create_task(self._tick_loop(), name=f"talker-{self.talker}-timers"),
        ]
        try:
            await self.client.wait_connected(timeout)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for speaker in list(self._speakers):
            self.detach(speaker)
        if self.client.is_connected:
            with contextlib.suppress(Exception):
                await self.client.publish(
                    topics.status(self.talker), _status("offline"), qos=1, retain=True, timeout=2.0
                )
        await self.client.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def _on_connect(self) -> None:
        await self.client.publish(topics.status(self.talker), _status("online"), qos=1, retain=True)

    # ---- speakers -----------------------------------------------------------------------------

    def attach(self, speaker: Speaker, sink: NoticeSink) -> None:
        self._speakers[speaker] = sink

    def detach(self, speaker: Speaker) -> None:
        """Forget a speaker, releasing the floor if it was pressed."""
        if speaker.active:
            self.apply(speaker, speaker.release(time.monotonic()))
        self._speakers.pop(speaker, None)

    def press(self, speaker: Speaker) -> None:
        if any(other.active for other in self._speakers if other is not speaker):
            self._speakers[speaker](Notice("denied", reason="talker_busy"))
            return
        self.apply(speaker, speaker.press(time.monotonic()))

    def apply(self, speaker: Speaker, out: Output) -> None:
        """Publish a speaker's output and pass its notices on (voice at QoS 0 never waits)."""
        for item in out.publishes:
            self.client.publish_nowait(item.topic, item.payload, qos=item.qos)
        sink = self._speakers.get(speaker)
        if sink is not None:
            for notice in out.notices:
                sink(notice)

    # ---- input --------------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes, qos: int) -> None:
        try:
            message: Any = json.loads(payload)
        except (UnicodeDecodeError, ValueError):
            message = None
        if not isinstance(message, dict):
            self.bad_replies += 1
            return
        now = time.monotonic()
        for speaker in list(self._speakers):
            self.apply(speaker, speaker.control(message, now))

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            for speaker in list(self._speakers):
                self.apply(speaker, speaker.tick(now))
