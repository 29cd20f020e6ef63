"""AlarmDesk: the alarm queue in the running gateway. Fed by tracking's alarm episodes (SOS from
the control plane included, with the last known position), acted on through the API, ticked
for escalation; every change is stored (journal first) and streamed as `{kind: "alarm", alarm}`.
Runs on the gateway's event loop; database reads go to worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy

from gateway.alarms.queue import ALARM_KINDS, Alarm, AlarmPolicy, AlarmQueue, Position
from gateway.alarms.store import AlarmFilter, alarm_row, alarms, find_alarms, load_open
from gateway.event_log import EventHub
from gateway.events import GatewayEvent
from gateway.store.records import RowWriter
from gateway.tracking.model import Fix, TrackingEvent
from protocol.org import Organisation

log = logging.getLogger(__name__)

TICK_S = 1.0
RECENT_LIMIT = 5000


class AlarmDesk:
    def __init__(
        self,
        engine: sqlalchemy.Engine,
        org: Organisation,
        unit_of: Callable[[str], str | None],
        hub: EventHub | None = None,
        policy: AlarmPolicy | None = None,
        *,
        last_fix: Callable[[str], Fix | None] = lambda device: None,
        journal_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
    ) -> None:
        self.engine = engine
        self.org = org
        self.unit_of = unit_of
        self.hub = hub
        self.policy = policy or AlarmPolicy()
        self.last_fix = last_fix
        self.clock = clock
        self.log = logger or log
        self.writer = RowWriter(engine, [alarms], name="alarm writer", journal_dir=journal_dir,
                                logger=self.log)  # fmt: skip
        self.queue = AlarmQueue(org.parent, self.policy)
        # The latest changes, which the database may not show yet (its writer is behind).
        self._recent: OrderedDict[int, Alarm] = OrderedDict()

    def load(self) -> None:
        """Take the open alarms a previous run left (blocking; before `start`)."""
        open_alarms, last_id = load_open(self.engine)
        self.queue = AlarmQueue(self.org.parent, self.policy, open_alarms=open_alarms,
                                last_id=last_id)  # fmt: skip

    def start(self) -> None:
        self.writer.start()

    def stop(self) -> None:
        self.writer.stop()

    async def run(self) -> None:
        """Escalate due alarms, once a TICK_S."""
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self._emit(self.queue.tick(self.clock()))
            except Exception:
                self.log.exception("alarm escalation failed; trying again in %g s", TICK_S)

    # ---- input ------------------------------------------------------------------------------

    def _position(self, event: TrackingEvent) -> Position | None:
        if event.lat is None or event.lon is None:
            return None
        fix = self.last_fix(event.device)
        at = event.ts
        if fix is not None and (fix.lat, fix.lon) == (event.lat, event.lon):
            at = fix.fix_time
        return Position(event.lat, event.lon, at)

    def on_tracking_events(self, events: list[TrackingEvent]) -> None:
        """Alarm episodes from tracking (an event sink): raised ones enter the queue."""
        changed: list[Alarm] = []
        now = self.clock()
        for event in events:
            if event.kind != "alarm" or event.type not in ALARM_KINDS:
                continue
            position = self._position(event)
            if event.active:
                unit = self.unit_of(event.device) or self.org.centre.id
                kind = ALARM_KINDS[ALARM_KINDS.index(event.type)]
                changed.append(self.queue.raise_alarm(kind, event.device, unit, now, position))
            else:
                cleared = self.queue.clear(event.type, event.device, now, position)
                if cleared is not None:
                    changed.append(cleared)
        self._emit(changed)

    # ---- actions (the API; ack/close raise AlarmError) ---------------------------------------

    async def acknowledge(self, alarm_id: int, by: str) -> Alarm:
        alarm = self.queue.acknowledge(alarm_id, by, self.clock())
        self._emit([alarm])
        await self.writer.durable()
        return alarm

    async def close(self, alarm_id: int, by: str, outcome: str, note: str) -> Alarm:
        alarm = self.queue.close(alarm_id, by, outcome, note, self.clock())
        self._emit([alarm])
        await self.writer.durable()
        return alarm

    def lookup(self, alarm_id: int) -> dict[str, Any] | None:
        """An open or recently changed alarm as the API shows it (None if not in memory): what
        the incident service makes an incident from."""
        for alarm in self.queue.open_alarms():
            if alarm.id == alarm_id:
                return alarm.as_dict()
        recent = self._recent.get(alarm_id)
        return recent.as_dict() if recent is not None else None

    async def find(self, where: AlarmFilter) -> list[Alarm]:
        """Alarms as stored, with the open ones as they are now (a change may still be on its
        way to the database), newest first."""
        stored = await asyncio.to_thread(find_alarms, self.engine, where)
        live = dict(self._recent)  # newer than the database: closed ones included
        live.update((a.id, a) for a in self.queue.open_alarms())
        merged = {a.id: live.get(a.id, a) for a in stored}
        for alarm in live.values():
            if alarm.id not in merged and _matches(alarm, where):
                merged[alarm.id] = alarm
        result = [a for a in merged.values() if not where.open_only or a.open]
        result.sort(key=lambda a: (a.raised_at, a.id), reverse=True)
        return result[: where.limit]

    # ---- output -----------------------------------------------------------------------------

    def _emit(self, changed: list[Alarm]) -> None:
        if not changed:
            return
        self.writer.submit([("alarms", alarm_row(a)) for a in changed])
        for alarm in changed:
            self._recent[alarm.id] = alarm
            self._recent.move_to_end(alarm.id)
        while len(self._recent) > RECENT_LIMIT:
            self._recent.popitem(last=False)
        for alarm in changed:
            self.log.info("alarm %d %s %s: %s", alarm.id, alarm.kind, alarm.device, alarm.state)
        if self.hub is not None:
            self.hub.publish(
                [
                    GatewayEvent(
                        "alarm", a.device, int(a.updated_at * 1000), {"alarm": a.as_dict()}
                    )
                    for a in changed
                ]
            )


def _matches(alarm: Alarm, where: AlarmFilter) -> bool:
    return (
        (where.kind is None or alarm.kind == where.kind)
        and (where.device is None or alarm.device == where.device)
        and (where.units is None or alarm.unit in where.units)
    )
