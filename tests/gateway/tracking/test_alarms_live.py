"""Alarms and live status, with an injected clock."""

from __future__ import annotations

from gateway.tracking.alarms import AlarmConfig, AlarmEngine
from gateway.tracking.live import LiveConfig, LiveTracker
from gateway.tracking.model import Fix, StatusReport

LAT, LON = 30.8712, 120.1305
M_LAT = 1 / 111_195.0


def fix(t: float, lat: float = LAT, bat: int | None = None, device: str = "T001") -> Fix:
    return Fix(device, t, lat, LON, battery=bat)


def kinds(events: list) -> list[tuple[str, bool]]:  # type: ignore[type-arg]
    return [(e.type, e.active) for e in events]


def test_low_battery_has_hysteresis() -> None:
    engine = AlarmEngine(AlarmConfig(no_movement_s=None))
    assert engine.on_fix(fix(0, bat=30), None) == []
    assert kinds(engine.on_fix(fix(5, bat=20), None)) == [("low_battery", True)]
    assert engine.on_fix(fix(10, bat=19), None) == []  # raised once
    assert engine.on_fix(fix(15, bat=23), None) == []  # not yet cleared
    assert kinds(engine.on_fix(fix(20, bat=25), None)) == [("low_battery", False)]


def test_left_grid_raised_outside_and_cleared_back_inside() -> None:
    engine = AlarmEngine(AlarmConfig(no_movement_s=None))
    assert engine.on_fix(fix(0), True) == []
    events = engine.on_fix(fix(5, LAT + 0.01), False)
    assert kinds(events) == [("left_grid", True)]
    assert events[0].lat == LAT + 0.01
    assert engine.on_fix(fix(10, LAT + 0.01), False) == []
    assert kinds(engine.on_fix(fix(15), True)) == [("left_grid", False)]
    assert engine.on_fix(fix(20, LAT + 0.02), None) == []  # no assigned grid: no opinion


def test_no_movement_means_possible_man_down() -> None:
    engine = AlarmEngine(AlarmConfig(no_movement_s=600, no_movement_radius_m=25))
    events = []
    for t in range(0, 600, 5):  # wandering within 10 m for 595 s
        events += engine.on_fix(fix(t, LAT + (t % 3) * 5 * M_LAT), None)
    assert events == []
    raised = engine.on_fix(fix(600, LAT + 10 * M_LAT), None)
    assert kinds(raised) == [("no_movement", True)] and raised[0].data["still_s"] == 600
    assert engine.on_fix(fix(605), None) == []
    assert kinds(engine.on_fix(fix(610, LAT + 40 * M_LAT), None)) == [("no_movement", False)]


def test_offline_too_long_needs_the_clock_and_clears_when_back() -> None:
    engine = AlarmEngine(AlarmConfig(offline_too_long_s=900))
    engine.on_fix(fix(0), None)
    assert engine.on_status("T001", "unknown", 120) == []
    assert engine.tick(1000) == []  # 880 s
    events = engine.tick(1021)
    assert kinds(events) == [("offline_too_long", True)] and events[0].data["offline_s"] == 901
    assert engine.tick(2000) == []
    assert engine.on_status("T001", "offline", 2100) == []  # still the same episode
    assert kinds(engine.on_status("T001", "online", 3000)) == [("offline_too_long", False)]


def test_sos_carries_the_last_known_position() -> None:
    engine = AlarmEngine()
    engine.on_fix(fix(0, LAT + 0.001), None)
    raised = engine.on_sos("T001", True, 10)
    assert kinds(raised) == [("sos", True)] and raised[0].lat == LAT + 0.001
    assert engine.on_sos("T001", True, 11) == []
    assert kinds(engine.on_sos("T001", False, 20)) == [("sos", False)]
    assert kinds(engine.on_sos("T009", True, 20)) == [("sos", True)]  # position unknown: None


def test_late_points_do_not_raise_alarms() -> None:
    engine = AlarmEngine(AlarmConfig(no_movement_s=None))
    engine.on_fix(fix(100, bat=80), True)
    assert engine.on_fix(fix(50, bat=5), False) == []


def test_live_status_follows_timeouts_and_reports() -> None:
    live = LiveTracker(LiveConfig(online_timeout_s=120, offline_timeout_s=600))
    changes = live.on_fix(fix(1000, bat=70), now=1000)
    assert [(c.device, c.state) for c in changes] == [("T001", "online")]
    assert live.on_fix(fix(1005), now=1005) == []
    assert live.tick(1100) == []
    assert [(c.state, c.reason) for c in live.tick(1125)] == [("unknown", "timeout")]
    assert [(c.state, c.reason) for c in live.tick(1605)] == [("offline", "timeout")]
    assert live.devices["T001"].fix is not None and live.devices["T001"].battery == 70
    assert [c.state for c in live.on_seen("T001", 1700)] == ["online"]
    report = StatusReport("T001", "offline", 1710, reason="lost")
    assert [(c.state, c.reason) for c in live.on_status(report, 1710)] == [("offline", "lost")]


def test_live_keeps_the_newest_fix_even_when_late_points_arrive() -> None:
    live = LiveTracker()
    live.on_fix(fix(1000, LAT + 0.001), now=1000)
    live.on_fix(fix(900), now=1001)
    newest = live.devices["T001"].fix
    assert newest is not None and newest.fix_time == 1000
    live.seed(fix(800, device="T002"), now=1002)
    assert live.state("T002") == "unknown" and live.devices["T002"].fix is not None
