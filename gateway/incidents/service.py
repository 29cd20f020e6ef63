"""The incident service: the one owner of incidents while the gateway runs (on the event loop).

Every change goes through the pure state machine (:mod:`gateway.incidents.machine`); its step is
applied in memory, handed to the durable writer (journal first: on disk within milliseconds,
then in the database) and published on the event hub as ``{kind: "incident", ...}``. Open
incidents, and those closed within `keep_closed_s`, are held in memory (the board); everything
is in the database (history, reports). On start the journal left by a previous run is written
first, then the current incidents are loaded — a restart loses nothing that was stepped.

Side effects of steps: assigned officers get an ``assign`` command on their terminals and
become busy; when none of an officer's incidents is open any more it is available again.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

import sqlalchemy

from gateway.auth.roles import talker_id
from gateway.events import GatewayEvent
from gateway.incidents import machine
from gateway.incidents import store as db
from gateway.incidents.categories import Categories, Category
from gateway.incidents.errors import IncidentError, IncidentInputError, UnknownIncidentError
from gateway.incidents.intake import observe
from gateway.incidents.model import Incident, OfficerStatus, Place, Source, Step, Transition
from gateway.incidents.officers import OfficerIndex, Suggestion
from gateway.incidents.store import IncidentWriter
from gateway.log_once import LogOnce
from protocol.ids import incident_of_talkgroup
from protocol.org import Organisation

log = logging.getLogger(__name__)

KEEP_CLOSED_S: Final = 86400.0
BOARD_CLOSED: Final = 100  # resolved and closed incidents the board shows after the open ones
Commander = Callable[..., str]  # (device, cmd, **fields) -> command id
Publisher = Callable[[list[GatewayEvent]], None]


class IncidentService:
    def __init__(
        self,
        engine: sqlalchemy.Engine,
        org: Organisation,
        categories: Categories,
        writer: IncidentWriter,
        *,
        publish: Publisher | None = None,
        clock: Callable[[], float] = time.time,
        keep_closed_s: float = KEEP_CLOSED_S,
        logger: logging.Logger | None = None,
    ) -> None:
        self.engine = engine
        self.org = org
        self.categories = categories
        self.writer = writer
        self.publish = publish
        self.clock = clock
        self.keep_closed_s = keep_closed_s
        self.log = logger or log
        self.incidents: dict[int, Incident] = {}
        self._views: dict[int, tuple[int, Incident, dict[str, Any]]] = {}
        # Transitions applied by this run, for incidents held in memory: a timeline read right
        # after a step shows it before the writer has committed it.
        self.recent: dict[int, list[Transition]] = {}
        self.officers = OfficerIndex()
        self.units: dict[str, str] = {}  # device -> its unit (directory)
        self.pending_voice: dict[str, int] = {}
        self.reports_seen: dict[
            tuple[str, str], int
        ] = {}  # (device, request id) -> incident  # device -> incident its next burst belongs to
        self.sos_category = "police" if "police" in categories else next(iter(categories))
        self.commander: Commander | None = None
        # Applies changed incident talkgroup memberships (broker ACL, directory) before the
        # terminals are told to move (the gateway service's devices_changed).
        self.regroup_hook: Callable[[], Awaitable[None]] | None = None
        self._assigned: frozenset[str] = frozenset()
        self._tasks: set[asyncio.Task[None]] = set()
        # Set by a later merge: the alarm queue's lookup (alarm id -> Alarm of the alarms
        # contract), for an incident made from an alarm by a dispatcher's choice.
        self.alarm_lookup: Callable[[int], Mapping[str, Any] | None] | None = None
        self._next_id = 1
        self.steps = 0
        self.refused = 0  # terminal input refused (unknown category, not assigned, ...)
        self._log_once = LogOnce(self.log)

    # ---- lifecycle -------------------------------------------------------------------------

    def load(self, timeout_s: float = 60.0) -> None:
        """(Blocking.) Start the writer, let it write a previous run's journal, then load the
        current incidents. The writer must have drained first: the journal may hold steps the
        database has not seen."""
        self.writer.start()
        deadline = time.monotonic() + timeout_s
        self.writer.core.opened.wait(timeout_s)
        while self.writer.backlog:
            if time.monotonic() > deadline:
                raise RuntimeError("the incident journal could not be written to the database")
            time.sleep(0.02)
        now = self.clock()
        self.incidents = {i.id: i for i in db.load_current(self.engine, now - self.keep_closed_s)}
        self._assigned = frozenset(o for i in self.incidents.values() if i.open for o in i.officers)
        self._next_id = db.max_id(self.engine) + 1
        self.log.info("incidents: %d current loaded", len(self.incidents))

    def stop(self) -> None:
        self.writer.stop()

    # ---- applying steps --------------------------------------------------------------------

    def _apply(self, step: Step) -> Incident:
        before = self.incidents.get(step.incident.id)
        incident = step.incident
        self.incidents[incident.id] = incident
        self.recent.setdefault(incident.id, []).extend(step.transitions)
        self.writer.submit(step)
        self.steps += 1
        self._officer_effects(before, incident)
        if self.publish is not None:
            data = {
                "incident": self.view(incident),
                "actions": [t.action for t in step.transitions],
            }
            self.publish([GatewayEvent("incident", None, int(self.clock() * 1000), data)])
        return incident

    def _officer_effects(self, before: Incident | None, after: Incident) -> None:
        old = set(before.officers) if before is not None and before.open else set()
        new = set(after.officers) if after.open else set()
        if old == new:
            return
        self._assigned = frozenset(o for i in self.incidents.values() if i.open for o in i.officers)
        for device in new - old:
            self.officers.set_availability(device, "busy")
            self._send_assignment(after, device)
        for device in old - new:
            if device not in self._assigned:
                self.officers.set_availability(device, "available")
        tg = after.talkgroup or (before.talkgroup if before is not None else None)
        if tg is not None:
            self._regroup(tg, after.id, sorted(new - old), sorted(old - new))

    def is_assigned(self, device: str) -> bool:
        """Whether the device works on an open incident (no left_grid alarm meanwhile)."""
        return device in self._assigned

    def memberships(self) -> dict[str, set[str]]:
        """Device (or dispatcher talker) -> the incident talkgroups it is a member of now: the
        officers of every open incident with a talkgroup, and the dispatcher who assigned them."""
        found: dict[str, set[str]] = {}
        for incident in self.incidents.values():
            if not incident.open or incident.talkgroup is None or not incident.officers:
                continue
            members = list(incident.officers)
            if incident.dispatcher is not None:
                members.append(talker_id(incident.dispatcher))
            for member in members:
                found.setdefault(member, set()).add(incident.talkgroup)
        return found

    def _regroup(self, tg: str, incident: int, joined: list[str], left: list[str]) -> None:
        """Apply the new memberships, then move terminals in (`regroup` active) or out."""
        hook = self.regroup_hook
        if hook is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the gateway's loop (a script): nothing to move
            return

        async def apply() -> None:
            try:
                await hook()
            except Exception:
                self.log.exception("incident %d: talkgroup %s not applied", incident, tg)
                return
            for device, active in [(d, True) for d in joined] + [(d, False) for d in left]:
                if self.commander is None:
                    return
                try:
                    self.commander(device, "regroup", tg=tg, incident=incident, active=active)
                except Exception:
                    self.log.exception("could not move %s for incident %d", device, incident)

        task = loop.create_task(apply(), name=f"regroup-{tg}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send_assignment(self, incident: Incident, device: str) -> None:
        if self.commander is None:
            return
        category = self.categories.get(incident.category)
        try:
            self.commander(
                device, "assign", incident=incident.id, grid=incident.grid,
                text=incident.text, category=incident.category,
                category_name=category.name_zh if category else None,
                lat=incident.lat, lon=incident.lon, tg=incident.talkgroup,
            )  # fmt: skip
        except Exception:  # the step is stored; the dispatcher sees no `officer_accepted`
            self.log.exception("could not send incident %d to %s", incident.id, device)

    def get(self, incident_id: int) -> Incident:
        found = self.incidents.get(incident_id)
        if found is None:
            found = db.get_incident(self.engine, incident_id)
        if found is None:
            raise UnknownIncidentError(f"no incident {incident_id}")
        return found

    def placement(self, tg: str, stored: bool = False) -> tuple[str | None, str] | None:
        """The (grid, handling unit) of the incident whose own talkgroup is `tg` (the scope's
        IncidentOf); None for other talkgroups and unknown incidents. From memory, or also from
        the database when `stored` (blocking: closed incidents' recordings)."""
        number = incident_of_talkgroup(tg)
        if number is None:
            return None
        found = self.incidents.get(number)
        if found is None and stored:
            found = db.get_incident(self.engine, number)
        return (found.grid, found.unit) if found is not None else None

    def timeline(self, incident_id: int) -> list[Transition]:
        """(Blocking.) Every transition of an incident: stored ones and this run's."""
        merged = {t.seq: t for t in db.get_transitions(self.engine, incident_id)}
        merged.update((t.seq, t) for t in self.recent.get(incident_id, ()))
        return [merged[seq] for seq in sorted(merged)]

    def category(self, category_id: str) -> Category:
        found = self.categories.get(category_id)
        if found is None:
            raise IncidentInputError(f"unknown category {category_id!r}")
        return found

    # ---- intake ----------------------------------------------------------------------------

    def place_of(self, place: Place, reporter_unit: str | None = None) -> Place:
        """The grid from the position (grid polygons), else the given grid, else the
        reporter's unit when it is a grid (an area is kept as the area)."""
        grid = place.grid
        if grid is None and place.lat is not None and place.lon is not None:
            grid = self.org.grid_at(place.lon, place.lat)
        if grid is None and reporter_unit is not None:
            if reporter_unit in self.org.grids:
                grid = reporter_unit
            elif reporter_unit in self.org.areas and place.area is None:
                return Place(None, reporter_unit, place.lat, place.lon)
        return Place(grid, place.area, place.lat, place.lon)

    def report(
        self,
        category: str,
        text: str,
        *,
        source: Source,
        reporter: str,
        place: Place,
        reporter_unit: str | None = None,
        alarm: int | None = None,
    ) -> Incident:
        where = self.place_of(place, reporter_unit)
        step = machine.report(
            self._next_id, self.category(category), text, self.clock(), source=source,
            reporter=reporter, grid=where.grid, area=where.area, lat=where.lat, lon=where.lon,
            alarm=alarm, org=self.org,
        )  # fmt: skip
        self._next_id += 1
        return self._apply(step)

    def from_alarm(
        self, alarm: Mapping[str, Any], category: str, text: str | None, actor: str
    ) -> Incident:
        """An incident made from an alarm of the alarm queue (the alarms contract's Alarm),
        by a dispatcher's choice: its unit and position, linked by the alarm's id."""
        position = alarm.get("position") or {}
        unit = alarm.get("unit")
        description = text or f"{alarm.get('kind')} alarm of {alarm.get('device')}"
        return self.report(
            category, description, source="alarm", reporter=actor,
            place=Place(lat=position.get("lat"), lon=position.get("lon")),
            reporter_unit=unit if isinstance(unit, str) else None, alarm=int(alarm["id"]),
        )  # fmt: skip

    # ---- transitions -----------------------------------------------------------------------

    def step(self, incident_id: int, action: str, actor: str, **args: Any) -> Incident:
        """Apply a dispatcher's action (accept, assign, unassign, resolve, close, reopen,
        escalate, deescalate, note); TransitionError / IncidentInputError when refused."""
        incident = self.get(incident_id)
        now = self.clock()
        if action == "accept":
            step = machine.accept(incident, now, actor)
        elif action == "assign":
            step = machine.assign(incident, args.get("officers") or (), now, actor)
        elif action == "unassign":
            step = machine.unassign(incident, str(args.get("officer")), now, actor)
        elif action == "resolve":
            step = machine.resolve(incident, now, actor, args.get("note"))
        elif action == "close":
            step = machine.close(incident, now, actor, args.get("note"))
        elif action == "reopen":
            step = machine.reopen(incident, now, actor, args.get("reason"))
        elif action == "escalate":
            step = machine.escalate(incident, now, actor, args.get("reason"), self.org)
        elif action == "deescalate":
            step = machine.deescalate(incident, now, actor, args.get("reason"), self.org)
        elif action == "note":
            step = machine.add_note(incident, now, actor, args.get("note"))
        else:
            raise IncidentInputError(f"unknown action {action!r}")
        return self._apply(step)

    def officer_answer(
        self, incident_id: int, officer: str, status: OfficerStatus, text: str | None = None
    ) -> Incident:
        incident = self.get(incident_id)
        return self._apply(machine.officer_status(incident, officer, status, self.clock(), text))

    def link(self, incident_id: int, actor: str, **links: Any) -> Incident:
        return self._apply(machine.link(self.get(incident_id), self.clock(), actor, **links))

    def tick(self) -> int:
        """Deadlines: remind or escalate what is due (call every second or so); returns how
        many incidents changed."""
        now = self.clock()
        changed = 0
        for incident in [i for i in self.incidents.values() if i.open]:
            category = self.categories.get(incident.category)
            if category is None:
                continue
            step = machine.tick(incident, category, now, self.org)
            if step is not None:
                self._apply(step)
                changed += 1
        cutoff = now - self.keep_closed_s
        for gone in [i.id for i in self.incidents.values() if i.closed_at and i.closed_at < cutoff]:
            del self.incidents[gone]
            self.recent.pop(gone, None)
            self._views.pop(gone, None)
        return changed

    # ---- officers --------------------------------------------------------------------------

    def set_officers(self, rows: Iterable[tuple[str, str, str, bool]]) -> None:
        """Officers from the directory rows (id, unit, role, enabled): officers and guards."""
        rows = list(rows)
        self.units = {device: unit for device, unit, _, _ in rows}
        self.officers.set_officers(
            (device, unit if unit in self.org.grids else None)
            for device, unit, role, enabled in rows
            if enabled and role in ("officer", "guard")
        )

    def suggest(self, incident_id: int, k: int = 5) -> list[Suggestion]:
        incident = self.get(incident_id)
        lat, lon = incident.lat, incident.lon
        if lat is None or lon is None:
            lat, lon = self._centre_of(incident.grid or incident.unit)
        return self.officers.suggest(lat, lon, incident.grid, k, exclude=incident.officers)

    def _centre_of(self, unit: str) -> tuple[float, float]:
        grids = [unit] if unit in self.org.grids else list(self.org.descendants(unit))
        grids = [g for g in grids if g in self.org.grids] or list(self.org.grids)
        points = [p for g in grids for p in self.org.grids[g].polygon]
        return (sum(p[1] for p in points) / len(points), sum(p[0] for p in points) / len(points))

    # ---- views -----------------------------------------------------------------------------

    def view(self, incident: Incident) -> dict[str, Any]:
        """The API's view of an incident (IncidentOut). The part that only changes with a step
        is kept per incident held in memory (the board shows the same ones again and again);
        only an open incident's deadlines are worked out at each call. Do not modify it."""
        cached = self._views.get(incident.id)
        if cached is None or cached[0] != incident.seq or cached[1] is not incident:
            static = self._static_view(incident)
            if incident.id in self.incidents:
                self._views[incident.id] = (incident.seq, incident, static)
        else:
            static = cached[2]
        category = self.categories.get(incident.category)
        if not incident.open or category is None:
            return static
        return {
            **static,
            "overdue": machine.overdue(incident, category, self.clock()),
            "next_deadline": machine.next_deadline(incident, category),
        }

    def _static_view(self, incident: Incident) -> dict[str, Any]:
        category = self.categories.get(incident.category)
        return {
            "id": incident.id, "category": incident.category,
            "category_name": category.name if category else incident.category,
            "category_name_zh": category.name_zh if category else incident.category,
            "text": incident.text, "source": incident.source, "reporter": incident.reporter,
            "state": incident.state, "tier": incident.tier, "unit": incident.unit,
            "grid": incident.grid, "area": incident.area,
            "position": None if incident.lat is None or incident.lon is None
            else {"lat": incident.lat, "lon": incident.lon},
            "reported_at": incident.reported_at, "tier_since": incident.tier_since,
            "accepted_at": incident.accepted_at, "assigned_at": incident.assigned_at,
            "en_route_at": incident.en_route_at, "on_scene_at": incident.on_scene_at,
            "resolved_at": incident.resolved_at, "closed_at": incident.closed_at,
            "closed_tier": incident.closed_tier, "officers": list(incident.officers),
            "reopens": incident.reopens, "escalations": incident.escalations,
            "resolution": incident.resolution, "talkgroup": incident.talkgroup,
            "dispatcher": incident.dispatcher, "alarm": incident.alarm, "voice": incident.voice,
            "seq": incident.seq,
            "updated_at": incident.updated_at,
            "overdue": False, "next_deadline": None,
        }  # fmt: skip

    def board(
        self, visible: Callable[[Incident], bool] | None, include_closed: bool = True
    ) -> list[Incident]:
        """Current incidents the caller sees: every open one (oldest first), then the
        `BOARD_CLOSED` most recently resolved or closed within `keep_closed_s` (newest first;
        older ones are history: ``state=all``); `visible` None: everything."""
        everything = self.incidents.values()
        found = list(everything) if visible is None else [i for i in everything if visible(i)]
        open_ = sorted((i for i in found if i.open), key=lambda i: i.reported_at)
        if not include_closed:
            return open_
        done = heapq.nlargest(
            BOARD_CLOSED, (i for i in found if not i.open), key=lambda i: i.updated_at
        )
        return open_ + done

    # ---- gateway events --------------------------------------------------------------------

    def observe_gateway_events(self, events: list[GatewayEvent]) -> None:
        """Event sink of the gateway runner: officers' answers and availability (status
        messages), reports from terminals, SOS, voice notes (the next burst), presence."""
        for event in events:
            try:
                self._observe(event)
            except IncidentError as exc:  # bad input from a terminal: counted, logged once
                self.refused += 1
                self._log_once.warning(
                    (event.device, event.kind, type(exc).__name__),
                    "incident %s from %s refused: %s", event.kind, event.device, exc,
                )  # fmt: skip
            except Exception:  # a bug: logged with its trace, never a crash of the runner
                self.refused += 1
                self.log.exception("incident event %s from %s failed", event.kind, event.device)

    def observe_hub(self, events: list[GatewayEvent]) -> None:
        """Positions from tracking (hub listener): officers' last fixes."""
        for event in events:
            if event.kind == "position" and event.device is not None:
                data = event.data
                self.officers.position(
                    event.device, float(data["lat"]), float(data["lon"]), event.wall_ms / 1000
                )

    def _observe(self, event: GatewayEvent) -> None:
        observe(self, event)
