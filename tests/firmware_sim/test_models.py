"""The simulator's models: GPS routes and fixes, battery, speech, impairment, reception."""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path

import pytest
from shapely.geometry import Point as ShapelyPoint
from shapely.geometry import Polygon

from codec.jitter import PlayoutKind
from firmware_sim.battery import Battery, BatteryConfig
from firmware_sim.errors import RouteError
from firmware_sim.gps import GpsConfig, GpsModel, Route, load_geojson_routes
from firmware_sim.impairment import Impairment, ImpairmentConfig, OutagePlan
from firmware_sim.reception import PROBE_JITTER, Histogram, ReceiverMeter, VoiceProbe
from firmware_sim.voice import BurstLengths, BurstSender, synthesize, ts_to_wall, wall_to_ts
from protocol.org import default_org
from tests.firmware_sim.helpers import tone_reel

M_PER_DEG = 111_320.0


def metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    dx = (lon2 - lon1) * M_PER_DEG * math.cos(math.radians(lat1))
    return math.hypot(dx, (lat2 - lat1) * M_PER_DEG)


@pytest.mark.parametrize("grid_id", ["grid-01", "grid-07", "grid-13"])
def test_patrol_stays_inside_its_grid_with_realistic_noise(grid_id: str) -> None:
    grid = default_org().grids[grid_id]
    polygon = Polygon(grid.polygon)
    gps = GpsModel(Route.from_grid(grid), GpsConfig(bad_fix_rate=0.0), random.Random(3))
    errors, speeds = [], []
    for n in range(720):  # an hour at 5 s
        fix = gps.fix(n * 5.0, 1_700_000_000_000 + n * 5000)
        assert polygon.contains(ShapelyPoint(fix.true_lon, fix.true_lat))
        errors.append(metres(fix.true_lon, fix.true_lat, fix.beacon.lon, fix.beacon.lat))
        if fix.moving:
            speeds.append(fix.beacon.spd or 0.0)
    assert 1.5 < statistics.median(errors) < 10.0
    assert max(errors) < 40.0
    assert 0.9 < statistics.median(speeds) < 1.8, "walking pace"
    assert len(speeds) < 700, "stops happen"


def test_bad_fixes_and_adaptive_interval() -> None:
    grid = default_org().grids["grid-02"]
    gps = GpsModel(Route.from_grid(grid), GpsConfig(bad_fix_rate=0.3), random.Random(5))
    kinds: dict[str, int] = {}
    previous = None
    for n in range(300):
        fix = gps.fix(n * 5.0, 1_700_000_000_000 + n * 5000)
        if fix.bad:
            kinds[fix.bad] = kinds.get(fix.bad, 0) + 1
        if fix.bad == "zero":
            assert (fix.beacon.lat, fix.beacon.lon) == (0.0, 0.0)
        if fix.bad == "jump":
            assert metres(fix.true_lon, fix.true_lat, fix.beacon.lon, fix.beacon.lat) > 250
        if fix.bad == "stale" and previous is not None:
            assert fix.beacon.ts < 1_700_000_000_000 + n * 5000
        previous = fix
    assert set(kinds) == {"zero", "jump", "stale"}
    ebike = GpsModel(
        Route.from_grid(grid), GpsConfig(mode="ebike", stop_chance=1.0), random.Random(2)
    )
    ebike.advance(0.0)
    assert ebike.next_interval(0.0) == 5.0
    stopped = []
    for t in range(0, 1200, 7):  # it stops at every corner of the route
        ebike.advance(float(t))
        if not ebike.moving(t):
            stopped.append(ebike.next_interval(t))
    assert stopped and max(stopped) > 5.0 and max(stopped) <= 30.0


def test_geojson_routes(tmp_path: Path) -> None:
    path = tmp_path / "routes.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {
                            "type": "LineString",
                            "coordinates": [[120.11, 30.86], [120.112, 30.861]],
                        },
                    },
                    {
                        "type": "Feature",
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [
                                [[120.11, 30.86], [120.12, 30.86], [120.12, 30.87], [120.11, 30.86]]
                            ],
                        },
                    },
                ],
            }
        )
    )
    line, ring = load_geojson_routes(path)
    assert not line.loop and len(line.legs()) == 2, "out and back"
    assert ring.loop and len(ring.points) == 3
    gps = GpsModel(line, GpsConfig(bad_fix_rate=0.0, stop_chance=0.0), random.Random(1))
    fix = gps.fix(100.0, 1_700_000_000_000)
    assert 120.109 < fix.true_lon < 120.113
    path.write_text('{"type": "Point", "coordinates": [1, 2]}')
    with pytest.raises(RouteError):
        load_geojson_routes(path)
    with pytest.raises(RouteError):
        Route(((1.0, 2.0),))


def test_battery_drains_by_activity() -> None:
    battery = Battery(BatteryConfig(start_pct=50.0, low_pct=40.0), now=0.0)
    battery.set_activity("transmit", 0.0)
    battery.update(3600.0)
    assert battery.percent == 5
    idle = Battery(BatteryConfig(start_pct=50.0, low_pct=40.0), now=0.0)
    idle.update(3600.0)
    assert idle.percent == 45 and not idle.take_alarm(3600.0)
    assert battery.take_alarm(3600.0) and not battery.take_alarm(3601.0)


def test_burst_lengths_have_the_public_safety_mean() -> None:
    rng = random.Random(11)
    draws = [BurstLengths().draw(rng) for _ in range(20000)]
    assert abs(statistics.mean(draws) - 4.7) < 0.1
    assert min(draws) >= 0.6 and max(draws) <= 25.0


def test_speech_from_espeak_ng() -> None:
    pcm = synthesize("Unit seven on scene.")
    assert 0.8 < len(pcm) / 16000 < 3.0 and max(abs(int(x)) for x in pcm[::50]) > 1000


def test_burst_sender_paces_and_ends() -> None:
    sender = BurstSender(tone_reel(), packets_per_message=3)
    sender.start(7, now=10.0, wall_s=1_700_000_000.0, duration_s=1.0, rng=random.Random(1))
    assert sender.due(10.05) == []
    first = sender.due(10.06)
    assert len(first) == 1 and len(first[0].packets) == 3 and first[0].start
    rest = sender.due(11.5)
    assert sum(len(f.packets) for f in first + rest) == 50 and rest[-1].end and sender.ended
    assert [f.seq for f in first + rest] == list(range(17))
    assert rest[0].timestamp - first[0].timestamp == 3 * 960
    early = BurstSender(tone_reel())
    early.start(8, 0.0, 0.0, 5.0, random.Random(1))
    stop = early.stop()
    assert stop is not None and stop.end and stop.packets == () and early.stop() is None


def test_wall_clock_timestamps_round_trip_across_the_wrap() -> None:
    for wall in (1_700_000_000.0, 1_700_000_000.0 + 2**32 / 48000 - 0.01):
        ts = wall_to_ts(wall)
        assert abs(ts_to_wall(ts, wall + 0.25) - wall) < 1e-4


def test_impairment_rates() -> None:
    gate = Impairment(ImpairmentConfig(loss_pct=10, jitter_ms=20, reorder_pct=5), random.Random(2))
    verdicts = [gate.uplink(0.0) for _ in range(10000)]
    dropped = sum(v is None for v in verdicts)
    assert 900 < dropped < 1100 and gate.up.dropped == dropped
    delays = [v for v in verdicts if v is not None]
    assert min(delays) >= 0.0 and 0.012 < statistics.mean(delays) < 0.025
    assert 400 < gate.up.reordered < 600 and gate.down.frames == 0
    plan = OutagePlan(ImpairmentConfig(outage_every_s=60.0), random.Random(1), 0.0)
    starts = 0
    for t in range(0, 36000, 1):
        if plan.due(float(t)) is not None:
            starts += 1
    assert 250 < starts < 650


def test_histogram_percentiles_and_merge() -> None:
    h = Histogram()
    for v in range(100):
        h.add(v)
    assert h.percentile(50) == 49.5 and h.percentile(95) == 94.5
    other = Histogram()
    other.add(10_000)
    h.merge(other.to_dict())  # type: ignore[arg-type]
    assert h.total == 101 and h.percentile(100) == 5000.5


def test_late_entry_and_stragglers() -> None:
    meter = ReceiverMeter(linger_s=0.5)
    meter.joined(100.0)

    def frame(seq: int, wall: float, end: bool = False) -> None:
        ts = wall_to_ts(99.0 + seq * 0.02)
        meter.frame("grid-01", 3, seq, ts, end, True, wall)

    frame(40, 100.3)
    frame(41, 100.32)
    frame(41, 100.33)
    frame(43, 100.36, end=True)
    meter.ended("grid-01", 100.4)
    meter.sweep(101.0)
    frame(42, 101.1)
    totals = meter.totals
    assert (totals.late_entries, totals.frames_expected, totals.frames_received) == (1, 4, 3)
    assert totals.duplicates == 1 and meter.stragglers == 1
    assert 299 <= (meter.late_entry_ms.percentile(50) or 0) <= 301


def test_probe_decodes_and_measures_mouth_to_ear() -> None:
    sender = BurstSender(tone_reel())
    wall0 = 1_700_000_000.0
    sender.start(5, now=0.0, wall_s=wall0, duration_s=1.0, rng=random.Random(1))
    probe = VoiceProbe()
    frames = sender.due(1.0)
    arrivals = [(0.02 * (i + 1) + 0.030, f) for i, f in enumerate(frames)]  # 30 ms network
    now, played, pending = 0.0, 0, list(arrivals)
    while now < 2.0:
        while pending and pending[0][0] <= now:
            probe.receive(pending.pop(0)[1], now)
        if probe.active and now >= probe.next_pull:
            chunk = probe.pull(now, wall0 + now)
            played += len(chunk.pcm)
        now += 0.005
    m2e = probe.mouth_to_ear.percentile(50)
    assert m2e is not None and 50.0 <= m2e <= 150.0, m2e
    assert probe.played_ms >= 900 and played >= 16000 * 0.9


def test_probe_playout_clock_keeps_its_pace_when_timers_fire_late() -> None:
    """Every pull runs 3 ms after it was due: the pulls stay on their 20 ms grid (a sound card),
    they do not drift 3 ms later each time; a stall longer than 100 ms restarts the clock."""
    sender = BurstSender(tone_reel())
    wall0 = 1_700_000_000.0
    sender.start(5, now=0.0, wall_s=wall0, duration_s=2.0, rng=random.Random(1))
    probe = VoiceProbe()
    pending = [(0.02 * (i + 1) + 0.030, f) for i, f in enumerate(sender.due(2.0))]
    for at, frame in pending[:10]:
        probe.receive(frame, at)
    dues, lengths = [], []
    for _ in range(20):
        dues.append(probe.next_pull)
        chunk = probe.pull(probe.next_pull + 0.003, wall0 + probe.next_pull + 0.003)
        lengths.append(chunk.item.duration_ms / 1000.0)
    assert 0.02 in lengths  # the burst started (idle periods are 10 ms, frames 20 ms)
    expected = [dues[0] + sum(lengths[:n]) for n in range(20)]
    assert dues == pytest.approx(expected)
    stalled = probe.next_pull + 0.5
    probe.pull(stalled, wall0 + stalled)
    assert probe.next_pull == pytest.approx(stalled + 0.02)


def test_probe_starts_a_burst_within_one_idle_period_of_its_playout_time() -> None:
    """Between the first frame and the burst's start the probe keeps pulling in 10 ms periods
    (a sound card), so the burst starts within 10 ms of its playout time, whatever the phase of
    the arrivals (it does not wait for the next frame to come)."""
    for network_s in (0.030, 0.0345, 0.039):
        sender = BurstSender(tone_reel())
        wall0 = 1_700_000_000.0
        sender.start(5, now=0.0, wall_s=wall0, duration_s=1.0, rng=random.Random(1))
        probe = VoiceProbe()
        # Every frame after the first comes 12 ms later than it: the burst's playout time
        # (first arrival + start delay) falls between two arrivals.
        pending = [
            (0.02 * (i + 1) + network_s + (0.012 if i else 0.0), f)
            for i, f in enumerate(sender.due(1.0))
        ]
        first_arrival, started = pending[0][0], None
        now = 0.0
        while started is None and now < 1.0:
            while pending and pending[0][0] <= now:
                probe.receive(pending.pop(0)[1], now)
            due_now = probe.active and now >= probe.next_pull
            if due_now and probe.pull(now, wall0 + now).item.kind is not PlayoutKind.SILENCE:
                started = now
            now += 0.0005
        due = first_arrival + PROBE_JITTER.start_delay_ms / 1000.0
        assert started is not None and due <= started < due + 0.0105, (network_s, started, due)
