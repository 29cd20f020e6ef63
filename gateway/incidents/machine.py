"""The incident state machine (pure, sans-I/O: `now` is passed in, nothing is read or written).

    reported -> accepted (by a tier) -> assigned -> en_route -> on_scene -> resolved -> closed

with `reopen` (resolved/closed -> accepted at the current tier), `escalate`/`deescalate` one tier
with a reason, and deadlines per category (:func:`tick`). Every function returns a
:class:`Step`: the new incident and the transitions to store (each with actor and time); a step
that is not allowed raises :class:`TransitionError` and changes nothing.

Tiers and units: at the grid tier the incident is handled by its grid, at the area tier by its
grid's area, at the centre tier by the centre. An incident without a grid cannot be at the grid
tier, nor without an area at the area tier.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Final

from gateway.incidents.categories import TIERS, Category, Tier
from gateway.incidents.errors import IncidentInputError, TransitionError
from gateway.incidents.model import (
    OPEN_STATES,
    SYSTEM_ACTOR,
    WORKING_STATES,
    Incident,
    OfficerStatus,
    Source,
    State,
    Step,
    Transition,
    state_rank,
    tier_rank,
)
from protocol.ids import incident_talkgroup
from protocol.org import Organisation

MAX_TEXT: Final = 2000
MAX_NOTE: Final = 2000
MAX_OFFICERS: Final = 32
#: Before acceptance an escalation or de-escalation hands the incident to the new tier, which
#: must accept it; once officers work on it they go on, under the new tier.
_UNACCEPTED: Final[frozenset[State]] = frozenset({"reported", "accepted"})


def unit_for(tier: Tier, grid: str | None, area: str | None, org: Organisation) -> str:
    if tier == "grid":
        if grid is None:
            raise TransitionError("an incident without a grid cannot be handled at a grid")
        return grid
    if tier == "area":
        if area is None:
            raise TransitionError("an incident without an area cannot be handled at an area")
        return area
    return org.centre.id


def lowest_tier(category: Category, grid: str | None, area: str | None) -> Tier:
    """The category's tier, or higher when the place does not allow it."""
    tier = category.tier
    if tier == "grid" and grid is None:
        tier = "area"
    if tier == "area" and area is None:
        tier = "centre"
    return tier


def _note(text: str | None, what: str, *, required: bool) -> str | None:
    if text is None or not text.strip():
        if required:
            raise IncidentInputError(f"{what} is required")
        return None
    if len(text) > MAX_NOTE:
        raise IncidentInputError(f"{what} is longer than {MAX_NOTE} characters")
    return text.strip()


def _step(
    before: Incident | None,
    after: Incident,
    now: float,
    actor: str,
    action: str,
    note: str | None = None,
    detail: dict[str, Any] | None = None,
) -> Step:
    seq = after.seq + 1
    done = replace(after, seq=seq, updated_at=now)
    transition = Transition(
        after.id, seq, now, actor, action,
        None if before is None else before.state, done.state,
        None if before is None else before.tier, done.tier, note, detail,
    )  # fmt: skip
    return Step(done, (transition,))


def _chain(first: Step, second: Step) -> Step:
    return Step(second.incident, first.transitions + second.transitions)


def report(
    incident_id: int,
    category: Category,
    text: str,
    now: float,
    *,
    source: Source,
    reporter: str,
    grid: str | None,
    org: Organisation,
    area: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    alarm: int | None = None,
) -> Step:
    """A new incident, at the lowest tier its category and place allow."""
    if not text.strip() or len(text) > MAX_TEXT:
        raise IncidentInputError(f"the description must be 1..{MAX_TEXT} characters")
    if grid is not None and grid not in org.grids:
        raise IncidentInputError(f"{grid!r} is not a grid")
    if grid is not None:
        area = org.parent(grid)
    elif area is not None and area not in org.areas:
        raise IncidentInputError(f"{area!r} is not an area")
    tier = lowest_tier(category, grid, area)
    incident = Incident(
        id=incident_id, category=category.id, text=text.strip(), source=source,
        reporter=reporter, grid=grid, area=area, tier=tier,
        unit=unit_for(tier, grid, area, org), reported_at=now, tier_since=now, lat=lat, lon=lon,
        alarm=alarm, updated_at=now,
    )  # fmt: skip
    return _step(None, incident, now, reporter, "reported", None, {"source": source})


def _require_open(incident: Incident, action: str) -> None:
    if not incident.open:
        raise TransitionError(f"incident {incident.id} is {incident.state}; cannot {action}")


def accept(incident: Incident, now: float, actor: str) -> Step:
    """The handling tier takes the incident on."""
    if incident.state != "reported":
        raise TransitionError(f"incident {incident.id} is {incident.state}, not reported")
    after = replace(
        incident,
        state="accepted",
        accepted_at=incident.accepted_at if incident.accepted_at is not None else now,
        reminded=frozenset(k for k in incident.reminded if not k.startswith("accept")),
    )
    return _step(incident, after, now, actor, "accepted", None, {"unit": incident.unit})


def assign(incident: Incident, officers: Iterable[str], now: float, actor: str) -> Step:
    """Send officers (added to any already assigned); a reported incident is accepted first."""
    _require_open(incident, "assign")
    new = tuple(dict.fromkeys(o for o in officers if o not in incident.officers))
    if not new:
        raise IncidentInputError("name at least one officer not already assigned")
    if len(incident.officers) + len(new) > MAX_OFFICERS:
        raise IncidentInputError(f"at most {MAX_OFFICERS} officers per incident")
    first = accept(incident, now, actor) if incident.state == "reported" else None
    current = first.incident if first is not None else incident
    state: State = "assigned" if current.state == "accepted" else current.state
    after = replace(
        current,
        state=state,
        officers=current.officers + new,
        assigned_at=current.assigned_at if current.assigned_at is not None else now,
        talkgroup=current.talkgroup or incident_talkgroup(current.id),
        dispatcher=actor,
    )
    step = _step(current, after, now, actor, "assigned", None, {"officers": list(new)})
    return _chain(first, step) if first is not None else step


def unassign(incident: Incident, officer: str, now: float, actor: str) -> Step:
    _require_open(incident, "unassign")
    if officer not in incident.officers:
        raise IncidentInputError(f"{officer} is not assigned to incident {incident.id}")
    officers = tuple(o for o in incident.officers if o != officer)
    state: State = incident.state
    if not officers and state in WORKING_STATES:
        state = "accepted"
    after = replace(incident, officers=officers, state=state)
    return _step(incident, after, now, actor, "unassigned", None, {"officer": officer})


_OFFICER_STATE: Final[dict[OfficerStatus, State]] = {
    "accepted": "assigned",
    "en_route": "en_route",
    "on_scene": "on_scene",
    "resolved": "resolved",
}


def officer_status(
    incident: Incident, officer: str, status: OfficerStatus, now: float, text: str | None = None
) -> Step:
    """An assigned officer's answer from its terminal. The incident moves forward only (the
    first officer on scene puts it on scene); an answer that moves nothing is still stored."""
    _require_open(incident, f"take {status!r}")
    if officer not in incident.officers:
        raise TransitionError(f"{officer} is not assigned to incident {incident.id}")
    target = _OFFICER_STATE[status]
    note = _note(text, "text", required=False)
    after = incident
    if state_rank(target) > state_rank(incident.state):
        after = _milestone(replace(incident, state=target), target, now)
        if target == "resolved":
            after = replace(after, resolution=after.resolution or note)
    return _step(incident, after, now, officer, f"officer_{status}", note, {"officer": officer})


def _milestone(incident: Incident, state: State, now: float) -> Incident:
    if state == "en_route" and incident.en_route_at is None:
        return replace(incident, en_route_at=now)
    if state == "on_scene" and incident.on_scene_at is None:
        return replace(incident, on_scene_at=now)
    if state == "resolved" and incident.resolved_at is None:
        return replace(incident, resolved_at=now)
    return incident


def resolve(incident: Incident, now: float, actor: str, note: str | None = None) -> Step:
    """The matter is settled (by a dispatcher; officers resolve with :func:`officer_status`)."""
    if incident.state not in OPEN_STATES or incident.state == "reported":
        raise TransitionError(f"incident {incident.id} is {incident.state}; accept it first")
    text = _note(note, "note", required=False)
    after = _milestone(replace(incident, state="resolved"), "resolved", now)
    if text is not None:
        after = replace(after, resolution=text)
    return _step(incident, after, now, actor, "resolved", text)


def close(incident: Incident, now: float, actor: str, note: str | None) -> Step:
    """Close the loop; takes a resolution note. Only a resolved incident closes."""
    text = _note(note, "a resolution note", required=True)
    if incident.state != "resolved":
        raise TransitionError(f"incident {incident.id} is {incident.state}, not resolved")
    after = replace(
        incident, state="closed", closed_at=now, closed_tier=incident.tier, resolution=text,
        reminded=frozenset(),
    )  # fmt: skip
    return _step(incident, after, now, actor, "closed", text)


def reopen(incident: Incident, now: float, actor: str, reason: str | None) -> Step:
    """A resolved or closed incident is open again, accepted at its tier, with no officers."""
    text = _note(reason, "a reason", required=True)
    if incident.state not in ("resolved", "closed"):
        raise TransitionError(f"incident {incident.id} is {incident.state}; nothing to reopen")
    after = replace(
        incident, state="accepted", reopens=incident.reopens + 1, officers=(), closed_at=None,
        closed_tier=None, tier_since=now, reminded=frozenset(),
    )  # fmt: skip
    return _step(incident, after, now, actor, "reopened", text)


def _move(
    incident: Incident, tier: Tier, now: float, actor: str, reason: str, action: str,
    org: Organisation,
) -> Step:  # fmt: skip
    unit = unit_for(tier, incident.grid, incident.area, org)
    state: State = "reported" if incident.state in _UNACCEPTED else incident.state
    after = replace(
        incident, tier=tier, unit=unit, state=state, tier_since=now, reminded=frozenset(),
        escalations=incident.escalations + (action == "escalated"),
    )  # fmt: skip
    return _step(incident, after, now, actor, action, reason, {"unit": unit})


def escalate(
    incident: Incident, now: float, actor: str, reason: str | None, org: Organisation
) -> Step:
    """One tier up (grid -> area -> centre); an area-less incident goes to the centre."""
    text = _note(reason, "a reason", required=True)
    assert text is not None
    _require_open(incident, "escalate")
    if incident.tier == "centre":
        raise TransitionError(f"incident {incident.id} is at the centre already")
    tier: Tier = "area" if incident.tier == "grid" and incident.area is not None else "centre"
    return _move(incident, tier, now, actor, text, "escalated", org)


def deescalate(
    incident: Incident, now: float, actor: str, reason: str | None, org: Organisation
) -> Step:
    """One tier down (centre -> area -> grid), where the place allows it."""
    text = _note(reason, "a reason", required=True)
    assert text is not None
    _require_open(incident, "de-escalate")
    rank = tier_rank(incident.tier)
    lower = [t for t in TIERS[:rank] if t != "grid" or incident.grid is not None]
    lower = [t for t in lower if t != "area" or incident.area is not None]
    if not lower:
        raise TransitionError(f"incident {incident.id} cannot go below {incident.tier}")
    return _move(incident, lower[-1], now, actor, text, "deescalated", org)


def add_note(incident: Incident, now: float, actor: str, text: str | None) -> Step:
    note = _note(text, "the note", required=True)
    return _step(incident, incident, now, actor, "note", note)


def link(incident: Incident, now: float, actor: str, **links: Any) -> Step:
    """Link a voice note, talkgroup or alarm to the incident (stored as a transition too)."""
    allowed = {"voice", "talkgroup", "alarm"}
    if not links or set(links) - allowed:
        raise IncidentInputError(f"links are {sorted(allowed)}")
    after = replace(incident, **links)
    return _step(incident, after, now, actor, "linked", None, dict(links))


# ---- deadlines -----------------------------------------------------------------------------


def deadlines(incident: Incident, category: Category) -> list[tuple[str, float]]:
    """The deadlines that apply now, not yet reminded: (key, when). Keys name the deadline and
    the tier (``accept@grid``), so each tier stint reminds once per deadline."""
    if not incident.open:
        return []
    found: list[tuple[str, float]] = []
    if incident.state == "reported":
        found.append((f"accept@{incident.tier}", incident.tier_since + category.accept_within_s))
    found.append((f"resolve@{incident.tier}", incident.tier_since + category.resolve_within_s))
    return [(key, at) for key, at in found if key not in incident.reminded]


def next_deadline(incident: Incident, category: Category) -> float | None:
    found = deadlines(incident, category)
    return min(at for _, at in found) if found else None


def overdue(incident: Incident, category: Category, now: float) -> bool:
    """Whether any deadline of the incident's current tier has passed (reminded or not)."""
    if not incident.open:
        return False
    if incident.state == "reported" and now >= incident.tier_since + category.accept_within_s:
        return True
    return now >= incident.tier_since + category.resolve_within_s


def tick(incident: Incident, category: Category, now: float, org: Organisation) -> Step | None:
    """What the clock does to an incident at `now`: for each deadline passed and not yet
    handled, a reminder, or — where the category says so and a higher tier exists — an
    escalation (which restarts the deadlines at the new tier). None: nothing is due."""
    steps: list[Step] = []
    current = incident
    for key, at in deadlines(current, category):
        if now < at:
            continue
        kind = key.partition("@")[0]
        reason = f"not {'accepted' if kind == 'accept' else 'resolved'} in time"
        if category.escalates and current.tier != "centre":
            step = escalate(current, now, SYSTEM_ACTOR, reason, org)
            steps.append(step)
            current = step.incident
            break  # the new tier's deadlines start now
        after = replace(current, reminded=current.reminded | {key})
        step = _step(current, after, now, SYSTEM_ACTOR, "reminded", reason, {"deadline": key})
        steps.append(step)
        current = step.incident
    if not steps:
        return None
    return Step(current, tuple(t for s in steps for t in s.transitions))
