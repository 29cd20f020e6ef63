"""The alarm queue, sans-I/O: what dispatchers must attend to, and who did.

An alarm (SOS, low battery, left grid, offline too long, no movement) is raised `unattended`,
then `acknowledged` (by whom, when), then `closed` (valid or false alarm, with a note). One
device has at most one open alarm of a kind: a condition raised again while its alarm is open
updates that alarm (position, `active`). `active` says whether the condition still holds (the
terminal cancelled its SOS, the battery was charged); the alarm stays open until closed.

An SOS left unattended for `escalate_after_s` escalates to the next tier (grid → area →
centre), again after each further `escalate_after_s`, until the top. Every change returns the
new `Alarm` (to store and stream); `now` is wall-clock epoch seconds, injected.

Kept apart from where alarms come from (tracking, the control plane) and what is done about
them, so that another kind of case (an incident) can be built on the same states.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, cast

AlarmKind = Literal["sos", "low_battery", "offline_too_long", "left_grid", "no_movement"]
ALARM_KINDS: Final[tuple[AlarmKind, ...]] = (
    "sos", "low_battery", "offline_too_long", "left_grid", "no_movement",
)  # fmt: skip
AlarmState = Literal["unattended", "acknowledged", "closed"]
Outcome = Literal["valid", "false_alarm"]
OUTCOMES: Final = ("valid", "false_alarm")
#: Default: an SOS nobody acknowledged for this long goes up one tier.
ESCALATE_AFTER_S: Final = 120.0
MAX_NOTE_CHARS: Final = 2000


class AlarmError(Exception):
    """An action the queue refuses."""


class UnknownAlarmError(AlarmError):
    """No open alarm has this id."""


class AlarmStateError(AlarmError):
    """The alarm is not in a state that allows the action."""


@dataclass(frozen=True, slots=True)
class Position:
    lat: float
    lon: float
    at: float  # epoch s of the fix


@dataclass(frozen=True, slots=True)
class Alarm:
    id: int
    kind: AlarmKind
    device: str
    unit: str  # the device's unit when raised (a grid)
    state: AlarmState
    raised_at: float
    active: bool = True
    position: Position | None = None
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    closed_by: str | None = None
    closed_at: float | None = None
    outcome: Outcome | None = None
    note: str | None = None
    escalated_to: str | None = None
    escalations: int = 0
    updated_at: float = 0.0

    @property
    def open(self) -> bool:
        return self.state != "closed"

    def as_dict(self) -> dict[str, Any]:
        """The alarm as the API, the hub and the store show it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "device": self.device,
            "unit": self.unit,
            "state": self.state,
            "raised_at": self.raised_at,
            "active": self.active,
            "position": None
            if self.position is None
            else {"lat": self.position.lat, "lon": self.position.lon, "at": self.position.at},
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": self.acknowledged_at,
            "closed_by": self.closed_by,
            "closed_at": self.closed_at,
            "outcome": self.outcome,
            "note": self.note,
            "escalated_to": self.escalated_to,
            "escalations": self.escalations,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alarm:
        pos = data.get("position")
        fields = {k: data[k] for k in data if k in cls.__dataclass_fields__ and k != "position"}
        return cls(**fields, position=None if not pos else Position(**pos))


@dataclass(frozen=True, slots=True)
class AlarmPolicy:
    escalate_after_s: float | None = ESCALATE_AFTER_S  # None: never
    escalating: frozenset[str] = frozenset({"sos"})


class AlarmQueue:
    """Open alarms by id; `next_tier(unit)` is the unit above (None at the top)."""

    def __init__(
        self,
        next_tier: Callable[[str], str | None],
        policy: AlarmPolicy | None = None,
        *,
        open_alarms: Iterable[Alarm] = (),
        last_id: int = 0,
    ) -> None:
        self.policy = policy or AlarmPolicy()
        self._next_tier = next_tier
        self._open: dict[int, Alarm] = {a.id: a for a in open_alarms if a.open}
        self._last_id = max([last_id, *self._open])

    # ---- reading ----------------------------------------------------------------------------

    def open_alarms(self) -> list[Alarm]:
        """Newest first."""
        return sorted(self._open.values(), key=lambda a: (a.raised_at, a.id), reverse=True)

    def get(self, alarm_id: int) -> Alarm:
        alarm = self._open.get(alarm_id)
        if alarm is None:
            raise UnknownAlarmError(f"no open alarm {alarm_id}")
        return alarm

    def find(self, device: str, kind: str) -> Alarm | None:
        for alarm in self._open.values():
            if alarm.device == device and alarm.kind == kind:
                return alarm
        return None

    # ---- conditions -------------------------------------------------------------------------

    def raise_alarm(
        self, kind: AlarmKind, device: str, unit: str, now: float, position: Position | None
    ) -> Alarm:
        """A condition began: a new unattended alarm, or the open one of the same kind and
        device updated (active again, newer position)."""
        current = self.find(device, kind)
        if current is not None:
            return self._put(
                replace(current, active=True, position=position or current.position, updated_at=now)
            )
        self._last_id += 1
        return self._put(Alarm(self._last_id, kind, device, unit, "unattended", now,
                               position=position, updated_at=now))  # fmt: skip

    def clear(
        self, kind: str, device: str, now: float, position: Position | None = None
    ) -> Alarm | None:
        """A condition ended; its alarm (if open) stays open, no longer active."""
        current = self.find(device, kind)
        if current is None or not current.active:
            return None
        return self._put(
            replace(current, active=False, position=position or current.position, updated_at=now)
        )

    # ---- dispatchers' actions -------------------------------------------------------------------

    def acknowledge(self, alarm_id: int, by: str, now: float) -> Alarm:
        alarm = self.get(alarm_id)
        if alarm.state != "unattended":
            raise AlarmStateError(
                f"alarm {alarm_id} is already acknowledged by {alarm.acknowledged_by}"
            )
        return self._put(
            replace(alarm, state="acknowledged", acknowledged_by=by, acknowledged_at=now,
                    updated_at=now)
        )  # fmt: skip

    def close(self, alarm_id: int, by: str, outcome: str, note: str, now: float) -> Alarm:
        alarm = self.get(alarm_id)
        if alarm.state != "acknowledged":
            raise AlarmStateError(f"alarm {alarm_id} must be acknowledged before it is closed")
        if outcome not in OUTCOMES:
            raise AlarmError(f"outcome must be one of {', '.join(OUTCOMES)}")
        note = note.strip()
        if not note or len(note) > MAX_NOTE_CHARS:
            raise AlarmError(f"a note of 1-{MAX_NOTE_CHARS} characters is required")
        closed = replace(
            alarm, state="closed", closed_by=by, closed_at=now, outcome=cast(Outcome, outcome),
            note=note, updated_at=now,
        )  # fmt: skip
        del self._open[alarm_id]
        return closed

    # ---- time -------------------------------------------------------------------------------

    def escalation_due(self, alarm: Alarm) -> float | None:
        """When an unattended alarm goes up its next tier (None: it does not)."""
        after = self.policy.escalate_after_s
        if (
            after is None
            or alarm.state != "unattended"
            or alarm.kind not in self.policy.escalating
            or self._next_tier(alarm.escalated_to or alarm.unit) is None
        ):
            return None
        return alarm.raised_at + after * (alarm.escalations + 1)

    def tick(self, now: float) -> list[Alarm]:
        """Escalate every alarm that is due (one tier per due step; several if overdue)."""
        changed = []
        for alarm in list(self._open.values()):
            escalated = alarm
            while (due := self.escalation_due(escalated)) is not None and due <= now:
                above = self._next_tier(escalated.escalated_to or escalated.unit)
                escalated = replace(
                    escalated, escalated_to=above, escalations=escalated.escalations + 1,
                    updated_at=now,
                )  # fmt: skip
            if escalated is not alarm:
                changed.append(self._put(escalated))
        return changed

    def _put(self, alarm: Alarm) -> Alarm:
        self._open[alarm.id] = alarm
        return alarm
