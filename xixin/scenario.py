"""Run a scenario: terminals on a real broker and gateway, a timeline of actions, expectations.

Everything runs in this process: the managed broker (a child process), the gateway (its own
thread and event loop), and the terminals plus a GPS checker on the caller's event loop. Scenario
time 0 is the moment every terminal is online and affiliated.

`no_beacon_lost` is judged twice: on the terminals (every beacon taken was acknowledged by the
broker, none dropped from the store-and-forward queue) and at a subscriber holding the gateway's
account (every beacon arrived, in the order taken). Around a broker restart the subscriber itself
is offline for a moment, so there only beacons taken while it was subscribed are required of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.aio_client import AsyncTerminalClient
from devices.beacons import BeaconQueue
from devices.session import CALL_PREFIX
from firmware_sim.battery import BatteryConfig
from firmware_sim.errors import ScenarioError
from firmware_sim.firmware import Firmware
from firmware_sim.gps import GpsConfig, Route, load_geojson_routes
from firmware_sim.impairment import Impairment, ImpairmentConfig
from firmware_sim.model import FirmwareConfig, TalkPattern, TerminalProfile
from firmware_sim.responder import ResponderConfig
from firmware_sim.scenario_spec import Check, Scenario, Step, TerminalSpec, seconds
from firmware_sim.terminal import Scheduler, SimTerminal
from firmware_sim.voice import phrase_reel
from gateway.broker_auth import ensure_gateway_credentials
from gateway.floor import FloorConfig
from protocol import topics
from transport.client import ClientOptions, MqttClient
from xixin.checks import CheckContext, evaluate, latest_incident
from xixin.environment import ManagedEnvironment

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CheckResult:
    check: Check
    ok: bool
    detail: str


@dataclass(slots=True)
class ScenarioResult:
    scenario: Scenario
    results: list[CheckResult] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def passed(self) -> bool:
        return all(r.ok for r in self.results)

    def report(self) -> str:
        lines = [f"scenario: {self.scenario.name}  ({self.wall_s:.1f} s)"]
        for r in self.results:
            when = "end" if r.check.at is None else f"{r.check.at:g} s"
            lines.append(f"  {'PASS' if r.ok else 'FAIL'}  [{when}] {r.check.that}: {r.detail}")
        lines.append("PASSED" if self.passed else "FAILED")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name,
            "source": self.scenario.source,
            "passed": self.passed,
            "wall_s": round(self.wall_s, 2),
            "checks": [
                {"that": r.check.that, "at": r.check.at, "ok": r.ok, "detail": r.detail}
                for r in self.results
            ],
        }


class GpsChecker:
    """Subscribes to every device's beacons with the gateway's account."""

    def __init__(self, host: str, port: int, user: str, password: str) -> None:
        self.seen: dict[str, list[bytes]] = {}
        self.subscribed_at: list[float] = []
        self.client = MqttClient(
            ClientOptions(
                host,
                port,
                "xixin-sim-gps-checker",
                username=user,
                password=password,
                backoff_initial=0.05,
                backoff_max=0.1,
            ),
            self._on_message,
            on_connect=self._on_connect,
        )
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.client.run())
        await self.client.wait_connected(10)
        while not self.subscribed_at:
            await asyncio.sleep(0.01)

    async def _on_connect(self) -> None:
        await self.client.subscribe([(topics.gps("+"), 1)])
        self.subscribed_at.append(time.monotonic())

    def _on_message(self, topic: str, payload: bytes, qos: int) -> None:
        self.seen.setdefault(topic.split("/")[3], []).append(payload)

    async def stop(self) -> None:
        await self.client.close()
        if self.task is not None:
            self.task.cancel()


def firmware_config(spec: TerminalSpec) -> FirmwareConfig:
    o = spec.options
    impairment = ImpairmentConfig(**(o.get("impairment") or {}))
    rate = float(o.get("talk_per_h", 0))
    interval = seconds(o.get("beacon_interval", 5.0), f"{spec.id} beacon_interval")
    return FirmwareConfig(
        gps=GpsConfig(
            moving_interval_s=interval,
            adaptive=bool(o.get("adaptive_beacons", False)),
            bad_fix_rate=float(o.get("bad_fix_rate", 0.0)),
        ),
        battery=BatteryConfig(),
        impairment=impairment,
        talk=TalkPattern("poisson", rate_per_h=rate) if rate > 0 else TalkPattern(),
        beacons=bool(o.get("beacons", True)),
        probe=bool(o.get("probe", False)),
        live_voice=bool(o.get("live_voice", False)),
        emergency_talk_s=seconds(o.get("emergency_talk", 6.0), f"{spec.id} emergency_talk"),
        responder=responder_config(spec.id, o.get("responder") or {}),
    )


def responder_config(device: str, raw: dict[str, Any]) -> ResponderConfig:
    """How a simulated officer answers assignments: each of accept, depart, handle is a
    duration (or [low, high]) from the previous answer; speed_mps its travel speed."""

    def span(name: str, default: tuple[float, float]) -> tuple[float, float]:
        value = raw.get(name)
        if value is None:
            return default
        if isinstance(value, list) and len(value) == 2:
            return (seconds(value[0], f"{device} {name}"), seconds(value[1], f"{device} {name}"))
        one = seconds(value, f"{device} responder {name}")
        return (one, one)

    base = ResponderConfig()
    return ResponderConfig(
        accept_s=span("accept", base.accept_s),
        depart_s=span("depart", base.depart_s),
        speed_mps=float(raw.get("speed_mps", base.speed_mps)),
        travel_s=span("travel", base.travel_s),
        handle_s=span("handle", base.handle_s),
    )


def floor_config(raw: dict[str, Any]) -> FloorConfig:
    known = {"queue", "max_burst", "queue_timeout", "queue_depth", "preempt_grace"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ScenarioError(f"floor: unknown keys {unknown}; allowed {sorted(known)}")
    kwargs: dict[str, Any] = {}
    if "queue" in raw:
        kwargs["queue_enabled"] = bool(raw["queue"])
    if "max_burst" in raw:
        kwargs["max_burst_s"] = seconds(raw["max_burst"], "floor.max_burst")
    if "queue_timeout" in raw:
        kwargs["queue_timeout_s"] = seconds(raw["queue_timeout"], "floor.queue_timeout")
    if "preempt_grace" in raw:
        kwargs["preempt_grace_s"] = seconds(raw["preempt_grace"], "floor.preempt_grace")
    if "queue_depth" in raw:
        kwargs["queue_depth"] = int(raw["queue_depth"])
    try:
        return FloorConfig(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ScenarioError(f"floor: {exc}") from exc


class ScenarioRunner:
    def __init__(
        self,
        scenario: Scenario,
        seed: int = 1,
        logger: logging.Logger | None = None,
        *,
        enforce_timing: bool = True,
    ):
        self.enforce_timing = enforce_timing
        self.scenario = scenario
        self.log = logger or log
        self.rng = random.Random(seed)
        self.env: ManagedEnvironment | None = None
        self.terminals: dict[str, SimTerminal] = {}
        self.scheduler = Scheduler()
        self.checker: GpsChecker | None = None
        self.t0 = 0.0
        self.broker_down: list[tuple[float, float]] = []  # (stopped, restarted), monotonic

    async def run(self) -> ScenarioResult:
        started = time.monotonic()
        result = ScenarioResult(self.scenario)
        scenario = self.scenario
        devices = [(t.id, t.unit, t.role) for t in scenario.terminals.values()]
        self.env = ManagedEnvironment(scenario.org, floor=floor_config(scenario.floor))
        try:
            deployment = await asyncio.to_thread(self.env.start, devices)
            user, password = ensure_gateway_credentials(self.env.data_dir)
            self.checker = GpsChecker(deployment.host, deployment.port, user, password)
            await self.checker.start()
            self._build(deployment.host, deployment.port)
            await self._bring_up()
            await self._play(result)
        finally:
            await self._shutdown()
        result.wall_s = time.monotonic() - started
        return result

    def _build(self, host: str, port: int) -> None:
        assert self.env is not None
        org, reel = self.env.org, phrase_reel()
        wall_offset = time.time() - time.monotonic()
        self.scheduler.start()
        for spec in self.scenario.terminals.values():
            config = firmware_config(spec)
            tgs = tuple(
                spec.options.get("talkgroups") or org.default_affiliation(spec.unit, spec.role)
            )
            rng = random.Random(self.rng.random())
            assert self.env.deployment is not None
            client = AsyncTerminalClient(
                spec.id,
                self.env.deployment.devices[spec.id].secret,
                host,
                port,
                beacons=BeaconQueue(),
                gate=Impairment(config.impairment, rng) if config.impairment.active else None,
                backoff_max=1.0,
                logger=self.log,
            )
            grid = org.grids.get(spec.unit)
            route = Route.from_grid(grid) if grid is not None else None
            if spec.options.get("route"):
                base = Path(self.scenario.source).parent
                route = load_geojson_routes(base / str(spec.options["route"]))[0]
            firmware = Firmware(
                TerminalProfile(spec.id, spec.unit, spec.role, tgs, tgs[0]),
                config,
                client.session,
                now=time.monotonic(),
                wall_offset=wall_offset,
                rng=rng,
                route=route,
                reel=reel,
                logger=self.log,
            )
            client.battery = _battery(firmware)
            if not config.probe:
                client.frame_tap = firmware.listener.fast_frame
            terminal = SimTerminal(firmware, client, self.scheduler, self.log)
            terminal.beacon_log = []
            self.terminals[spec.id] = terminal

    async def _bring_up(self, timeout: float = 15.0) -> None:
        for terminal in self.terminals.values():
            terminal.power_on()
        deadline = time.monotonic() + timeout
        while not all(t.firmware.affiliated for t in self.terminals.values()):
            if time.monotonic() > deadline:
                missing = [d for d, t in self.terminals.items() if not t.firmware.affiliated]
                raise ScenarioError(f"terminals {missing} did not come online in {timeout:g} s")
            await asyncio.sleep(0.02)
        self.t0 = time.monotonic()

    async def _play(self, result: ScenarioResult) -> None:
        events: list[tuple[float, int, Step | Check]] = [
            (s.at, 0, s) for s in self.scenario.timeline
        ]
        events += [(c.at, 1, c) for c in self.scenario.expect if c.at is not None]
        events.sort(key=lambda e: (e[0], e[1]))
        for at, _, event in events:
            await self._sleep_until(at)
            if isinstance(event, Step):
                await self._do(event)
            else:
                result.results.append(self._check(event))
        await self._sleep_until(self.scenario.duration)
        await self._drain()
        for terminal in self.terminals.values():
            terminal.firmware.stats.meter.close_all()
        for check in self.scenario.expect:
            if check.at is None:
                result.results.append(self._check(check))

    async def _sleep_until(self, at: float) -> None:
        delay = self.t0 + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _drain(self, timeout: float = 15.0) -> None:
        """Give stored beacons time to go out (terminals just back online)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(
                not len(t.client.beacons) for t in self.terminals.values() if t.client.is_connected
            ):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the checker's last deliveries

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def _do(self, step: Step) -> None:
        a, now = step.args, time.monotonic()
        self.log.info("t=%.2f %s %s", self.now(), step.do, a)
        if step.do == "restart_broker":
            assert self.env is not None
            stopped = time.monotonic()
            await asyncio.to_thread(self.env.restart_broker, a.get("down", 1.0))
            self.broker_down.append((stopped, time.monotonic()))
            return
        if step.do in ("command", "revoke"):
            self._gateway_action(step)
            return
        if step.do == "incident":
            self._incident_action(step)
            return
        terminal = self.terminals[str(a["terminal"])]
        fw = terminal.firmware
        if step.do == "press":
            key = CALL_PREFIX + str(a["call"]) if "call" in a else a.get("tg")
            if not fw.press(now, key, a.get("hold"), bool(a.get("emergency", False))):
                self.log.warning(
                    "%s: %s could not press PTT (%s)", step.line, fw.profile.device_id, fw.state
                )
        elif step.do == "release":
            fw.release(now)
        elif step.do == "sos":
            fw.set_sos(now, bool(a.get("active", True)))
        elif step.do == "offline":
            fw.go_offline(now, float(a["for"]))
        elif step.do == "power_off":
            fw.power_off(now)
        elif step.do == "report":
            fw.report_incident(now, str(a["category"]), str(a["text"]), bool(a.get("voice")))
        terminal.flush()

    def _gateway_action(self, step: Step) -> None:
        env, a = self.env, step.args
        assert env is not None
        if step.do == "revoke":
            env.call(lambda: env.runner.revoke(str(a["tg"])))
            return
        fields = {k: v for k, v in a.items() if k not in ("terminal", "cmd")}
        env.call(lambda: env.runner.send_command(str(a["terminal"]), str(a["cmd"]), **fields))

    def _incident_action(self, step: Step) -> None:
        env, a = self.env, step.args
        assert env is not None
        incidents = env.service.incidents
        args = {k: a[k] for k in ("officers", "reason", "note") if k in a}
        actor = str(a.get("by", "scenario"))

        def act() -> None:
            found = latest_incident(incidents, str(a["of"]))
            if found is None:
                raise ScenarioError(f"{step.line}: no incident reported by {a['of']}")
            incidents.step(found.id, str(a["action"]), actor, **args)

        try:
            env.call(act)
        except Exception as exc:  # the check that follows says what did not happen
            self.log.warning("%s: incident %s refused: %s", step.line, a["action"], exc)

    def _check(self, check: Check) -> CheckResult:
        assert self.env is not None and self.checker is not None
        context = CheckContext(
            terminals=self.terminals,
            env=self.env,
            checker_seen=self.checker.seen,
            checker_subscribed=self.checker.subscribed_at,
            broker_down=self.broker_down,
        )
        try:
            ok, detail = evaluate(check, context, enforce_timing=self.enforce_timing)
        except Exception as exc:  # a broken check is a failed check, with the reason
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        return CheckResult(check, ok, detail)

    async def _shutdown(self) -> None:
        await asyncio.gather(
            *(t.shutdown() for t in self.terminals.values()), return_exceptions=True
        )
        self.scheduler.stop()
        if self.checker is not None:
            await self.checker.stop()
        if self.env is not None:
            await asyncio.to_thread(self.env.stop)


def _battery(firmware: Firmware) -> Callable[[], int | None]:
    return lambda: firmware.battery.percent


def run_scenario(
    scenario: Scenario, seed: int = 1, *, enforce_timing: bool = True
) -> ScenarioResult:
    """Run a scenario and judge its checks; `enforce_timing=False` reports latency bounds
    instead of failing on them (see checks.TIMING_CHECKS)."""
    return asyncio.run(ScenarioRunner(scenario, seed, enforce_timing=enforce_timing).run())


def result_json(result: ScenarioResult) -> str:
    return json.dumps(result.to_json(), indent=1)
