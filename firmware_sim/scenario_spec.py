"""Scenario files: YAML timelines with expectations, parsed into checked values.

Format (see firmware_sim/scenarios/*.yaml)::

    name: …                      description: …
    org: longxi                  # or synthetic:N or a path
    floor: {queue: true, max_burst: 30s, queue_timeout: 30s}
    vars: {offline: 60s}         # ${offline} anywhere below; tests override vars to compress time
    defaults: {beacon_interval: 5s, adaptive_beacons: false, bad_fix_rate: 0, talk_per_h: 0,
               probe: false, live_voice: false,
               impairment: {loss_pct: 0, jitter_ms: 0, reorder_pct: 0}}
    terminals: {T1: {unit: grid-07, role: officer, …defaults overrides}, …}
    duration: 20s
    timeline:                    # actions, by time from the moment every terminal is online
      - {at: 5s, do: press, terminal: T1, tg: grid-07, hold: 3s}
    expect:                      # checked at `at`, or at the end when there is no `at`
      - {that: heard, terminal: T2, from: T1, min_pct: 95}

Durations are numbers (seconds) or strings like ``500ms``, ``5s``, ``2m``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from firmware_sim.errors import ScenarioError

ACTIONS: dict[str, tuple[set[str], set[str]]] = {
    # action: (required keys, optional keys) besides at/do
    "press": ({"terminal"}, {"tg", "call", "hold", "emergency"}),
    "release": ({"terminal"}, set()),
    "sos": ({"terminal"}, {"active"}),
    "offline": ({"terminal", "for"}, set()),
    "power_off": ({"terminal"}, set()),
    "restart_broker": (set(), {"down"}),
    "command": ({"terminal", "cmd"}, {"text", "incident", "grid", "settings", "seconds", "by"}),
    "revoke": ({"tg"}, set()),
    # An officer reports an incident from its terminal (protocol §5.6), at its position.
    "report": ({"terminal", "category", "text"}, {"voice"}),
    # A dispatcher's step on the incident last reported by terminal `of`: accept, assign
    # (`officers`), escalate / deescalate (`reason`), resolve, close (`note`), reopen (`reason`).
    "incident": ({"of", "action"}, {"officers", "reason", "note", "by"}),
}
CHECKS: dict[str, tuple[set[str], set[str]]] = {
    "heard": ({"terminal", "from"}, {"min_pct"}),
    "access_time": ({"max_ms"}, {"terminal", "p"}),
    "queue_wait": ({"terminal"}, {"min_ms", "max_ms"}),
    "granted": ({"terminal"}, {"min", "max"}),
    "queued": ({"terminal"}, {"min", "max"}),
    "denied": ({"terminal"}, {"reason", "min", "max"}),
    "revoked": ({"terminal"}, {"reason", "min", "max"}),
    "state": ({"terminal", "is"}, set()),
    "no_beacon_lost": (set(), {"terminals"}),
    "beacons_queued_offline": ({"terminal"}, {"min"}),
    "frame_loss": (set(), {"terminal", "max_pct"}),
    "protected": ({"terminal"}, {"min_pct", "max_pct"}),
    "mouth_to_ear": ({"max_ms"}, {"terminal", "p"}),
    "late_entry": ({"terminal"}, {"min"}),
    "gateway": ({"counter"}, {"min", "max"}),
    "sos_active": ({"terminal"}, {"active"}),
    "connected": (set(), {"terminals"}),
    "command": ({"terminal", "cmd"}, {"min"}),
    # The incident last reported by terminal `of`: its state, tier, escalations, answers.
    "incident": ({"of"}, {"state", "tier", "min_escalations", "officers", "actions"}),
}
TERMINAL_KEYS = {
    "unit",
    "role",
    "talkgroups",
    "beacon_interval",
    "adaptive_beacons",
    "bad_fix_rate",
    "talk_per_h",
    "probe",
    "live_voice",
    "impairment",
    "beacons",
    "emergency_talk",
    "route",
    "responder",  # how the officer answers assignments: {accept, depart, speed_mps, handle}
}
TOP_KEYS = {
    "name", "description", "org", "floor", "vars", "defaults", "terminals", "duration",
    "timeline", "expect",
}  # fmt: skip
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_VAR = re.compile(r"\$\{([a-z_][a-z0-9_]*)\}")


def seconds(value: object, what: str) -> float:
    """A duration as seconds: a number, or ``250ms`` / ``5s`` / ``2m`` / ``1h``."""
    if isinstance(value, bool):
        raise ScenarioError(f"{what}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ScenarioError(f"{what}: a duration cannot be negative")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ScenarioError(f"{what}: {value!r} is not a duration like 500ms, 5s or 2m")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]


@dataclass(frozen=True, slots=True)
class Step:
    at: float
    do: str
    args: dict[str, Any]
    line: str  # for messages: "timeline[3] (press)"


@dataclass(frozen=True, slots=True)
class Check:
    at: float | None
    that: str
    args: dict[str, Any]
    line: str


@dataclass(frozen=True, slots=True)
class TerminalSpec:
    id: str
    unit: str
    role: str
    options: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    org: str
    floor: dict[str, Any]
    terminals: dict[str, TerminalSpec]
    duration: float
    timeline: list[Step]
    expect: list[Check]
    source: str = "<scenario>"
    vars: dict[str, Any] = field(default_factory=dict)


def _substitute(node: Any, variables: dict[str, Any], where: str) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, variables, where) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, variables, where) for v in node]
    if isinstance(node, str):
        whole = _VAR.fullmatch(node.strip())
        if whole:
            name = whole.group(1)
            if name not in variables:
                raise ScenarioError(f"{where}: unknown variable ${{{name}}}")
            return variables[name]

        def replace(match: re.Match[str]) -> str:
            if match.group(1) not in variables:
                raise ScenarioError(f"{where}: unknown variable ${{{match.group(1)}}}")
            return str(variables[match.group(1)])

        return _VAR.sub(replace, node)
    return node


def _keys(raw: dict[str, Any], required: set[str], optional: set[str], where: str) -> None:
    missing = sorted(required - set(raw))
    if missing:
        raise ScenarioError(f"{where}: missing {', '.join(missing)}")
    unknown = sorted(set(raw) - required - optional)
    if unknown:
        raise ScenarioError(
            f"{where}: unknown keys {', '.join(unknown)}; allowed: "
            f"{', '.join(sorted(required | optional))}"
        )


def load_scenario(path: Path, overrides: dict[str, Any] | None = None) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc}") from exc
    return parse_scenario(text, source=str(path), overrides=overrides)


def parse_scenario(
    text: str, source: str = "<scenario>", overrides: dict[str, Any] | None = None
) -> Scenario:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ScenarioError(f"{source}: a scenario is a mapping")
    try:
        return _build(raw, source, overrides or {})
    except ScenarioError as exc:
        raise ScenarioError(f"{source}: {exc}") from exc


def _build(raw: dict[str, Any], source: str, overrides: dict[str, Any]) -> Scenario:
    _keys(
        raw,
        {"name", "terminals", "duration"},
        TOP_KEYS - {"name", "terminals", "duration"},
        "scenario",
    )
    variables = dict(raw.get("vars") or {})
    unknown_overrides = sorted(set(overrides) - set(variables))
    if unknown_overrides:
        raise ScenarioError(f"overrides name unknown vars {unknown_overrides}")
    variables.update(overrides)
    body = _substitute({k: v for k, v in raw.items() if k != "vars"}, variables, "scenario")
    defaults = body.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ScenarioError("defaults must be a mapping")
    _keys(defaults, set(), TERMINAL_KEYS - {"unit", "role"}, "defaults")
    terminals: dict[str, TerminalSpec] = {}
    raw_terminals = body["terminals"]
    if not isinstance(raw_terminals, dict) or not raw_terminals:
        raise ScenarioError("terminals must be a non-empty mapping of id to settings")
    for device_id, settings in raw_terminals.items():
        settings = settings or {}
        where = f"terminals.{device_id}"
        if not isinstance(settings, dict):
            raise ScenarioError(f"{where} must be a mapping")
        _keys(settings, {"unit"}, TERMINAL_KEYS - {"unit"}, where)
        options = {**defaults, **{k: v for k, v in settings.items() if k not in ("unit", "role")}}
        terminals[str(device_id)] = TerminalSpec(
            str(device_id), str(settings["unit"]), str(settings.get("role", "officer")), options
        )
    timeline = [_step(i, s, terminals) for i, s in enumerate(body.get("timeline") or [])]
    expect = [_check(i, c, terminals) for i, c in enumerate(body.get("expect") or [])]
    duration = seconds(body["duration"], "duration")
    late = [s.line for s in timeline if s.at > duration] + [
        c.line for c in expect if c.at is not None and c.at > duration
    ]
    if late:
        raise ScenarioError(f"{', '.join(late)} after the end (duration {duration:g} s)")
    return Scenario(
        name=str(body["name"]),
        description=str(body.get("description", "")).strip(),
        org=str(body.get("org", "longxi")),
        floor=dict(body.get("floor") or {}),
        terminals=terminals,
        duration=duration,
        timeline=sorted(timeline, key=lambda s: s.at),
        expect=expect,
        source=source,
        vars=variables,
    )


def _named_terminals(args: dict[str, Any], terminals: dict[str, TerminalSpec], where: str) -> None:
    for key in ("terminal", "from"):
        if key in args and str(args[key]) not in terminals:
            raise ScenarioError(f"{where}: unknown terminal {args[key]!r}")
    for name in args.get("terminals") or []:
        if str(name) not in terminals:
            raise ScenarioError(f"{where}: unknown terminal {name!r}")


def _step(index: int, raw: Any, terminals: dict[str, TerminalSpec]) -> Step:
    if not isinstance(raw, dict) or "do" not in raw or "at" not in raw:
        raise ScenarioError(f"timeline[{index}]: each step needs 'at' and 'do'")
    action = str(raw["do"])
    where = f"timeline[{index}] ({action})"
    if action not in ACTIONS:
        raise ScenarioError(f"{where}: unknown action; known: {', '.join(sorted(ACTIONS))}")
    args = {k: v for k, v in raw.items() if k not in ("at", "do")}
    required, optional = ACTIONS[action]
    _keys(args, required, optional, where)
    _named_terminals(args, terminals, where)
    for key in ("hold", "for", "down"):
        if key in args:
            args[key] = seconds(args[key], f"{where} {key}")
    return Step(seconds(raw["at"], f"{where} at"), action, args, where)


def _check(index: int, raw: Any, terminals: dict[str, TerminalSpec]) -> Check:
    if not isinstance(raw, dict) or "that" not in raw:
        raise ScenarioError(f"expect[{index}]: each expectation needs 'that'")
    kind = str(raw["that"])
    where = f"expect[{index}] ({kind})"
    if kind not in CHECKS:
        raise ScenarioError(f"{where}: unknown check; known: {', '.join(sorted(CHECKS))}")
    args = {k: v for k, v in raw.items() if k not in ("at", "that")}
    required, optional = CHECKS[kind]
    _keys(args, required, optional, where)
    _named_terminals(args, terminals, where)
    at = seconds(raw["at"], f"{where} at") if "at" in raw else None
    return Check(at, kind, args, where)
