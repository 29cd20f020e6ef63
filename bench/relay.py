"""Relay benchmark: talk bursts through broker + gateway vs the broker alone, every terminal
on its own connection.

    python bench/relay.py [--quick] [--no-record] [--tcp-gateway] [--steps 100,200,...]
                          [--gateway-option publish_connections=16 ...]

N talk bursts run at once, one per talkgroup: talker i sends 50 frames/s (20 ms, ~80-byte Opus
payload) on its own connection, listener i reads talkgroup i on its own connection (2N terminal
connections, as in the field). Every step runs the same load over two paths, alternating in
slices so that both see the same machine: through mosquitto alone (the talker publishes
straight to the downlink: the reference) and through mosquitto + the gateway (uplink -> floor
check -> relay -> downlink, every burst recorded as in production). A relayed frame crosses the
broker twice, so the relay can carry at most half of what the broker carries straight through.

The rate sweep goes up until both paths have failed (p99 > 10 ms for the reference, added p99
> 10 ms for the gateway, or loss), then bisects between each path's last passing and first
failing step. Then a floor-request storm: STORM_RATE floor requests/s (all in one instant
each second, each released 0.5 s later) while STORM_BURSTS steady bursts run over both paths.
The gateway runs in its own process, like in production, over the broker's Unix socket as under
`xixin up` (`--tcp-gateway`: over TCP). Writes bench/results/relay.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import cpu_seconds, percentile  # noqa: E402
from bench.relay_load import (  # noqa: E402
    FRAME_MS,
    PATHS,
    PAYLOAD_BYTES,
    Fleet,
    serve_gateway,
    serve_storm,
)
from gateway.broker import ManagedBroker  # noqa: E402
from gateway.runner import GatewaySettings  # noqa: E402
from transport.address import BrokerAddress  # noqa: E402
from transport.loop import run_event_loop  # noqa: E402

DEFAULT_PUBLISHERS = GatewaySettings(BrokerAddress("127.0.0.1", 1)).publish_connections
SLICES = 7  # per step, the two paths alternate this many times
STORM_SLICES = 9  # in the storm step, of STORM_SLICE_S each (the storm has a 1 s period)
STORM_SLICE_S = 1.0
TAIL_S = 1.0  # after each slice: wait for frames in flight until none arrived for this long
LIMIT_MS = 10.0  # a step passes with (added) p99 at most this, and no loss
STORM_RATE = 200  # floor requests per second in the storm
STORM_BURSTS = 100  # steady bursts while it rages
STORM_LIMIT_MS = 5.0
# Burst counts of the sweep. It stops where both paths have failed, so the top is set well past
# what one 2-core machine carries straight through (a fast one: ~40,000 frames/s): a path that
# never failed has no knee, and a ratio to its top step would overstate the relay.
DEFAULT_STEPS = (100, 200, 300, 400, 500, 600, 800, 1000, 1250, 1600)


@dataclass
class Row:
    """One step. p99s are medians over the step's slices (the slice pairs, for added p99): a
    shared 2-core VM has noisy seconds, and one of them must not decide a step; the p99 over
    every frame of the step is kept as pooled_*."""

    bursts: int
    offered_fps: int
    direct_loss: float
    gateway_loss: float
    direct_p50_ms: float
    direct_p99_ms: float
    gateway_p50_ms: float
    gateway_p99_ms: float
    added_p50_ms: float
    added_p99_ms: float
    added_p99_ms_slices: list[float]
    pooled_direct_p99_ms: float
    pooled_gateway_p99_ms: float
    gateway_cpu_pct: float
    broker_cpu_pct: float
    loadgen_cpu_pct: float
    recorder_cpu_pct: float
    storm_requests_per_s: float = 0.0

    @property
    def direct_ok(self) -> bool:
        return self.direct_p99_ms <= LIMIT_MS and self.direct_loss == 0

    @property
    def gateway_ok(self) -> bool:
        return self.added_p99_ms <= LIMIT_MS and self.gateway_loss == 0


def _ms(value: float) -> float:
    return round(value, 3)


class Storm:
    """The storm process (bench/relay_load.py serve_storm)."""

    def __init__(self, address: BrokerAddress, rate: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve-storm", address.host, str(address.port),
             str(rate)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            # A session (so a scheduler autogroup) of its own: the storm's devices are not on
            # the gateway's machine, their work must not come out of its CPU share.
            start_new_session=True,
        )  # fmt: skip
        self.times: list[int] = []

    def _say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def _read(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    async def ready(self) -> None:
        line = await asyncio.get_running_loop().run_in_executor(None, self._read)
        if line.strip() != "ready":
            raise SystemExit("the storm process did not start")

    def start(self) -> None:
        self._say("start")

    async def stop(self) -> int:
        self._say("stop")
        line = await asyncio.get_running_loop().run_in_executor(None, self._read)
        report = json.loads(line)
        self.times += report["times"]
        return int(report["sent"])

    def close(self) -> None:
        try:
            self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Bench:
    def __init__(self, fleet: Fleet, seconds: float, pids: tuple[int, int, int]) -> None:
        self.fleet = fleet
        self.seconds = seconds
        self.storm_slices = STORM_SLICES
        self.watched = (pids[0], pids[1], os.getpid(), pids[2])  # gateway, broker, us, recorder

    async def step(self, bursts: int, storm: Storm | None = None) -> Row:
        if storm is None:
            return await self._step(bursts, SLICES, self.seconds / SLICES, None)
        return await self._step(bursts, self.storm_slices, STORM_SLICE_S, storm)

    async def _step(self, bursts: int, slice_count: int, slice_s: float,
                    storm: Storm | None) -> Row:  # fmt: skip
        """Both paths at `bursts`, alternating in `slice_count` slices each (and a storm)."""
        fleet = self.fleet
        await fleet.request_floors(bursts)
        streams = [fleet.stream(bursts, via_gateway=False), fleet.stream(bursts, via_gateway=True)]
        if storm is not None:
            storm.start()
        began_storm = time.monotonic()
        slices: list[list[list[float]]] = [[], []]
        sent = [0, 0]
        cpu = [0.0] * len(self.watched)
        wall = 0.0
        for _ in range(slice_count):
            for path, stream in enumerate(streams):
                before = [cpu_seconds(pid) for pid in self.watched]
                began = time.monotonic()
                n, got = await fleet.play(stream, slice_s, TAIL_S)
                sent[path] += n
                slices[path].append(got)
                if path == 1:
                    wall += time.monotonic() - began
                    for k, pid in enumerate(self.watched):
                        cpu[k] += cpu_seconds(pid) - before[k]
        storm_rate = 0.0
        if storm is not None:
            storm_rate = await storm.stop() / (time.monotonic() - began_storm)
        await fleet.release_floors(bursts)
        row = self._row(bursts, slices, sent, [round(100 * c / wall, 1) for c in cpu])
        row.storm_requests_per_s = round(storm_rate, 1)
        print(
            f"{bursts:5d} bursts {row.offered_fps:6d} fps  loss {row.direct_loss:.4f}/"
            f"{row.gateway_loss:.4f}  direct p50/p99 {row.direct_p50_ms:6.2f}/"
            f"{row.direct_p99_ms:6.2f}  gateway p50/p99 {row.gateway_p50_ms:6.2f}/"
            f"{row.gateway_p99_ms:6.2f}  added p99 {row.added_p99_ms:6.2f} ms "
            f"{row.added_p99_ms_slices} cpu% gw/broker/load/rec {row.gateway_cpu_pct}/"
            f"{row.broker_cpu_pct}/{row.loadgen_cpu_pct}/{row.recorder_cpu_pct}"
            + (f"  storm {storm_rate:.0f} req/s" if storm is not None else ""),
            flush=True,
        )
        return row

    @staticmethod
    def _row(bursts: int, slices: list[list[list[float]]], sent: list[int],
             used: list[float]) -> Row:  # fmt: skip
        pooled = [[x for got in slices[path] for x in got] for path in (0, 1)]
        loss = [max(0.0, 1 - len(pooled[p]) / sent[p]) if sent[p] else 0.0 for p in (0, 1)]
        p99 = [[percentile(got, 0.99) for got in slices[path]] for path in (0, 1)]
        added = [g - d for d, g in zip(p99[0], p99[1], strict=True)]
        p50 = [percentile(pooled[path], 0.5) for path in (0, 1)]
        return Row(
            bursts=bursts,
            offered_fps=bursts * 1000 // FRAME_MS,
            direct_loss=round(loss[0], 5),
            gateway_loss=round(loss[1], 5),
            direct_p50_ms=_ms(p50[0]),
            direct_p99_ms=_ms(statistics.median(p99[0])),
            gateway_p50_ms=_ms(p50[1]),
            gateway_p99_ms=_ms(statistics.median(p99[1])),
            added_p50_ms=_ms(p50[1] - p50[0]),
            added_p99_ms=_ms(statistics.median(added)),
            added_p99_ms_slices=[_ms(x) for x in added],
            pooled_direct_p99_ms=_ms(percentile(pooled[0], 0.99)),
            pooled_gateway_p99_ms=_ms(percentile(pooled[1], 0.99)),
            gateway_cpu_pct=used[0],
            broker_cpu_pct=used[1],
            loadgen_cpu_pct=used[2],
            recorder_cpu_pct=used[3],
        )

    async def sweep(self, steps: list[int], refine: int) -> list[Row]:
        """Coarse steps until both paths fail, then `refine` bisections around each knee. A
        step that a path fails is measured once more, and passes for that path if either
        measurement does (the same rule for both paths: a noisy second decides nothing)."""
        rows: dict[int, list[Row]] = {}
        for bursts in steps:
            await self._measure(rows, bursts)
            if not passes(rows[bursts], direct_passes) and not passes(rows[bursts], gateway_passes):
                break
        for _ in range(refine):
            todo = set()
            for ok in (direct_passes, gateway_passes):
                low, high = knee(rows, ok)
                if high is not None and high - low > 10:
                    todo.add((low + high) // 2)
            for bursts in sorted(todo - rows.keys()):
                await self._measure(rows, bursts)
        return [row for b in sorted(rows) for row in rows[b]]

    async def _measure(self, rows: dict[int, list[Row]], bursts: int) -> None:
        row = await self.step(bursts)
        rows[bursts] = [row]
        if not (row.direct_ok and row.gateway_ok):
            rows[bursts].append(await self.step(bursts))


def direct_passes(row: Row) -> bool:
    return row.direct_ok


def gateway_passes(row: Row) -> bool:
    return row.gateway_ok


def passes(measured: list[Row], ok: Callable[[Row], bool]) -> bool:
    return any(ok(row) for row in measured)


def knee(rows: dict[int, list[Row]], ok: Callable[[Row], bool]) -> tuple[int, int | None]:
    """(last passing bursts before the first failure, first failing bursts or None)."""
    low = 0
    for bursts in sorted(rows):
        if not passes(rows[bursts], ok):
            return low, bursts
        low = bursts
    return low, None


def scheduler_jitter(seconds: float = 2.0) -> dict[str, float]:
    """How late a 1 ms sleep wakes up on this machine, measured before the run with nothing
    else of ours running: a shared VM's noise shows here, and in every latency tail below."""
    late: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        began = time.monotonic()
        time.sleep(0.001)
        late.append((time.monotonic() - began - 0.001) * 1000)
    return {
        "p50_ms": round(percentile(late, 0.5), 3),
        "p99_ms": round(percentile(late, 0.99), 3),
        "max_ms": round(max(late), 3),
    }


async def measure(
    address: BrokerAddress,
    steps: list[int],
    seconds: float,
    refine: int,
    pids: tuple[int, int, int],
    dump: Path | None = None,
) -> tuple[list[Row], Row | None]:
    storm = Storm(address, STORM_RATE) if max(steps) >= STORM_BURSTS else None
    try:
        async with Fleet(address, max(steps)) as fleet:
            bench = Bench(fleet, seconds, pids)
            if refine == 0:  # --quick
                bench.storm_slices = 5
            rows = await bench.sweep(steps, refine)
            storm_row = None
            if storm is not None:
                await storm.ready()
                fleet.timeline = [] if dump is not None else None
                storm_row = await bench.step(STORM_BURSTS, storm)
            if dump is not None and storm is not None:
                dump.write_text(json.dumps({"storms": storm.times, "frames": fleet.timeline}))
    finally:
        if storm is not None:
            storm.close()
    return rows, storm_row


def _autogroup() -> str | None:
    """The scheduler autogroup of this process and its nice value, where the kernel has them."""
    try:
        return Path("/proc/self/autogroup").read_text().strip()
    except OSError:
        return None


def parse_options(items: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        options[key] = json.loads(value)
    return options


@contextlib.contextmanager
def priority(nice: int | None) -> Iterator[str | None]:
    """Run the block (and the processes it starts) at niceness `nice`, our scheduler autogroup
    too; yields the autogroup as it was then. The autogroup is shared with the shell that
    started us: its nice value is put back after."""
    before = _autogroup()
    if nice is None:
        yield before
        return
    os.setpriority(os.PRIO_PROCESS, 0, nice)  # inherited by the broker and gateway
    with contextlib.suppress(OSError):
        Path("/proc/self/autogroup").write_text(str(nice))
    try:
        yield _autogroup()
    finally:
        if before is not None:
            with contextlib.suppress(OSError):
                Path("/proc/self/autogroup").write_text(before.rsplit(" ", 1)[-1])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer, shorter steps, no bisection (<= 45 s)"
    )
    parser.add_argument("--serve-gateway", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--serve-storm", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "relay.json")
    parser.add_argument(
        "--no-record", action="store_true", help="gateway without its recorder (production records)"
    )
    parser.add_argument(
        "--tcp-gateway",
        action="store_true",
        help="the gateway reaches the broker over TCP, not its Unix socket (as an external broker)",
    )
    parser.add_argument("--steps", help="comma-separated burst counts instead of the defaults")
    parser.add_argument(
        "--gateway-option",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="a GatewaySettings field for the gateway under test (experiments)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        help="run the load generator, broker and gateway at this niceness, and their scheduler "
        "autogroup too where the kernel has them (negative: root only): on a shared machine "
        "every other session's group otherwise gets as much CPU as all of ours together",
    )
    parser.add_argument("--dump", type=Path, help="the storm step's frame times (JSON)")
    return parser


def main() -> None:
    args = _parser().parse_args()
    if args.serve_gateway:
        host, port, bursts, storm, options = args.serve_gateway
        serve_gateway(host, int(port), int(bursts), int(storm), json.loads(options))
        return
    if args.serve_storm:
        host, port, rate = args.serve_storm
        serve_storm(host, int(port), int(rate))
        return
    steps = list(DEFAULT_STEPS)
    if args.steps:
        steps = [int(n) for n in args.steps.split(",")]
    if args.quick and not args.steps:
        steps = [100, 200, 300, 400]
    seconds = 1.5 if args.quick else 6.0
    refine = 0 if args.quick else 2
    options = parse_options(args.gateway_option)
    if args.no_record:
        options["record"] = False
    began = time.monotonic()
    with priority(args.nice) as autogroup, tempfile.TemporaryDirectory() as tmp:
        jitter = scheduler_jitter(1.0 if args.quick else 2.0)
        print(f"idle machine, 1 ms sleep wakes late by: {jitter}", flush=True)
        broker = ManagedBroker(Path(tmp), local_socket=not args.tcp_gateway)
        broker.start()
        storm = STORM_RATE if max(steps) >= STORM_BURSTS else 0
        gateway = subprocess.Popen(
            [sys.executable, __file__, "--serve-gateway",
             broker.local_address.unix_path or broker.host, str(broker.port), str(max(steps)),
             str(storm), json.dumps(options)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert gateway.stdout is not None and gateway.stdin is not None
            ready = gateway.stdout.readline().split()
            if not ready or ready[0] != "ready":
                raise SystemExit("the gateway process did not start")
            assert broker.pid is not None
            pids = (gateway.pid, broker.pid, int(ready[1]))
            rows, storm_row = run_event_loop(
                measure(broker.address, steps, seconds, refine, pids, args.dump)
            )
        finally:
            try:
                gateway_line = gateway.communicate(input="\n", timeout=30)[0].strip()
            except subprocess.TimeoutExpired:
                gateway.kill()
                gateway.wait()
                gateway_line = "gateway did not stop"
            broker.stop()
    print(f"gateway: {gateway_line}")
    result = report(args, rows, storm_row, options, seconds, jitter, gateway_line)
    result["autogroup"] = autogroup
    result["elapsed_s"] = round(time.monotonic() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    bound = "" if result["direct_knee_found"] else " (never failed: a lower bound, no ratio)"
    print(
        f"direct max {result['direct_max_fps_p99_under_10ms']} fps{bound}, gateway max "
        f"{result['max_fps_added_p99_under_10ms']} fps (ratio {result['max_fps_ratio']}); "
        f"storm added p99 {result['storm_added_p99_ms']} ms  ({args.out})"
    )


def report(args: argparse.Namespace, rows: list[Row], storm_row: Row | None,
           options: dict[str, Any], seconds: float, jitter: dict[str, float],
           gateway_line: str) -> dict[str, Any]:  # fmt: skip
    by_bursts: dict[int, list[Row]] = {}
    for row in rows:
        by_bursts.setdefault(row.bursts, []).append(row)
    direct_low, direct_fail = knee(by_bursts, direct_passes)
    gateway_low, gateway_fail = knee(by_bursts, gateway_passes)
    fps = 1000 // FRAME_MS
    direct_max, gateway_max = direct_low * fps, gateway_low * fps
    # Without a direct knee the reference is only a lower bound: no ratio can be claimed.
    ratio = round(gateway_max / direct_max, 3) if direct_max and direct_fail else None
    return {
        "benchmark": "relay",
        "quick": args.quick,
        "seconds_per_step": seconds,
        "frame_ms": FRAME_MS,
        "payload_bytes": PAYLOAD_BYTES,
        "topology": "one connection per talker and one per listener: N talkers on N talkgroups "
        "and N listeners, one each; the same broker for both paths",
        "listener_connections": max(r.bursts for r in rows),
        "talker_connections": max(r.bursts for r in rows),
        "talkgroups": max(r.bursts for r in rows),
        "reference": "same load through mosquitto alone (publish straight to the downlink)",
        "method": f"per step the two paths alternate in {SLICES} slices each; a step's p99 is "
        "the median of its slices' p99s, its added p99 the median over adjacent slice pairs of "
        "(gateway p99 - direct p99), loss over the whole step; a step a path fails is measured "
        "again and passes for it if either measurement does (both rows kept); steps go up "
        "until both paths fail, then bisect between each path's last pass and first failure; "
        "a path's max is its last passing step below its first failing one; no ratio is given "
        "unless the direct path failed somewhere (else its max is only a lower bound)",
        "gateway_setup": "uvloop, "
        + f"{options.get('publish_connections', DEFAULT_PUBLISHERS)} publishing connections, "
        + ("TCP to the broker, " if args.tcp_gateway else "the broker's Unix socket, ")
        + ("no recorder" if args.no_record else "recorder process on")
        + (f", options {options}" if options else ""),
        "gateway": gateway_line,
        "niceness": os.getpriority(os.PRIO_PROCESS, 0),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "idle_sleep_lateness_before_run": jitter,
        },
        "paths": list(PATHS),
        "rows": [asdict(row) for row in rows],
        "direct_max_fps_p99_under_10ms": direct_max,
        "max_fps_added_p99_under_10ms": gateway_max,
        "direct_knee_found": direct_fail is not None,
        "gateway_knee_found": gateway_fail is not None,
        "max_fps_ratio": ratio,
        "target_ratio": 0.5,
        "added_p99_ms_at_100_bursts": by_bursts[100][0].added_p99_ms if 100 in by_bursts else None,
        "storm": asdict(storm_row) if storm_row else None,
        "storm_added_p99_ms": storm_row.added_p99_ms if storm_row else None,
        "storm_limit_ms": STORM_LIMIT_MS,
        "storm_method": f"{STORM_BURSTS} steady bursts, the two paths alternating in "
        f"{STORM_SLICES} slices of {STORM_SLICE_S:g} s each while {STORM_RATE} devices (another "
        "process, its own session) each ask for a floor every second, all in the same instant, "
        "and release it 0.5 s later",
    }


if __name__ == "__main__":
    main()
