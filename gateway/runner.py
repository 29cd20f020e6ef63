"""The gateway's I/O shell: its MQTT connections, the relay, the control plane and a timer task.

Voice and control never share a connection or a turn of the event loop: talkgroup and call
uplinks arrive on a voice connection whose reader hands every frame straight to the relay, and
downlinks leave over the publishing connections (gateway/relay.py). Control messages and
presence arrive on the control connection, whose reader only queues them: a control task handles
the queue in slices of at most CONTROL_SLICE_S, giving the loop back between slices, so a storm of
floor requests delays a frame by one slice at most, not by the whole storm. Replies and events
leave over the control connection.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from gateway import broker_stats
from gateway.broker import BrokerUnavailableError
from gateway.control import ControlPlane
from gateway.directory import Directory
from gateway.events import GatewayEvent
from gateway.floor import FloorConfig
from gateway.metrics import Counters, LiveGauges
from gateway.relay import Relay
from protocol import topics
from transport.address import BrokerAddress
from transport.client import MqttClient, Will
from transport.errors import ConnectRefusedError, MqttError

log = logging.getLogger(__name__)

EventSink = Callable[[list[GatewayEvent]], None]

CONTROL_SLICE_S = 0.0005  # the control task gives the loop back after this much work
# ... and takes it again only after a timer this long (at least one turn of the loop: the voice
# read meanwhile, and its frames written, come first; a backlog is handled at half a core).
CONTROL_PAUSE_S = 0.0005
# Control messages queued at most before the control connection stops reading (the broker
# queues the rest for it, within its bounds): a flood cannot grow the gateway's memory.
CONTROL_QUEUE_PAUSE = 5000
CONTROL_QUEUE_RESUME = 1000


@dataclass(slots=True)
class GatewaySettings:
    broker: BrokerAddress
    username: str | None = None
    password: str | None = None
    instance: str = "gw1"
    talkgroups: list[str] | None = None  # the partition this instance owns; None = all
    floor: FloorConfig = field(default_factory=FloorConfig)
    tick_interval: float = 0.05
    # Downlink voice goes out over this many extra connections (see gateway/relay.py): with
    # every terminal on its own connection, 16 carried twice the load of 4 within 10 ms
    # (bench/relay.py).
    publish_connections: int = 16
    # Read the broker's $SYS counters (drops, queued bytes): the managed broker allows it.
    watch_broker: bool = False


def _ignore_message(topic: str, payload: bytes, qos: int) -> None:
    """Publishing connections subscribe to nothing."""


def _wall_ms() -> int:
    return int(time.time() * 1000)


class GatewayRunner:
    """Owns the gateway's MQTT connections, the control task and the loop that fires floor
    timers."""

    def __init__(
        self,
        settings: GatewaySettings,
        directory: Directory,
        *,
        event_sinks: list[EventSink] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.settings = settings
        self.log = logger or log
        self.counters = Counters()
        self.event_sinks = list(event_sinks or [])
        status_topic = topics.gateway_status(settings.instance)
        broker = settings.broker
        # One TLS context (system CA store) for every connection of the instance.
        tls = ssl.create_default_context() if broker.tls else None
        # The control connection: presence, control uplinks, replies, the gateway's status.
        self.client = MqttClient(
            broker.client_options(
                f"xixin-gateway-{settings.instance}",
                username=settings.username,
                password=settings.password,
                tls=tls,
                will=Will(status_topic, json.dumps({"v": 1, "state": "offline"}).encode()),
                subscriptions=topics.gateway_control_subscriptions()
                + (broker_stats.SUBSCRIPTIONS if settings.watch_broker else []),
            ),
            self._on_control_message,
            on_connect=self._on_connect,
            logger=self.log,
        )
        # The voice connection: talkgroup and private-call uplinks, straight to the relay.
        self.voice = MqttClient(
            broker.client_options(
                f"xixin-gateway-{settings.instance}-voice",
                username=settings.username,
                password=settings.password,
                tls=tls,
                subscriptions=topics.gateway_voice_subscriptions(settings.talkgroups),
            ),
            self._on_voice,
            logger=self.log,
        )
        self.publishers = [
            MqttClient(
                broker.client_options(
                    f"xixin-gateway-{settings.instance}-pub{k}",
                    username=settings.username,
                    password=settings.password,
                    tls=tls,
                ),
                _ignore_message,
                logger=self.log,
            )
            for k in range(settings.publish_connections)
        ]
        senders = [p.publish_raw for p in self.publishers] or [self.client.publish_raw]
        self.relay = Relay(senders, self.counters, logger=self.log)
        self.control = ControlPlane(directory, self.relay, self.counters, settings.floor, self.log)
        self.ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self.broker_stats = broker_stats.BrokerStats()
        # Control messages received and not handled yet (see the module's docstring).
        self.control_queue: collections.deque[tuple[str, bytes]] = collections.deque()
        self._control_wake = asyncio.Event()
        self.control_paused = False
        self.control_queue_pause = CONTROL_QUEUE_PAUSE
        self.control_queue_resume = CONTROL_QUEUE_RESUME

    # ---- MQTT callbacks (reader tasks) ----------------------------------------------------

    def _on_voice(self, topic: str, payload: bytes, qos: int) -> None:
        if topic.startswith(topics.TG_PREFIX):
            self.relay.talkgroup_frame(topic, payload)
            return
        parsed = topics.device_topic(topic)
        if parsed is not None and parsed[1] == "call/up":
            self.relay.call_frame(parsed[0], payload)
            return
        self.relay.unexpected(topic)

    def _on_control_message(self, topic: str, payload: bytes, qos: int) -> None:
        if topic.startswith("$SYS/"):
            self.broker_stats.on_message(topic, payload, time.monotonic())
            return
        queue = self.control_queue
        queue.append((topic, payload))
        if len(queue) == 1:
            self._control_wake.set()
        elif len(queue) >= self.control_queue_pause and not self.control_paused:
            self.control_paused = self.client.pause_reading()

    def handle_control(self, budget_s: float = CONTROL_SLICE_S) -> int:
        """Handle queued control messages for about `budget_s` (at least one), then publish
        what they produced; returns how many were handled."""
        queue, control = self.control_queue, self.control
        deadline = time.monotonic() + budget_s
        handled = 0
        while queue:
            topic, payload = queue.popleft()
            handled += 1
            now = time.monotonic()
            try:
                control.handle(topic, payload, now, _wall_ms())
            except Exception:
                self.log.exception("control message on %s failed", topic)
            if now >= deadline:
                break
        self._drain()
        if self.control_paused and len(queue) <= self.control_queue_resume:
            self.client.resume_reading()
            self.control_paused = False
        return handled

    async def _control_loop(self) -> None:
        """Handle control messages in slices, giving the loop (voice) a turn between them."""
        wake, queue = self._control_wake, self.control_queue
        while True:
            await wake.wait()
            wake.clear()
            while queue:
                self.handle_control()
                await asyncio.sleep(CONTROL_PAUSE_S)

    async def _on_connect(self) -> None:
        await self.client.publish(
            topics.gateway_status(self.settings.instance),
            json.dumps({"v": 1, "state": "online"}).encode(),
            retain=True,
        )
        self.log.info(
            "gateway %s connected to %s", self.settings.instance, self.settings.broker.where
        )

    def _drain(self) -> None:
        control = self.control
        if control.outbox:
            for out in control.outbox:
                self.client.publish_nowait(out.topic, out.payload, qos=out.qos, retain=out.retain)
            control.outbox.clear()
        if control.events:
            events = list(control.events)
            control.events.clear()
            for sink in self.event_sinks:
                try:
                    sink(events)
                except Exception:
                    self.log.exception("event sink failed")

    # ---- lifecycle --------------------------------------------------------------------------

    async def check_broker(self, timeout: float = 30.0) -> None:
        """Connect once with the gateway's account and disconnect, retrying until `timeout`:
        a broker that is down or refuses the account is one clear error before anything
        serves (the run itself would only retry, or fail deep inside the HTTP app's start)."""
        options = self.client.options
        probe = MqttClient(
            replace(options, client_id=f"{options.client_id}-check", will=None, subscriptions=[]),
            _ignore_message,
            logger=self.log,
        )
        where = self.settings.broker.where
        deadline = time.monotonic() + timeout
        waiting = False
        while True:
            try:
                await probe.connect(timeout=min(5.0, timeout))
                break
            except ConnectRefusedError as exc:
                raise BrokerUnavailableError(
                    f"the broker at {where} refused the gateway's account ({exc.reason.name}); "
                    "check --gateway-user and --gateway-password"
                ) from exc
            except ssl.SSLCertVerificationError as exc:
                raise BrokerUnavailableError(
                    f"TLS verification of the broker at {where} failed: {exc.verify_message}"
                ) from exc
            except (TimeoutError, OSError, MqttError) as exc:
                why = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else exc
                if time.monotonic() >= deadline:
                    raise BrokerUnavailableError(
                        f"cannot reach the broker at {where} within {timeout:g} s: {why}"
                    ) from exc
                if not waiting:
                    waiting = True
                    self.log.warning(
                        "broker at %s: %s; waiting up to %g s for it", where, why, timeout
                    )
                await asyncio.sleep(0.5)
        await probe.close()

    async def run(self) -> None:
        """Run until stop(): the MQTT connections and the floor timer loop."""
        async with asyncio.TaskGroup() as group:
            publisher_tasks = []
            # One after the other: many connections opened at once can overflow the listen
            # backlog of the broker's Unix socket (EAGAIN, then a retry after a back-off).
            for k, publisher in enumerate(self.publishers):
                publisher_tasks.append(group.create_task(publisher.run(), name=f"gateway-pub{k}"))
                await publisher.wait_connected(30)
            voice_ready = asyncio.Event()
            voice_task = group.create_task(self.voice.run(voice_ready), name="gateway-voice")
            await voice_ready.wait()  # subscribed: frames of granted floors are relayed
            control = group.create_task(self._control_loop(), name="gateway-control")
            client_task = group.create_task(self.client.run(self.ready), name="gateway-mqtt")
            ticker = group.create_task(self._tick_loop(), name="gateway-timers")
            await self._stopping.wait()
            ticker.cancel()
            if self.client.is_connected:
                await self.client.publish(
                    topics.gateway_status(self.settings.instance),
                    json.dumps({"v": 1, "state": "offline"}).encode(),
                    retain=True,
                    timeout=2.0,
                )
            await self.client.close()
            client_task.cancel()
            control.cancel()
            await self.voice.close()
            voice_task.cancel()
            for publisher, task in zip(self.publishers, publisher_tasks, strict=True):
                await publisher.close()
                task.cancel()

    async def _tick_loop(self) -> None:
        interval = self.settings.tick_interval
        while True:
            await asyncio.sleep(interval)
            self.control.tick(time.monotonic(), _wall_ms())
            self._drain()

    def stop(self) -> None:
        self._stopping.set()

    @property
    def is_connected(self) -> bool:
        """Every connection of the instance (control, voice, publishing) is up."""
        return (
            self.client.is_connected
            and self.voice.is_connected
            and all(p.is_connected for p in self.publishers)
        )

    # ---- queries and actions for the API (same event loop) ----------------------------------

    def gauges(self) -> LiveGauges:
        control = self.control
        floors = control.floors.items()
        return LiveGauges(
            devices_online=control.roster.online(),
            queue_depths={key: len(floor.queue()) for key, floor in floors},
            floors_taken=sum(1 for _, floor in floors if floor.holder is not None),
        )

    def update_directory(self, directory: Directory) -> None:
        self.control.update_directory(directory, time.monotonic(), _wall_ms())
        self._drain()

    def send_command(
        self, device: str, cmd: str, issued_by: str = "gateway", **fields: object
    ) -> str:
        command_id = self.control.send_command(
            device, cmd, time.monotonic(), _wall_ms(), issued_by, **fields
        )
        self._drain()
        return command_id

    def revoke(self, key: str) -> None:
        self.control.revoke(key, time.monotonic(), _wall_ms())
        self._drain()
