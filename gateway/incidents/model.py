"""Incident values (pure): the incident, its states and sources, and one stored transition."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from gateway.incidents.categories import TIERS, Tier

State = Literal["reported", "accepted", "assigned", "en_route", "on_scene", "resolved", "closed"]
STATES: Final[tuple[State, ...]] = (
    "reported", "accepted", "assigned", "en_route", "on_scene", "resolved", "closed",
)  # fmt: skip
OPEN_STATES: Final[frozenset[State]] = frozenset(STATES[:5])
#: States in which officers are working on the incident (they are busy).
WORKING_STATES: Final[frozenset[State]] = frozenset({"assigned", "en_route", "on_scene"})
Source = Literal["dispatcher", "api", "terminal", "sos", "alarm"]
SOURCES: Final[tuple[Source, ...]] = ("dispatcher", "api", "terminal", "sos", "alarm")
#: What an officer answers an assignment with (status message codes, protocol §5.6).
OfficerStatus = Literal["accepted", "en_route", "on_scene", "resolved"]
OFFICER_STATUSES: Final[tuple[OfficerStatus, ...]] = (
    "accepted", "en_route", "on_scene", "resolved",
)  # fmt: skip
SYSTEM_ACTOR: Final = "system"


def tier_rank(tier: Tier) -> int:
    return TIERS.index(tier)


def state_rank(state: State) -> int:
    return STATES.index(state)


@dataclass(frozen=True, slots=True)
class Incident:
    """One incident as it stands now. Times are Unix seconds; `unit` is the handling unit (the
    grid, its area or the centre, by `tier`); `tier_since` is when it arrived at that tier
    (deadlines count from there); the `*_at` milestones are the first time each was reached."""

    id: int
    category: str
    text: str
    source: Source
    reporter: str
    grid: str | None
    area: str | None
    tier: Tier
    unit: str
    reported_at: float
    tier_since: float
    lat: float | None = None
    lon: float | None = None
    state: State = "reported"
    accepted_at: float | None = None
    assigned_at: float | None = None
    en_route_at: float | None = None
    on_scene_at: float | None = None
    resolved_at: float | None = None
    closed_at: float | None = None
    closed_tier: Tier | None = None
    officers: tuple[str, ...] = ()
    reopens: int = 0
    escalations: int = 0
    resolution: str | None = None
    reminded: frozenset[str] = field(default_factory=frozenset)
    talkgroup: str | None = None
    dispatcher: str | None = None  # the account that assigned officers last (its talkgroup)
    alarm: int | None = None
    voice: str | None = None  # the linked voice note: "<floor key>#<burst>" until recorded
    seq: int = 0
    updated_at: float = 0.0

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES


@dataclass(frozen=True, slots=True)
class Transition:
    """One step of an incident's life, stored for ever: who did what when, and what changed."""

    incident: int
    seq: int
    ts: float
    actor: str
    action: str
    from_state: State | None
    to_state: State
    from_tier: Tier | None
    to_tier: Tier
    note: str | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """What a transition produced: the incident after it and the transitions to store."""

    incident: Incident
    transitions: tuple[Transition, ...]


@dataclass(frozen=True, slots=True)
class Place:
    """Where an incident is, as far as the intake knows."""

    grid: str | None = None
    area: str | None = None
    lat: float | None = None
    lon: float | None = None
