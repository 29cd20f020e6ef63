"""Incidents within the caller's scope (gateway.auth.scope): an incident is seen where it is
handled (its grid, area or the centre, by tier) and by its grid; acting on it takes the
handling unit. Officers assigned must be devices the caller sees. Unseen incidents are 404,
like unknown ones; seen but not handled here is 403."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gateway.api.services.access import SignedIn
from gateway.incidents import store as db
from gateway.incidents.errors import IncidentInputError, UnknownIncidentError
from gateway.incidents.model import Incident, Place
from gateway.incidents.officers import Suggestion
from gateway.incidents.reports import Period, ReportRow, build_report
from gateway.incidents.service import IncidentService


class IncidentAccess:
    def __init__(
        self,
        incidents: IncidentService,
        caller: SignedIn,
        unit_of: Callable[[str], str | None],
    ) -> None:
        self.incidents = incidents
        self.caller = caller
        self.scope = caller.scope
        self.unit_of = unit_of

    @property
    def actor(self) -> str:
        return self.caller.account.name

    def sees(self, incident: Incident) -> bool:
        return self.scope.sees_incident(incident.grid, incident.unit)

    def get(self, incident_id: int) -> Incident:
        self.caller.require("read")
        incident = self.incidents.get(incident_id)
        if not self.sees(incident):
            raise UnknownIncidentError(f"no incident {incident_id}")
        return incident

    def board(self, include_closed: bool) -> list[Incident]:
        self.caller.require("read")
        return self.incidents.board(None if self.scope.whole else self.sees, include_closed)

    async def history(self, where: db.HistoryQuery) -> list[Incident]:
        self.caller.require("read")
        units = None if self.scope.whole else self.scope.units
        query = db.HistoryQuery(
            where.since, where.until, units, where.category, where.state, where.limit
        )
        found = await asyncio.to_thread(db.find_incidents, self.incidents.engine, query)
        return [i for i in found if self.sees(i)]

    def report(self, category: str, text: str, place: Place) -> Incident:
        """A dispatcher's intake: the place must be in the caller's scope."""
        self.caller.require("command")
        unit = self.caller.account.role.unit
        where = self.incidents.place_of(place, unit)
        self.caller.require(
            "command",
            self.scope.whole
            or self.scope.sees_unit(where.grid)
            or self.scope.sees_unit(where.area),
            "that place",
        )
        return self.incidents.report(
            category, text, source="dispatcher" if self.caller.via == "session" else "api",
            reporter=self.actor, place=where, reporter_unit=unit,
        )  # fmt: skip

    def from_alarm(self, alarm_id: int, category: str, text: str | None) -> Incident:
        self.caller.require("command")
        lookup = self.incidents.alarm_lookup
        if lookup is None:
            raise LookupError("the alarm queue is not available on this gateway")
        alarm = lookup(alarm_id)
        unit = alarm.get("unit") if alarm is not None else None
        if alarm is None or not self.scope.sees_unit(unit if isinstance(unit, str) else None):
            raise UnknownIncidentError(f"no alarm {alarm_id}")
        return self.incidents.from_alarm(alarm, category, text, self.actor)

    def act(self, incident_id: int, action: str, args: dict[str, Any]) -> Incident:
        incident = self.get(incident_id)
        self.caller.require(
            "command", self.scope.handles_incident(incident.unit), f"incident {incident_id}"
        )
        for officer in args.get("officers") or ():
            if self.unit_of(officer) is None:
                raise IncidentInputError(f"unknown officer {officer!r}")
            self.caller.require(
                "command", self.scope.sees_device(officer, self.unit_of), f"officer {officer}"
            )
        return self.incidents.step(incident_id, action, self.actor, **args)

    def suggest(self, incident_id: int, k: int) -> list[Suggestion]:
        incident = self.get(incident_id)
        self.caller.require("command", self.scope.handles_incident(incident.unit))
        found = self.incidents.suggest(incident_id, k * 4)
        return [s for s in found if self.scope.sees_device(s.device, self.unit_of)][:k]

    async def timeline(self, incident_id: int) -> list[dict[str, Any]]:
        self.get(incident_id)
        found = await asyncio.to_thread(self.incidents.timeline, incident_id)
        return [
            {
                "seq": t.seq, "ts": t.ts, "actor": t.actor, "action": t.action,
                "from_state": t.from_state, "to_state": t.to_state, "from_tier": t.from_tier,
                "to_tier": t.to_tier, "note": t.note, "detail": t.detail,
            }
            for t in found
        ]  # fmt: skip

    async def report_rows(self, since: float, until: float, period: Period) -> list[ReportRow]:
        self.caller.require("read")

        def build() -> list[ReportRow]:
            found = db.iter_reported(self.incidents.engine, since, until)
            return build_report((i for i in found if self.sees(i)), period)

        return await asyncio.to_thread(build)
