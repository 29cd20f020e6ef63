"""Scenario expectations: each kind of `expect:` entry judged against the live run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devices.session import CALL_PREFIX
from firmware_sim.reception import Histogram
from firmware_sim.scenario_spec import Check
from firmware_sim.terminal import SimTerminal
from gateway.incidents.model import Incident
from gateway.incidents.service import IncidentService
from xixin.environment import ManagedEnvironment

Verdict = tuple[bool, str]
RESTART_MARGIN_S = 1.0  # around a broker restart the checker itself is offline


@dataclass(slots=True)
class CheckContext:
    terminals: dict[str, SimTerminal]
    env: ManagedEnvironment
    checker_seen: dict[str, list[bytes]]
    checker_subscribed: list[float]  # monotonic times the checker (re)subscribed
    broker_down: list[tuple[float, float]]  # (stopped, restarted) monotonic


def _count(value: int, args: dict[str, Any], what: str) -> Verdict:
    low = int(args.get("min", 1))
    high = args.get("max")
    ok = value >= low and (high is None or value <= int(high))
    bound = f">= {low}" + ("" if high is None else f" and <= {high}")
    return ok, f"{what} = {value} (want {bound})"


def _percentile(h: Histogram, args: dict[str, Any]) -> float | None:
    p = float(args.get("p", 100))
    return h.percentile(p)


def heard(c: CheckContext, a: dict[str, Any]) -> Verdict:
    listener, talker = c.terminals[a["terminal"]], c.terminals[a["from"]]
    meter = listener.firmware.stats.meter
    sent = received = bursts = 0
    for (key, burst), frames in talker.firmware.stats.sent_bursts.items():
        their_key = CALL_PREFIX + talker.device_id if key.startswith(CALL_PREFIX) else key
        if key.startswith(CALL_PREFIX) and key != CALL_PREFIX + listener.device_id:
            continue
        if not key.startswith(CALL_PREFIX) and key not in listener.firmware.affiliated:
            continue
        bursts += 1
        sent += frames
        received += meter.received(their_key, burst)
    if not sent:
        return False, f"{talker.device_id} sent nothing {listener.device_id} could hear"
    pct = 100.0 * received / sent
    want = float(a.get("min_pct", 95))
    return pct >= want, (
        f"{listener.device_id} heard {received}/{sent} frames of {talker.device_id} "
        f"({pct:.1f} %, {bursts} bursts; want >= {want:g} %)"
    )


def _merged(
    c: CheckContext, a: dict[str, Any], pick: Callable[[SimTerminal], Histogram]
) -> Histogram:
    names = [a["terminal"]] if "terminal" in a else list(c.terminals)
    merged = Histogram()
    for name in names:
        merged.merge(pick(c.terminals[name]))
    return merged


def access_time(c: CheckContext, a: dict[str, Any]) -> Verdict:
    h = _merged(c, a, lambda t: t.firmware.stats.access_ms)
    value = _percentile(h, a)
    if value is None:
        return False, "no immediate grant measured"
    want = float(a["max_ms"])
    return (
        value <= want,
        f"p{a.get('p', 100)} {value:.1f} ms over {h.total} grants (want <= {want:g})",
    )


def queue_wait(c: CheckContext, a: dict[str, Any]) -> Verdict:
    h = c.terminals[a["terminal"]].firmware.stats.queue_wait_ms
    if not h.total:
        return False, "never granted after queueing"
    low, high = h.percentile(0), h.percentile(100)
    assert low is not None and high is not None
    want_low, want_high = float(a.get("min_ms", 0)), float(a.get("max_ms", 1e9))
    ok = low >= want_low and high <= want_high
    return ok, f"{h.total} waits {low:.0f}..{high:.0f} ms (want {want_low:g}..{want_high:g})"


def counted(field: str) -> Callable[[CheckContext, dict[str, Any]], Verdict]:
    def check(c: CheckContext, a: dict[str, Any]) -> Verdict:
        stats = c.terminals[a["terminal"]].firmware.stats
        value = getattr(stats, field)
        if isinstance(value, dict):
            reason = a.get("reason")
            total = value.get(reason, 0) if reason else sum(value.values())
            return _count(total, a, f"{field}[{reason or 'any'}]")
        return _count(int(value), a, field)

    return check


def state(c: CheckContext, a: dict[str, Any]) -> Verdict:
    now = c.terminals[a["terminal"]].firmware.state.value
    return now == a["is"], f"{a['terminal']} is {now} (want {a['is']})"


def no_beacon_lost(c: CheckContext, a: dict[str, Any]) -> Verdict:
    names = [str(n) for n in a.get("terminals") or c.terminals]
    problems: list[str] = []
    taken_total = acked_total = 0
    for name in names:
        t = c.terminals[name]
        counters = t.client.beacons.counters
        taken_total += counters.taken
        acked_total += counters.acked
        if counters.acked != counters.taken or counters.overflowed or counters.refused:
            problems.append(
                f"{name}: taken {counters.taken}, acked {counters.acked}, "
                f"overflowed {counters.overflowed}, refused {counters.refused}, "
                f"still queued {len(t.client.beacons)}"
            )
        problems += _checker_view(c, name, t)
    if problems:
        return False, "; ".join(problems[:6])
    return True, f"{taken_total} beacons taken, {acked_total} acknowledged, all delivered in order"


def _checker_view(c: CheckContext, name: str, t: SimTerminal) -> list[str]:
    log = t.beacon_log or []
    seen = c.checker_seen.get(name, [])
    position = {payload: i for i, (_, payload) in reversed(list(enumerate(log)))}
    order = [position[p] for p in dict.fromkeys(seen) if p in position]
    if order != sorted(order):
        return [f"{name}: beacons arrived out of order"]
    blind = [(down - RESTART_MARGIN_S, up) for down, up in c.broker_down]
    if c.broker_down and c.checker_subscribed:
        blind = [(down - RESTART_MARGIN_S, c.checker_subscribed[-1] + RESTART_MARGIN_S)
                 for down, _ in c.broker_down]  # fmt: skip
    got = set(seen)
    missing = [
        p for taken_at, p in log if p not in got and not any(a <= taken_at <= b for a, b in blind)
    ]
    if missing:
        return [f"{name}: {len(missing)} of {len(log)} beacons never reached the gateway side"]
    return []


def queued_offline(c: CheckContext, a: dict[str, Any]) -> Verdict:
    counters = c.terminals[a["terminal"]].client.beacons.counters
    return _count(counters.queued_offline, a, "beacons taken while offline")


def frame_loss(c: CheckContext, a: dict[str, Any]) -> Verdict:
    names = [a["terminal"]] if "terminal" in a else list(c.terminals)
    expected = received = 0
    for name in names:
        totals = c.terminals[name].firmware.stats.meter.totals
        expected += totals.frames_expected
        received += totals.frames_received
    if not expected:
        return False, "no complete burst was heard"
    loss = 100.0 * max(0, expected - received) / expected
    want = float(a.get("max_pct", 1.0))
    return loss <= want, f"{loss:.2f} % lost ({received}/{expected}; want <= {want:g} %)"


def protected(c: CheckContext, a: dict[str, Any]) -> Verdict:
    """The share of a talker's frames sent with RED or FEC (§9.3), and the reports it used."""
    stats = c.terminals[a["terminal"]].firmware.stats
    if not stats.frames_sent:
        return False, f"{a['terminal']} sent no frames"
    pct = 100.0 * stats.frames_protected / stats.frames_sent
    low, high = float(a.get("min_pct", 0.0)), float(a.get("max_pct", 100.0))
    return low <= pct <= high, (
        f"{a['terminal']} protected {stats.frames_protected}/{stats.frames_sent} frames "
        f"({pct:.1f} %, want {low:g}-{high:g} %) after {stats.reports_applied} forwarded reports"
    )


def mouth_to_ear(c: CheckContext, a: dict[str, Any]) -> Verdict:
    h = _merged(c, a, lambda t: t.firmware.stats.mouth_to_ear)
    a = {"p": 95, **a}
    value = _percentile(h, a)
    if value is None:
        return False, "nothing was played out (is the terminal a probe?)"
    want = float(a["max_ms"])
    return value <= want, f"p{a['p']} {value:.0f} ms over {h.total} frames (want <= {want:g})"


def late_entry(c: CheckContext, a: dict[str, Any]) -> Verdict:
    meter = c.terminals[a["terminal"]].firmware.stats.meter
    ms = meter.late_entry_ms.percentile(50)
    verdict, text = _count(meter.totals.late_entries, a, "late entries")
    return verdict, text + ("" if ms is None else f", first frame {ms:.0f} ms after joining")


def gateway(c: CheckContext, a: dict[str, Any]) -> Verdict:
    counters = c.env.counters()
    name = str(a["counter"])
    if name not in counters:
        return False, f"unknown gateway counter {name}; known {sorted(counters)}"
    return _count(int(counters[name]), {"min": a.get("min", 0), **a}, f"gateway {name}")


def sos_active(c: CheckContext, a: dict[str, Any]) -> Verdict:
    device = str(a["terminal"])
    active = c.env.call(lambda: device in c.env.runner.control.sos)
    want = bool(a.get("active", True))
    return active == want, f"gateway says {device} SOS {'on' if active else 'off'}"


def connected(c: CheckContext, a: dict[str, Any]) -> Verdict:
    names = [str(n) for n in a.get("terminals") or c.terminals]
    down = [n for n in names if not c.terminals[n].client.is_connected]
    return not down, f"offline: {down}" if down else f"{len(names)} connected"


def command(c: CheckContext, a: dict[str, Any]) -> Verdict:
    stats = c.terminals[a["terminal"]].firmware.stats
    return _count(stats.commands.get(str(a["cmd"]), 0), a, f"'{a['cmd']}' commands handled")


def latest_incident(incidents: IncidentService, reporter: str) -> Incident | None:
    """The newest incident `reporter` (a terminal) reported (on the gateway's loop)."""
    found = [i for i in incidents.incidents.values() if i.reporter == reporter]
    return max(found, key=lambda i: i.id) if found else None


def incident(context: CheckContext, args: dict[str, Any]) -> Verdict:
    """The incident last reported by `of`: its state, tier, escalations, officers, and the
    officers' answers among its transitions (`actions`, in order)."""
    env = context.env
    incidents = env.service.incidents

    def read() -> tuple[Incident | None, list[str]]:
        found = latest_incident(incidents, str(args["of"]))
        steps = [t.action for t in incidents.recent.get(found.id, [])] if found else []
        return found, steps

    found, steps = env.call(read)
    if found is None:
        return False, f"no incident reported by {args['of']}"
    problems = []
    for name in ("state", "tier"):
        if name in args and getattr(found, name) != args[name]:
            problems.append(f"{name} {getattr(found, name)}, expected {args[name]}")
    if found.escalations < int(args.get("min_escalations", 0)):
        problems.append(f"{found.escalations} escalations")
    if "officers" in args and list(found.officers) != list(args["officers"]):
        problems.append(f"officers {list(found.officers)}")
    wanted = list(args.get("actions") or [])
    seen = iter(steps)
    if wanted and not all(any(step == w for step in seen) for w in wanted):
        problems.append(f"actions {steps} lack {wanted} in order")
    detail = f"incident {found.id}: {found.state} at {found.tier}, {len(steps)} steps"
    return not problems, detail + ("; " + "; ".join(problems) if problems else "")


CHECKERS: dict[str, Callable[[CheckContext, dict[str, Any]], Verdict]] = {
    "heard": heard,
    "access_time": access_time,
    "queue_wait": queue_wait,
    "granted": counted("grants"),
    "queued": counted("queued"),
    "denied": counted("denied"),
    "revoked": counted("revoked"),
    "state": state,
    "no_beacon_lost": no_beacon_lost,
    "beacons_queued_offline": queued_offline,
    "frame_loss": frame_loss,
    "protected": protected,
    "mouth_to_ear": mouth_to_ear,
    "late_entry": late_entry,
    "gateway": gateway,
    "sos_active": sos_active,
    "connected": connected,
    "command": command,
    "incident": incident,
}


# Bounds on how long something took. On a loaded machine (a CI runner, a laptop compiling) they
# measure the machine, not the product: `enforce_timing=False` (the test suite) still needs the
# thing to have happened and been measured, and reports the figure; benchmarks judge it.
TIMING_CHECKS = frozenset({"access_time", "mouth_to_ear"})


def evaluate(check: Check, context: CheckContext, *, enforce_timing: bool = True) -> Verdict:
    checker = CHECKERS[check.that]
    if enforce_timing:
        return checker(context, check.args)
    if check.that == "queue_wait":  # that it waited (min) is behaviour; how long at most, timing
        args = {k: v for k, v in check.args.items() if k != "max_ms"}
        ok, detail = checker(context, args)
        return ok, f"{detail} [max_ms {check.args.get('max_ms', '-')} reported, not enforced]"
    ok, detail = checker(context, check.args)
    if check.that in TIMING_CHECKS and not ok and " over " in detail:  # measured, but slow
        return True, f"{detail} [timing reported, not enforced]"
    return ok, detail
