"""The alarm queue as the API shows it: the caller's alarms only (a grid dispatcher its grid's,
an area dispatcher its area's, the centre all); acknowledging and closing take the `command`
right on the alarm's unit and are audited, refused or not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.alarms.desk import AlarmDesk
from gateway.alarms.queue import Alarm, UnknownAlarmError
from gateway.alarms.store import AlarmFilter
from gateway.api.schemas import AlarmOut
from gateway.api.services.access import ForbiddenError, SignedIn
from gateway.auth.audit import AuditWriter


class AlarmsService:
    def __init__(
        self,
        desk: AlarmDesk,
        caller: SignedIn,
        audit: AuditWriter,
        device_name: Callable[[str], str | None],
    ) -> None:
        self._desk = desk
        self._caller = caller
        self._audit = audit
        self._device_name = device_name

    def out(self, alarm: Alarm) -> AlarmOut:
        data: dict[str, Any] = alarm.as_dict()
        data.pop("updated_at")
        return AlarmOut(**data, device_name=self._device_name(alarm.device))

    async def find(
        self, open_only: bool, kind: str | None, device: str | None, limit: int
    ) -> list[AlarmOut]:
        self._caller.require("read")
        scope = self._caller.scope
        units = None if scope.whole else scope.units
        found = await self._desk.find(AlarmFilter(open_only, kind, device, units, limit))
        return [self.out(a) for a in found]

    def _open_alarm(self, alarm_id: int, action: str) -> Alarm:
        """An open alarm in the caller's scope (UnknownAlarmError otherwise: 404, as if it did
        not exist), which the caller may act on (ForbiddenError: 403)."""
        try:
            alarm = self._desk.queue.get(alarm_id)
            if not self._caller.scope.sees_unit(alarm.unit):
                raise UnknownAlarmError(f"no open alarm {alarm_id}")
            self._caller.require("command", True, f"alarm {alarm_id}")
        except (UnknownAlarmError, ForbiddenError) as exc:
            self._record(action, alarm_id, "denied", {"why": str(exc)})
            raise
        return alarm

    async def acknowledge(self, alarm_id: int) -> AlarmOut:
        self._open_alarm(alarm_id, "alarm_ack")
        alarm = await self._desk.acknowledge(alarm_id, self._caller.account.name)
        self._record("alarm_ack", alarm_id, "ok", {"kind": alarm.kind, "device": alarm.device})
        return self.out(alarm)

    async def close(self, alarm_id: int, outcome: str, note: str) -> AlarmOut:
        self._open_alarm(alarm_id, "alarm_close")
        alarm = await self._desk.close(alarm_id, self._caller.account.name, outcome, note)
        detail = {"kind": alarm.kind, "device": alarm.device, "outcome": outcome, "note": note}
        self._record("alarm_close", alarm_id, "ok", detail)
        return self.out(alarm)

    def _record(self, action: str, alarm_id: int, result: str, detail: dict[str, Any]) -> None:
        self._audit.record(self._caller.account.name, action, f"alarm:{alarm_id}", result, detail)
