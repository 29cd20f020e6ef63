"""Pydantic schemas of the incidents API (docs in the routes)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from gateway.api.schemas import DB_INT_MAX
from protocol.ids import CATEGORY_ID_RE, DEVICE_ID_RE, UNIT_ID_RE

Tier = Literal["grid", "area", "centre"]
IncidentState = Literal[
    "reported", "accepted", "assigned", "en_route", "on_scene", "resolved", "closed"
]


class PositionIn(BaseModel):
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)


class PositionOut(BaseModel):
    lat: float
    lon: float


class CategoryOut(BaseModel):
    id: str
    name: str
    name_zh: str
    tier: Tier
    accept_within_s: float
    resolve_within_s: float
    on_overdue: Literal["escalate", "remind"]


class IncidentIn(BaseModel):
    """A new incident from a dispatcher (console or API). The grid: `grid`, else the grid the
    position is in, else the caller's own unit."""

    category: str = Field(pattern=CATEGORY_ID_RE.pattern)
    text: str = Field(min_length=1, max_length=2000)
    grid: str | None = Field(None, pattern=UNIT_ID_RE.pattern)
    area: str | None = Field(None, pattern=UNIT_ID_RE.pattern)
    position: PositionIn | None = None


class FromAlarmIn(BaseModel):
    category: str = Field(pattern=CATEGORY_ID_RE.pattern)
    text: str | None = Field(None, max_length=2000)


class ActionIn(BaseModel):
    """Body of a transition: `note` (resolve, close — required there — and note), `reason`
    (reopen, escalate, deescalate: required), `officers` (assign), `officer` (unassign)."""

    note: str | None = Field(None, max_length=2000)
    reason: str | None = Field(None, max_length=2000)
    officers: list[str] = Field(default_factory=list, max_length=32)
    officer: str | None = Field(None, pattern=DEVICE_ID_RE.pattern)


class IncidentOut(BaseModel):
    id: int = Field(ge=1, le=DB_INT_MAX)
    category: str
    category_name: str
    category_name_zh: str
    text: str
    source: Literal["dispatcher", "api", "terminal", "sos", "alarm"]
    reporter: str
    state: IncidentState
    tier: Tier
    unit: str
    grid: str | None
    area: str | None
    position: PositionOut | None
    reported_at: float
    tier_since: float
    accepted_at: float | None
    assigned_at: float | None
    en_route_at: float | None
    on_scene_at: float | None
    resolved_at: float | None
    closed_at: float | None
    closed_tier: Tier | None
    officers: list[str]
    reopens: int
    escalations: int
    resolution: str | None
    talkgroup: str | None
    dispatcher: str | None
    alarm: int | None
    voice: str | None
    seq: int
    updated_at: float
    overdue: bool
    next_deadline: float | None


class TransitionOut(BaseModel):
    seq: int
    ts: float
    actor: str
    action: str
    from_state: IncidentState | None
    to_state: IncidentState
    from_tier: Tier | None
    to_tier: Tier
    note: str | None
    detail: dict[str, object] | None


class SuggestionOut(BaseModel):
    device: str
    grid: str | None
    availability: Literal["available", "on_duty", "busy", "off"]
    same_grid: bool
    distance_m: float
    eta_s: float
    fix_at: float


class ReportRowOut(BaseModel):
    period: str
    tier: str
    category: str
    incidents: int
    closed: int
    closed_share: float | None
    reopened: int
    reopen_rate: float
    accept_mean_s: float | None
    accept_median_s: float | None
    on_scene_mean_s: float | None
    on_scene_median_s: float | None
    close_mean_s: float | None
    close_median_s: float | None
