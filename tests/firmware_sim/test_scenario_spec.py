"""Scenario files are validated with messages that name the file and the step."""

from __future__ import annotations

import pytest

from firmware_sim.errors import ScenarioError
from firmware_sim.scenario_spec import parse_scenario, seconds

BASE = """
name: t
vars: {hold: 3s, away: 60s}
defaults: {beacon_interval: 2s}
terminals:
  T1: {unit: grid-07}
  T2: {unit: grid-07, role: guard, probe: true}
duration: 20s
timeline:
  - {at: 5s, do: press, terminal: T1, hold: "${hold}"}
  - {at: 1500ms, do: offline, terminal: T2, for: "${away}"}
expect:
  - {at: 9s, that: heard, terminal: T2, from: T1, min_pct: 95}
  - {that: no_beacon_lost}
"""


def test_parse_substitutes_vars_and_sorts_the_timeline() -> None:
    s = parse_scenario(BASE, overrides={"away": "5s"})
    assert [step.do for step in s.timeline] == ["offline", "press"]
    assert s.timeline[0].at == 1.5 and s.timeline[0].args["for"] == 5.0
    assert s.timeline[1].args["hold"] == 3.0
    assert s.terminals["T2"].role == "guard" and s.terminals["T2"].options["probe"] is True
    assert s.terminals["T1"].options["beacon_interval"] == "2s"
    assert [c.at for c in s.expect] == [9.0, None]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("do: press", "do: sing"), "unknown action"),
        (("terminal: T1, hold", "terminal: T9, hold"), "unknown terminal 'T9'"),
        (("that: heard", "that: magic"), "unknown check"),
        (('"${hold}"', '"${nope}"'), "unknown variable"),
        (("at: 5s", "at: 25s"), "after the end"),
        (("min_pct: 95", "min_pct: 95, colour: red"), "unknown keys colour"),
        (("duration: 20s", "duration: soon"), "not a duration"),
        (("{unit: grid-07}", "{role: officer}"), "missing unit"),
    ],
)
def test_bad_scenarios_are_refused_with_a_reason(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ScenarioError, match=message) as info:
        parse_scenario(BASE.replace(*change, 1), source="bad.yaml")
    assert str(info.value).startswith("bad.yaml")


def test_unknown_override_and_durations() -> None:
    with pytest.raises(ScenarioError, match="unknown vars"):
        parse_scenario(BASE, overrides={"speed": 2})
    assert seconds("250ms", "x") == 0.25 and seconds("2m", "x") == 120.0 and seconds(3, "x") == 3.0
    with pytest.raises(ScenarioError):
        seconds(-1, "x")
    with pytest.raises(ScenarioError):
        parse_scenario("[1, 2]")
