"""The incident state machine and its deadlines, as tables (an injected clock; no sleeping)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.incidents import machine as m
from gateway.incidents.categories import (
    Categories,
    default_categories,
    load_categories,
    parse_categories,
)
from gateway.incidents.errors import CategoryConfigError, IncidentInputError, TransitionError
from gateway.incidents.model import Incident, Step
from protocol.org import default_org

ORG = default_org()
CATS: Categories = default_categories()
T0 = 1_800_000_000.0


def new(category: str = "police", grid: str | None = "grid-01", now: float = T0) -> Incident:
    return m.report(
        1, CATS[category], "fight outside the market", now, source="dispatcher",
        reporter="acct:g1", grid=grid, org=ORG,
    ).incident  # fmt: skip


def test_shipped_categories_have_the_five_functions_and_the_sites_own() -> None:
    names = {c.name_zh for c in CATS.values()}
    assert {"警情处置", "矛盾调处", "生态治理", "反诈反邪", "法律援助"} <= names
    assert {"物业管理", "新居民服务", "助企服务", "除险保安"} <= names
    assert CATS["police"].accept_within_s == 300 and CATS["police"].escalates
    assert not CATS["mediation"].escalates


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("version: 2\ncategories: []", "version: 1"),
        ("version: 1\ncategories: []", "no categories"),
        ("version: 1\ncategories: [{id: X, name: a, name_zh: b, accept_within: 1, "
         "resolve_within: 2}]", "'id'"),
        ("version: 1\ncategories: [{id: x, name: a, name_zh: b, accept_within: 0, "
         "resolve_within: 2}]", "accept_within"),
        ("version: 1\ncategories: [{id: x, name: a, name_zh: b, accept_within: 9, "
         "resolve_within: 2}]", "shorter"),
        ("version: 1\ncategories: [{id: x, name: a, name_zh: b, accept_within: 1, "
         "resolve_within: 2, tier: county}]", "tier"),
        ("version: 1\ncategories: [{id: x, name: a, name_zh: b, accept_within: 1, "
         "resolve_within: 2, colour: red}]", "unknown keys"),
        ("version: 1\ncategories: [{id: x, name: a, name_zh: b, accept_within: 1, "
         "resolve_within: 2}, {id: x, name: a, name_zh: b, accept_within: 1, "
         "resolve_within: 2}]", "twice"),
        ("version: 1\ncategories: [{id: x, name: '', name_zh: b, accept_within: 1, "
         "resolve_within: 2}]", "'name'"),
        ("[unclosed", "not YAML"),
    ],
)  # fmt: skip
def test_bad_category_files_are_refused_with_the_reason(text: str, problem: str) -> None:
    with pytest.raises(CategoryConfigError, match=problem):
        parse_categories(text)


def test_a_site_file_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "version: 1\ncategories:\n  - {id: flood, name: Flood, name_zh: 防汛, tier: area,"
        " accept_within: 60, resolve_within: 600, on_overdue: escalate}\n",
        encoding="utf-8",
    )
    cats = load_categories(path)
    assert list(cats) == ["flood"] and cats["flood"].tier == "area"
    with pytest.raises(CategoryConfigError, match="cannot read"):
        load_categories(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("category", "grid", "tier", "unit"),
    [
        ("police", "grid-01", "grid", "grid-01"),
        ("police", None, "centre", "centre"),
        ("anti-fraud", "grid-05", "area", ORG.parent("grid-05")),
        ("legal-aid", "grid-01", "area", "area-renxi"),
    ],
)
def test_intake_places_the_incident_at_the_lowest_tier(
    category: str, grid: str | None, tier: str, unit: str
) -> None:
    step = m.report(7, CATS[category], "x", T0, source="api", reporter="a", grid=grid, org=ORG)
    assert (step.incident.tier, step.incident.unit, step.incident.state) == (tier, unit, "reported")
    (t,) = step.transitions
    assert (t.action, t.from_state, t.to_state, t.seq, t.ts, t.actor) == (
        "reported", None, "reported", 1, T0, "a",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [({"grid": "grid-99"}, "not a grid"), ({"grid": None, "area": "nowhere"}, "not an area")],
)
def test_intake_refuses_unknown_places(kwargs: dict[str, str | None], problem: str) -> None:
    with pytest.raises(IncidentInputError, match=problem):
        m.report(1, CATS["police"], "x", T0, source="api", reporter="a", org=ORG, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(IncidentInputError, match="description"):
        m.report(1, CATS["police"], "  ", T0, source="api", reporter="a", grid=None, org=ORG)


Op = Callable[[Incident, float], Step]
ACCEPT: Op = lambda i, t: m.accept(i, t, "acct:g1")  # noqa: E731
ASSIGN: Op = lambda i, t: m.assign(i, ["T001"], t, "acct:g1")  # noqa: E731
EN_ROUTE: Op = lambda i, t: m.officer_status(i, "T001", "en_route", t)  # noqa: E731
ON_SCENE: Op = lambda i, t: m.officer_status(i, "T001", "on_scene", t)  # noqa: E731
RESOLVED: Op = lambda i, t: m.officer_status(i, "T001", "resolved", t, "settled")  # noqa: E731
RESOLVE: Op = lambda i, t: m.resolve(i, t, "acct:g1", "done")  # noqa: E731
CLOSE: Op = lambda i, t: m.close(i, t, "acct:g1", "parties reconciled")  # noqa: E731
CLOSE_BARE: Op = lambda i, t: m.close(i, t, "acct:g1", " ")  # noqa: E731
REOPEN: Op = lambda i, t: m.reopen(i, t, "acct:a1", "complaint again")  # noqa: E731
ESCALATE: Op = lambda i, t: m.escalate(i, t, "acct:g1", "needs the area", ORG)  # noqa: E731
DEESCALATE: Op = lambda i, t: m.deescalate(i, t, "acct:a1", "simple after all", ORG)  # noqa: E731
STRANGER: Op = lambda i, t: m.officer_status(i, "T999", "on_scene", t)  # noqa: E731


@pytest.mark.parametrize(
    ("ops", "state", "tier", "actions"),
    [
        ([ACCEPT], "accepted", "grid", ["accepted"]),
        ([ASSIGN], "assigned", "grid", ["accepted", "assigned"]),
        (
            [ACCEPT, ASSIGN, EN_ROUTE, ON_SCENE, RESOLVED, CLOSE],
            "closed", "grid",
            ["accepted", "assigned", "officer_en_route", "officer_on_scene", "officer_resolved",
             "closed"],
        ),
        ([ACCEPT, ASSIGN, ON_SCENE, EN_ROUTE], "on_scene", "grid",
         ["accepted", "assigned", "officer_on_scene", "officer_en_route"]),
        ([ACCEPT, RESOLVE, CLOSE, REOPEN], "accepted", "grid",
         ["accepted", "resolved", "closed", "reopened"]),
        ([ESCALATE], "reported", "area", ["escalated"]),
        ([ESCALATE, ESCALATE], "reported", "centre", ["escalated", "escalated"]),
        ([ESCALATE, DEESCALATE], "reported", "grid", ["escalated", "deescalated"]),
        ([ACCEPT, ESCALATE], "reported", "area", ["accepted", "escalated"]),
        ([ASSIGN, EN_ROUTE, ESCALATE], "en_route", "area",
         ["accepted", "assigned", "officer_en_route", "escalated"]),
    ],
)  # fmt: skip
def test_transitions(ops: list[Op], state: str, tier: str, actions: list[str]) -> None:
    incident = new()
    stored = []
    for i, op in enumerate(ops, start=1):
        step = op(incident, T0 + 10 * i)
        assert step.incident.seq == incident.seq + len(step.transitions)
        incident = step.incident
        stored += step.transitions
    assert (incident.state, incident.tier) == (state, tier)
    assert [t.action for t in stored] == actions
    assert [t.seq for t in stored] == list(range(2, 2 + len(stored)))
    assert all(t.actor for t in stored) and all(t.ts > T0 for t in stored)


@pytest.mark.parametrize(
    ("ops", "error"),
    [
        ([CLOSE], TransitionError),  # not resolved
        ([ACCEPT, ASSIGN, RESOLVED, CLOSE_BARE], IncidentInputError),  # no resolution note
        ([ACCEPT, ACCEPT], TransitionError),
        ([RESOLVE], TransitionError),  # not accepted yet
        ([ACCEPT, ASSIGN, STRANGER], TransitionError),  # not assigned to it
        ([EN_ROUTE], TransitionError),
        ([REOPEN], TransitionError),  # still open
        ([ESCALATE, ESCALATE, ESCALATE], TransitionError),  # at the centre already
        ([DEESCALATE], TransitionError),  # at the grid already
        ([ACCEPT, RESOLVE, CLOSE, ASSIGN], TransitionError),  # closed
        ([ACCEPT, ASSIGN, ASSIGN], IncidentInputError),  # nobody new
    ],
)  # fmt: skip
def test_refused_transitions_change_nothing(ops: list[Op], error: type[Exception]) -> None:
    incident = new()
    for op in ops[:-1]:
        incident = op(incident, T0 + 1).incident
    with pytest.raises(error):
        ops[-1](incident, T0 + 2)


def test_milestones_are_first_times_and_survive_reopen() -> None:
    i = new()
    for t, op in enumerate([ASSIGN, EN_ROUTE, ON_SCENE, RESOLVED, CLOSE], start=1):
        i = op(i, T0 + 60 * t).incident
    assert (i.accepted_at, i.assigned_at, i.en_route_at, i.on_scene_at) == (
        T0 + 60, T0 + 60, T0 + 120, T0 + 180,
    )  # fmt: skip
    assert (i.resolved_at, i.closed_at, i.closed_tier, i.resolution) == (
        T0 + 240, T0 + 300, "grid", "parties reconciled",
    )  # fmt: skip
    i = REOPEN(i, T0 + 400).incident
    assert (i.reopens, i.closed_at, i.officers, i.accepted_at) == (1, None, (), T0 + 60)


def test_deescalation_skips_tiers_the_place_lacks() -> None:
    i = new(grid=None)  # no grid: at the centre, cannot come down to a grid
    assert i.tier == "centre"
    with pytest.raises(TransitionError):
        DEESCALATE(i, T0 + 1)


# ---- deadlines: (category, ops before, minutes later, expected actions, state, tier) ----------


@pytest.mark.parametrize(
    ("category", "ops", "minutes", "actions", "tier"),
    [
        ("police", [], 4.9, [], "grid"),
        ("police", [], 5.0, ["escalated"], "area"),  # 5 min not accepted: the area's now
        ("police", [ACCEPT], 5.0, [], "grid"),  # accepted in time
        ("police", [ACCEPT], 60.0, ["escalated"], "area"),  # not resolved within the hour
        ("mediation", [], 120.0, ["reminded"], "grid"),  # mediation only reminds
        ("mediation", [ACCEPT], 7 * 24 * 60, ["reminded"], "grid"),
        ("mediation", [], 7 * 24 * 60, ["reminded", "reminded"], "grid"),  # both deadlines
        ("police", [ESCALATE, ESCALATE], 6.0, ["reminded"], "centre"),  # nowhere higher
        ("police", [ACCEPT, RESOLVE], 600.0, [], "grid"),  # resolved: no deadline
    ],
)  # fmt: skip
def test_deadlines(
    category: str, ops: list[Op], minutes: float, actions: list[str], tier: str
) -> None:
    incident = new(category)
    for op in ops:
        incident = op(incident, T0).incident
    step = m.tick(incident, CATS[category], T0 + minutes * 60, ORG)
    got = [] if step is None else [t.action for t in step.transitions]
    assert got == actions
    after = incident if step is None else step.incident
    assert after.tier == tier
    assert all(t.actor == "system" and t.note for t in (step.transitions if step else ()))


def test_a_deadline_reminds_once_per_tier_and_restarts_after_escalation() -> None:
    cat = CATS["mediation"]
    i = new("mediation")
    step = m.tick(i, cat, T0 + 7201, ORG)
    assert step is not None
    i = step.incident
    assert m.tick(i, cat, T0 + 7300, ORG) is None  # reminded already
    assert m.overdue(i, cat, T0 + 7300)
    i = ESCALATE(i, T0 + 8000).incident
    assert not m.overdue(i, cat, T0 + 8001)
    assert m.next_deadline(i, cat) == T0 + 8000 + cat.accept_within_s
    police = CATS["police"]
    j = new("police")
    j = m.tick(j, police, T0 + 300, ORG).incident  # type: ignore[union-attr]
    assert (j.tier, j.escalations, j.tier_since) == ("area", 1, T0 + 300)
    assert m.tick(j, police, T0 + 599, ORG) is None
    k = m.tick(j, police, T0 + 600, ORG)
    assert k is not None and k.incident.tier == "centre"


def test_accepting_clears_the_accept_reminder() -> None:
    i = new("mediation")
    i = m.tick(i, CATS["mediation"], T0 + 7200, ORG).incident  # type: ignore[union-attr]
    assert "accept@grid" in i.reminded
    i = ACCEPT(i, T0 + 7300).incident
    assert "accept@grid" not in i.reminded
    assert replace(i, reminded=frozenset()).state == "accepted"
