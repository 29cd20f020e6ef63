"""The simulator's I/O shell: firmware state machines on real MQTT connections, one event loop.

:class:`SimTerminal` binds one :class:`Firmware` to one :class:`AsyncTerminalClient` and carries
out its effects. :class:`Scheduler` wakes every terminal of the process at its
:meth:`Firmware.next_wakeup` from one heap — a thousand terminals cost one timer, not a thousand
tasks. :class:`LoopLagMonitor` measures how late the event loop runs timers (the simulator's
own health: a late loop means late voice frames).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Coroutine
from typing import Any

from devices.aio_client import AsyncTerminalClient
from devices.session import FrameIn, Incoming, PendingRequest
from firmware_sim.firmware import Firmware
from firmware_sim.model import (
    Affiliate,
    Connect,
    Drop,
    PowerOff,
    Send,
    SendBeacon,
    SendFrame,
    SendRequest,
)

log = logging.getLogger(__name__)


class Scheduler:
    """Runs each terminal's tick at its wakeup time: a lazy-deletion min-heap and one timer."""

    def __init__(self, slack_s: float = 0.001) -> None:
        self._heap: list[tuple[float, int, SimTerminal]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._slack = slack_s  # wakeups this close together run in one pass
        self._running = False
        self.ticks = 0

    def start(self) -> None:
        self._running = True
        self._arm()

    def schedule(self, terminal: SimTerminal, due: float) -> None:
        if due >= terminal.scheduled_at:
            return
        terminal.scheduled_at = due
        heapq.heappush(self._heap, (due, next(self._seq), terminal))
        if self._running and due < self._timer_at - self._slack:
            self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = float("inf")
        if not self._heap or not self._running:
            return
        due = self._heap[0][0]
        self._timer_at = due
        # call_later, not call_at: uvloop's loop.time() has millisecond steps.
        delay = max(0.0, due - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        heap = self._heap
        now = time.monotonic()
        limit = now + self._slack
        while heap and heap[0][0] <= limit:
            due, _, terminal = heapq.heappop(heap)
            if due != terminal.scheduled_at:
                continue  # superseded by an earlier wakeup
            terminal.scheduled_at = float("inf")
            self.ticks += 1
            try:
                terminal.tick(max(now, due))
            except Exception:
                log.exception("terminal %s failed to tick", terminal.device_id)
        self._arm()

    def stop(self) -> None:
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class LoopLagMonitor:
    """Samples how late a periodic timer fires (ms)."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            expected = time.monotonic() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.samples.append(max(0.0, (time.monotonic() - expected) * 1000.0))

    def reset(self) -> None:
        self.samples.clear()

    def percentile(self, p: float) -> float | None:
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(p / 100.0 * len(ordered)))]

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


class SimTerminal:
    """One simulated terminal: firmware + client; also the client's TerminalHandler."""

    def __init__(
        self,
        firmware: Firmware,
        client: AsyncTerminalClient,
        scheduler: Scheduler,
        logger: logging.Logger | None = None,
    ) -> None:
        self.firmware = firmware
        self.client = client
        self.scheduler = scheduler
        self.log = logger or log
        self.scheduled_at = float("inf")
        self.beacon_log: list[tuple[float, bytes]] | None = None  # (taken at, payload): scenarios
        self._tasks: set[asyncio.Task[None]] = set()
        client.handler = self

    @property
    def device_id(self) -> str:
        return self.client.device_id

    # ---- driving the firmware ---------------------------------------------------------------

    def power_on(self) -> None:
        self.firmware.power_on(time.monotonic())
        self.flush()

    def tick(self, now: float) -> None:
        self.firmware.tick(now)
        self.flush()

    def on_connected(self, now: float) -> None:
        self.firmware.on_connected(now)
        self.flush()

    def on_disconnected(self, now: float) -> None:
        self.firmware.on_disconnected(now)
        self.flush()

    def on_incoming(self, incoming: Incoming, now: float) -> None:
        firmware = self.firmware
        firmware.on_incoming(incoming, now)
        if isinstance(incoming, FrameIn) and not firmware.outbox and not firmware.needs_schedule:
            return  # the hot path: a frame that changes no timer
        self.flush()

    def on_expired(self, request: PendingRequest, now: float) -> None:
        self.firmware.on_expired(request, now)
        self.flush()

    def flush(self) -> None:
        """Carry out the firmware's effects and reschedule its next wakeup."""
        firmware, client = self.firmware, self.client
        firmware.needs_schedule = False
        outbox = firmware.outbox
        if outbox:
            effects = list(outbox)
            outbox.clear()
            for effect in effects:
                if isinstance(effect, SendFrame):
                    client.send_frame(effect.frame, key=effect.key)
                elif isinstance(effect, SendBeacon):
                    client.send_beacon(effect.beacon)
                    if self.beacon_log is not None:
                        self.beacon_log.append((time.monotonic(), effect.beacon.to_json()))
                elif isinstance(effect, SendRequest):
                    client.send_request(effect.pending, effect.message)
                elif isinstance(effect, Send):
                    client.send(effect.message)
                elif isinstance(effect, Affiliate):
                    client.affiliate_nowait(effect.tgs)
                elif isinstance(effect, Connect):
                    client.launch()
                elif isinstance(effect, Drop):
                    client.drop_nowait()
                elif isinstance(effect, PowerOff):
                    self._spawn(client.stop())
        self.scheduler.schedule(self, firmware.next_wakeup())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self) -> None:
        """Clean power-off at the end of a run."""
        await self.client.stop()
        for task in list(self._tasks):
            task.cancel()
