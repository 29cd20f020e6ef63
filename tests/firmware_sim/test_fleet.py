"""Fleets and the command line: a real broker and gateway, simulated terminals."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from codec.pcm import write_wav
from firmware_sim.deployment import Deployment, DeviceSpec, resolve_org
from firmware_sim.fleet import FleetOptions, Worker, WorkerSpec, choose_talkers, plan_fleet
from firmware_sim.fleet_run import merge_reports, run_fleet, split_workers, summary_table
from firmware_sim.voice import synthesize, wav_reel
from gateway.broker import process_running
from protocol.org import default_org
from xixin.cli import main
from xixin.environment import ManagedEnvironment


def test_plan_spreads_terminals_over_grids_and_talkers_one_per_grid() -> None:
    org = default_org()
    plan = plan_fleet(org, 52)
    assert len({d for d, _, _ in plan}) == 52
    per_grid = {g: sum(1 for _, u, _ in plan if u == g) for g in org.grids}
    assert set(per_grid.values()) == {4}
    assert {r for _, _, r in plan} == {"officer", "guard"}
    devices = [DeviceSpec(d, u, r) for d, u, r in plan]
    talkers = choose_talkers(devices, 25.0)
    assert len(talkers) == 13 and len({u for d, u, _ in plan if d in talkers}) == 13
    deployment = Deployment("127.0.0.1", 1, {d.id: d for d in devices})
    shares = split_workers(deployment, FleetOptions(talkers_pct=25.0), 3)
    assert [len(s.devices) for s in shares] == [18, 18, 16]
    assert sum(len(s.talkers) for s in shares) == 13


def test_synthetic_org(tmp_path: Path) -> None:
    org, path = resolve_org("synthetic:30", tmp_path)
    assert path is not None and path.exists()
    assert len(org.grids) == 30 and len(org.areas) == 3
    assert org.grid_at(*org.grids["grid-0017"].centre) == "grid-0017"


def test_small_fleet_in_process(tmp_path: Path) -> None:
    routes = tmp_path / "routes.geojson"
    routes.write_text(
        json.dumps({"type": "LineString", "coordinates": [[120.11, 30.86], [120.112, 30.862]]})
    )
    speech = tmp_path / "speech.wav"
    speech.write_bytes(write_wav(synthesize("Patrol two, all clear."), 16000))
    env = ManagedEnvironment("longxi")
    try:
        deployment = env.start(plan_fleet(env.org, 26))
        options = FleetOptions(
            duration_s=4.0,
            beacon_interval_s=1.0,
            adaptive_beacons=False,
            talkers_pct=10.0,
            warmup_s=0.5,
            journal_dir=str(tmp_path / "journals"),
            routes_geojson=str(routes),
            speech_wavs=(str(speech),),
        )
        out = tmp_path / "out.txt"
        with out.open("w") as stream:
            report = run_fleet(deployment, options, processes=0, stream=stream,
                               json_path=tmp_path / "r.json")  # fmt: skip
        assert gc.get_freeze_count() == 0  # the worker froze its heap: ours is given back
        gateway = env.counters()
    finally:
        env.stop()
    assert report["terminals"] == 26 and report["connected_at_end"] == 26
    beacons = report["beacons"]
    assert beacons["taken"] >= 26 * 4 and beacons["acked"] == beacons["taken"]
    fw = report["firmware"]
    assert fw["grants"] >= 3 and fw["frames_sent"] > 100
    assert fw["frames_received"] >= 0.95 * fw["frames_expected"] > 0
    assert report["percentiles"]["access_ms"]["n"] >= 3
    assert report["percentiles"]["mouth_to_ear_ms"]["n"] > 0
    assert gateway["grants"] >= fw["grants"] and gateway["relayed"] > 0
    assert "access time" in out.read_text() and json.loads((tmp_path / "r.json").read_text())


def test_merge_reports_adds_up() -> None:
    one = {
        "worker": 0, "terminals": 2, "talkers": 1, "connected_at_end": 2, "connect_s": 1.0,
        "beacons": {"taken": 10, "acked": 10, "still_queued": 0},
        "firmware": {"frames_expected": 100, "frames_received": 99, "denied": {"busy": 1}},
        "rates": {"beacons_taken_per_s": 1.0},
        "histograms": {"access_ms": {"5": 2}},
        "cpu_pct": 10.0, "loop_lag_p99_ms": 3.0, "window_s": 10.0,
    }  # fmt: skip
    two = {**one, "worker": 1, "loop_lag_p99_ms": 7.0, "histograms": {"access_ms": {"9": 2}}}
    merged = merge_reports([one, two])
    assert merged["terminals"] == 4 and merged["beacons"]["taken"] == 20
    assert merged["firmware"]["denied"] == {"busy": 2}
    assert merged["frame_loss_pct"] == 1.0 and merged["loop_lag_p99_ms"] == 7.0
    assert merged["percentiles"]["access_ms"] == {"n": 4, "p50": 5.5, "p95": 9.5, "p99": 9.5}
    assert "frame loss" in summary_table(merged)


def test_cli_scenario_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: quick\nterminals: {T1: {unit: grid-01}, T2: {unit: grid-01}}\nduration: 3s\n"
        "timeline: [{at: 0.5s, do: press, terminal: T1, hold: 1s}]\n"
        "expect: [{that: heard, terminal: T2, from: T1}, {that: granted, terminal: T2}]\n"
    )
    result = tmp_path / "result.json"
    assert main(["sim", "scenario", str(scenario), "--json", str(result)]) == 1
    body = json.loads(result.read_text())
    assert [c["ok"] for c in body["checks"]] == [True, False], "T2 never talked: that check fails"
    assert "FAILED" in capsys.readouterr().out
    assert main(["sim", "scenario", str(tmp_path / "missing.yaml")]) == 2
    assert main(["sim"]) == 2
    assert "give --fleet N" in capsys.readouterr().err
    assert main(["sim", "--fleet", "3", "--broker", "mqtt://127.0.0.1:1"]) == 2
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "Point", "coordinates": [1, 2]}')
    assert main(["sim", "--fleet", "3", "--routes", str(bad)]) == 2
    assert "unsupported GeoJSON type" in capsys.readouterr().err


def test_worker_uses_the_given_routes_and_speech(tmp_path: Path) -> None:
    routes = tmp_path / "routes.geojson"
    routes.write_text('{"type": "LineString", "coordinates": [[121.0, 31.0], [121.001, 31.0]]}')
    speech = tmp_path / "speech.wav"
    speech.write_bytes(write_wav(synthesize("Unit four, copy."), 16000))
    options = FleetOptions(routes_geojson=str(routes), speech_wavs=(str(speech),))
    spec = WorkerSpec(0, "127.0.0.1", 1, [DeviceSpec("S1", "grid-01", "officer")], set(), options)
    worker = Worker(spec)
    worker.build()
    firmware = worker.terminals[0].firmware
    assert firmware.gps is not None and firmware.sender is not None
    fix = firmware.gps.fix(0.0, 1_700_000_000_000)
    assert 120.9999 < fix.true_lon < 121.0011 and abs(fix.true_lat - 31.0) < 1e-6
    assert firmware.sender.reel is wav_reel((speech,))
    assert 0.5 < firmware.sender.reel.seconds < 3.0


def test_a_reused_data_dir_keeps_devices_and_secrets(tmp_path: Path) -> None:
    import asyncio

    from devices.aio_client import AsyncTerminalClient

    secrets = []
    for _ in range(2):
        env = ManagedEnvironment("longxi", data_dir=tmp_path)
        try:
            deployment = env.start([("T001", "grid-01", "officer")])
            secret = deployment.devices["T001"].secret
            secrets.append(secret)

            async def login(secret: str | None = secret, port: int = deployment.port) -> None:
                client = AsyncTerminalClient("T001", secret, "127.0.0.1", port)
                await client.start()
                await client.stop()

            asyncio.run(login())
        finally:
            env.stop()
    assert secrets[0] == secrets[1] and (tmp_path / "sim-secrets.json").exists()


def test_sim_stops_what_it_started_on_sigterm(tmp_path: Path) -> None:
    """systemd or `docker stop` send SIGTERM: the fleet, gateway and broker all stop."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "xixin.cli", "sim"),
            *("--fleet", "2", "--duration", "120", "--data-dir", str(tmp_path)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    broker_pid = None
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("xixin sim: 2 terminals on"):
                break
        broker_pid = int((tmp_path / "broker" / "mosquitto.pid").read_text())
        assert process_running(broker_pid)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 130
        assert not process_running(broker_pid)
        assert not (tmp_path / "broker" / "mosquitto.pid").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if broker_pid is not None and process_running(broker_pid):
            os.kill(broker_pid, signal.SIGTERM)  # left by a failing run: ours, by its PID
