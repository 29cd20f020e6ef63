"""`xixin sim …` (fleets and scenarios) and `xixin terminal …` (the softphone)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any, TextIO, cast

from firmware_sim.deployment import Deployment
from firmware_sim.errors import SimError
from firmware_sim.fleet import FleetOptions, plan_fleet
from firmware_sim.fleet_run import run_fleet
from firmware_sim.gps import load_geojson_routes
from firmware_sim.impairment import ImpairmentConfig
from firmware_sim.scenario_spec import load_scenario
from firmware_sim.voice import load_wav
from xixin.environment import ManagedEnvironment
from xixin.errors import EXPECTED_OR_OS_ERRORS, one_line
from xixin.logs import live_line
from xixin.options import DURATION_HELP, add_org, duration

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `sim` and `terminal` on the `xixin` command line."""
    sim = subparsers.add_parser(
        "sim",
        help="simulated terminals: a fleet (--fleet N) or a scenario (sim scenario FILE)",
        description="Run a fleet of simulated terminals against a managed broker + gateway "
        "(default) or an existing deployment (--broker URL --secrets FILE).",
    )
    sim.add_argument("--fleet", type=int, metavar="N", help="number of terminals")
    add_org(sim, default="longxi")
    sim.add_argument(
        "--duration", type=duration, default=60.0, help=f"how long ({DURATION_HELP}; default 60s)"
    )
    sim.add_argument(
        "--processes", type=int, help="worker processes (default: 1 per 1000 terminals)"
    )
    sim.add_argument(
        "--talkers-pct",
        type=float,
        default=5.0,
        help="terminals talking on and on, %% of the fleet (default 5)",
    )
    sim.add_argument(
        "--talk-rate",
        type=float,
        default=0.0,
        help="PTT presses per hour of each of the rest (default 0)",
    )
    sim.add_argument(
        "--beacon-interval",
        type=duration,
        default=5.0,
        help=f"GPS beacon interval ({DURATION_HELP}; default 5s)",
    )
    sim.add_argument("--fixed-beacons", action="store_true", help="do not adapt to movement")
    sim.add_argument(
        "--bad-fix-rate",
        type=float,
        default=0.02,
        help="fraction of GPS fixes that are wrong, 0-1 (default 0.02)",
    )
    sim.add_argument(
        "--probes",
        type=int,
        default=8,
        help="decoding listeners per process, for mouth-to-ear delay (default 8)",
    )
    sim.add_argument(
        "--live-talkers",
        action="store_true",
        help="talkers encode their speech at run time with loss-adaptive protection, driven by "
        "the probes' receiver reports (default: replay pre-encoded speech, unprotected)",
    )
    sim.add_argument(
        "--message-ms",
        type=int,
        choices=(20, 40, 60),
        default=20,
        help="voice per MQTT message, ms (default 20)",
    )
    sim.add_argument("--loss", type=float, default=0.0, help="voice frame loss %%, both ways")
    sim.add_argument("--jitter", type=float, default=0.0, help="voice jitter, ms")
    sim.add_argument("--reorder", type=float, default=0.0, help="reordered frames %%")
    sim.add_argument(
        "--outage-every",
        type=duration,
        default=0.0,
        help=f"mean time between network outages of a terminal ({DURATION_HELP}; default: none)",
    )
    sim.add_argument(
        "--outage-length",
        type=duration,
        default=20.0,
        help=f"mean length of an outage ({DURATION_HELP}; default 20s)",
    )
    sim.add_argument("--routes", type=Path, help="patrol routes as GeoJSON (default: grid edges)")
    sim.add_argument(
        "--wav", action="append", default=[], type=Path, help="speech WAV (repeat; default espeak)"
    )
    sim.add_argument(
        "--json",
        type=Path,
        default=Path("sim-report.json"),
        help="report file (default sim-report.json)",
    )
    sim.add_argument("--broker", help="existing deployment: mqtt://host:port or mqtts://host:port")
    sim.add_argument(
        "--cafile", help="existing deployment over mqtts://: the CA terminals trust, PEM"
    )
    sim.add_argument("--secrets", type=Path, help="existing deployment: secrets JSON")
    sim.add_argument(
        "--data-dir",
        type=Path,
        help="managed mode: keep state here, created 0700 if missing (default: a temporary one)",
    )
    sim.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    sim.set_defaults(handler=cmd_sim)
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SCENARIO")
    scenario = sim_sub.add_parser("scenario", help="run one scenario file and check it")
    scenario.add_argument("file", type=Path, help="scenario YAML")
    scenario.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE", help="override a var"
    )
    scenario.add_argument("--json", type=Path, help="write the result as JSON")
    scenario.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    scenario.set_defaults(handler=cmd_scenario)

    from xixin.commands.terminal import add_terminal_parser

    add_terminal_parser(subparsers)


def cmd_sim(args: argparse.Namespace) -> int:
    if not args.fleet or args.fleet < 1:
        print("xixin sim: give --fleet N, or use: xixin sim scenario FILE", file=sys.stderr)
        return 2
    impairment = ImpairmentConfig(
        loss_pct=args.loss,
        jitter_ms=args.jitter,
        reorder_pct=args.reorder,
        outage_every_s=args.outage_every,
        outage_s=(max(1.0, args.outage_length / 2), max(1.0, args.outage_length * 1.5)),
    )
    env: ManagedEnvironment | None = None
    try:
        if args.routes is not None:
            load_geojson_routes(args.routes)  # refuse a bad file before starting anything
        for wav in args.wav:
            load_wav(wav)
        if args.broker or args.secrets:
            if not args.secrets:
                raise SimError("--broker needs --secrets FILE (device ids, units, roles, secrets)")
            deployment = Deployment.load(args.secrets, args.broker, args.cafile)
            journals = Path(args.data_dir or ".") / "sim-journals"
            org_path = None
        else:
            env = ManagedEnvironment(args.org, data_dir=args.data_dir)
            print(f"xixin sim: provisioning {args.fleet} terminals and starting broker + gateway")
            deployment = env.start(plan_fleet(env.org, args.fleet))
            journals = env.data_dir / "journals"
            org_path = str(env.org_path) if env.org_path else None
        options = FleetOptions(
            duration_s=args.duration,
            beacon_interval_s=args.beacon_interval,
            adaptive_beacons=not args.fixed_beacons,
            talkers_pct=args.talkers_pct,
            talk_rate_per_h=args.talk_rate,
            probes=args.probes,
            live_talkers=args.live_talkers,
            packets_per_message=args.message_ms // 20,
            impairment=impairment,
            bad_fix_rate=args.bad_fix_rate,
            seed=args.seed,
            journal_dir=str(journals),
            org=args.org,
            org_path=org_path,
            routes_geojson=str(args.routes) if args.routes else None,
            speech_wavs=tuple(str(p) for p in args.wav),
        )
        devices = len(deployment.devices)
        print(
            f"xixin sim: {devices} terminals on mqtt://{deployment.host}:{deployment.port}, "
            f"{args.duration:g} s, org {args.org}"
        )
        with live_line() as line:  # log records clear the progress line and redraw it
            report = run_fleet(
                deployment, options, args.processes, stream=cast(TextIO, line), json_path=args.json
            )
        if env is not None:
            report["gateway"] = env.counters()
            args.json.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    except EXPECTED_OR_OS_ERRORS as exc:
        print(f"xixin sim: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if env is not None:
            env.stop()
    return 0


def _vars(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SimError(f"--var wants NAME=VALUE, got {pair!r}")
        out[name.strip()] = value.strip()
    return out


def cmd_scenario(args: argparse.Namespace) -> int:
    from xixin.scenario import ScenarioRunner

    try:
        scenario = load_scenario(args.file, _vars(args.var))
        print(f"xixin sim: scenario {scenario.name} ({scenario.duration:g} s)")
        result = asyncio.run(ScenarioRunner(scenario, args.seed).run())
    except EXPECTED_OR_OS_ERRORS as exc:
        print(f"xixin sim: {one_line(exc)}", file=sys.stderr)
        return 2
    print(result.report())
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_json(), indent=1), encoding="utf-8")
    return 0 if result.passed else 1
