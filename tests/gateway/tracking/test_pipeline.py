"""The sans-I/O pipeline: topics in, rows / status / events / live pushes out, clock injected."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from gateway.tracking.alarms import AlarmConfig
from gateway.tracking.checkpoints import ShiftPattern
from gateway.tracking.config import (
    TrackingConfig,
    load_tracking_config,
    tracking_config_from_mapping,
)
from gateway.tracking.errors import TrackingError
from gateway.tracking.live import LiveConfig
from gateway.tracking.pipeline import TrackingPipeline, ingest_subscriptions
from protocol import limits
from protocol.org import default_org

ORG = default_org()
G1 = ORG.grids["grid-01"].centre
G2 = ORG.grids["grid-02"].centre
T0 = 1_764_300_000.0


def pipeline(**config: object) -> TrackingPipeline:
    settings = TrackingConfig(live_push_interval_s=1.0, **config)  # type: ignore[arg-type]
    return TrackingPipeline(
        settings,
        ORG,
        is_device={"T001", "T002"}.__contains__,
        assigned_grid={"T001": "grid-01"}.get,
    )


def gps(ts: float, lon_lat: tuple[float, float], **extra: object) -> bytes:
    lon, lat = lon_lat
    return json.dumps({"v": 1, "ts": int(ts * 1000), "lat": lat, "lon": lon, **extra}).encode()


def test_subscriptions_are_shared_and_qos1() -> None:
    subs = ingest_subscriptions("grp")
    assert ("$share/grp/xixin/v1/dev/+/gps", 1) in subs
    assert ("$share/grp/owntracks/+/+", 1) in subs
    assert ("xixin/v1/dev/+/nmea", 1) in ingest_subscriptions(None)


def test_rows_status_and_coalesced_positions() -> None:
    p = pipeline()
    for i in range(3):
        p.handle("xixin/v1/dev/T001/gps", gps(T0 + i, G1, bat=50), T0 + i)
    assert len(p.take_rows()) == 3 and p.take_rows() == []
    result = p.flush(T0 + 3)
    assert [(c.device, c.state) for c in result.status] == [("T001", "online")]
    assert [f.fix_time for f in result.positions] == [T0 + 2]  # newest only
    p.handle("xixin/v1/dev/T001/gps", gps(T0 + 3, G1), T0 + 3.2)
    assert p.flush(T0 + 3.5).positions == []  # within the push interval
    assert [f.fix_time for f in p.flush(T0 + 4.1).positions] == [T0 + 3]


def test_bad_input_is_counted_never_raised() -> None:
    p = pipeline()
    p.handle("xixin/v1/dev/T001/gps", b"{", T0)
    p.handle("xixin/v1/dev/T009/gps", gps(T0, G1), T0)  # not provisioned
    p.handle("xixin/v1/dev/T001/nmea", b"$GPRMC,bad*00", T0)
    p.handle("owntracks/T001/phone", b'{"_type":"card","name":"x"}', T0)
    p.handle("owntracks/stranger/phone", b'{"_type":"location"}', T0)
    p.handle("xixin/v1/dev/T001/ctrl/up", b"{}", T0)
    p.handle("elsewhere", b"", T0)
    assert dict(p.counters.rejected) == {"bad_json": 1, "unknown_device": 2, "bad_nmea": 1}
    assert p.counters.ignored == 3
    assert p.take_rows() == []


def test_unprovisioned_devices_allowed_when_configured() -> None:
    p = pipeline(require_provisioned=False)
    p.handle("xixin/v1/dev/T009/gps", gps(T0, G1), T0)
    assert len(p.take_rows()) == 1


def test_an_unprovisioned_source_needs_an_id_the_store_can_hold() -> None:
    """Over 32 characters, PostgreSQL would refuse the writer's whole batch, again and again."""
    p = pipeline(require_provisioned=False)
    p.handle(f"xixin/v1/dev/{'X' * 33}/gps", gps(T0, G1), T0)
    p.handle("xixin/v1/dev/T009/gps", gps(T0, G1), T0)
    assert [row[0] for row in p.take_rows()] == ["T009"]  # a row starts with its device
    assert p.counters.rejected["unknown_device"] == 1


def test_native_status_offline_and_back() -> None:
    p = pipeline()
    p.handle("xixin/v1/dev/T001/gps", gps(T0, G1), T0)
    p.flush(T0)
    p.handle("xixin/v1/dev/T001/status", b'{"v":1,"state":"offline","reason":"lost"}', T0 + 5)
    p.handle("xixin/v1/dev/T001/status", b"", T0 + 5)  # retained message cleared: noise
    result = p.flush(T0 + 5)
    assert [(c.state, c.reason) for c in result.status] == [("offline", "lost")]


def test_late_points_are_stored_without_live_effects() -> None:
    p = pipeline()
    p.handle("xixin/v1/dev/T001/gps", gps(T0, G1), T0)
    p.flush(T0)
    outside = (G2[0], G2[1] + 0.01)
    p.handle("xixin/v1/dev/T001/gps", gps(T0 - 600, outside), T0 + 1)  # from the offline buffer
    assert len(p.take_rows()) == 2
    result = p.flush(T0 + 2)
    assert result.events == [] and result.positions == []
    newest = p.live.devices["T001"].fix
    assert newest is not None and newest.fix_time == T0


def test_leaving_the_grid_and_geofence_events_come_out_of_flush() -> None:
    p = pipeline()
    p.handle("xixin/v1/dev/T001/gps", gps(T0, G1), T0)
    p.flush(T0)
    p.handle("xixin/v1/dev/T001/gps", gps(T0 + 120, G2), T0 + 120)
    events = p.flush(T0 + 120).events
    kinds = {(e.kind, e.type, e.geofence) for e in events}
    assert ("alarm", "left_grid", None) in kinds
    assert ("geofence", "exit", "grid-01") in kinds and ("geofence", "enter", "grid-02") in kinds


def test_tick_applies_timeouts_and_offline_alarm() -> None:
    p = pipeline(
        live=LiveConfig(online_timeout_s=60, offline_timeout_s=120),
        alarms=AlarmConfig(offline_too_long_s=300),
    )
    p.handle("xixin/v1/dev/T002/gps", gps(T0, G2), T0)
    p.flush(T0)
    assert [c.state for c in p.tick(T0 + 61).status] == ["unknown"]
    assert [c.state for c in p.tick(T0 + 121).status] == ["offline"]
    alarms = p.tick(T0 + 61 + 300).events
    assert [(e.type, e.active) for e in alarms] == [("offline_too_long", True)]
    p.handle("xixin/v1/dev/T002/gps", gps(T0 + 500, G2), T0 + 500)
    result = p.flush(T0 + 500)
    assert [c.state for c in result.status] == ["online"]
    assert [(e.type, e.active) for e in result.events] == [("offline_too_long", False)]


def test_filtered_points_are_counted_and_not_stored() -> None:
    p = pipeline()
    p.handle("xixin/v1/dev/T001/gps", gps(T0, G1), T0)
    p.handle("xixin/v1/dev/T001/gps", gps(T0, G1), T0)  # duplicate
    p.handle("xixin/v1/dev/T001/gps", gps(T0 + 1, (0.0, 0.0)), T0)  # zero
    p.handle("xixin/v1/dev/T001/gps", gps(T0 + 2, G1, acc=900.0), T0)  # accuracy
    assert len(p.take_rows()) == 1
    assert p.filtered() == {"duplicate": 1, "zero": 1, "accuracy": 1}
    # a filtered point still shows the device is alive
    assert [c.state for c in p.flush(T0).status] == ["online"]


def test_settings_load_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "tracking.yaml"
    path.write_text(
        "filters: {max_speed_mps: 40, min_distance_m: 5, skip_limit_s: 60}\n"
        "alarms: {low_battery_pct: 15}\n"
        "owntracks: {alice/iphone: T001}\n"
        "shifts: [{name: early, start: '06:00', hours: 8}]\n"
        "ingest_workers: 2\n"
    )
    config = load_tracking_config(path)
    assert config.filters.max_speed_mps == 40 and config.filters.min_distance_m == 5
    assert config.filters.max_accuracy_m == 200.0  # untouched default
    assert config.alarms.low_battery_pct == 15 and config.ingest_workers == 2
    assert config.owntracks_pairs() == {("alice", "iphone"): "T001"}
    assert config.shifts == (ShiftPattern("early", "06:00", 8),)
    with pytest.raises(TrackingError, match="unknown setting 'max_sped'"):
        tracking_config_from_mapping({"filters": {"max_sped": 1}})
    with pytest.raises(TrackingError, match="expected a mapping"):
        tracking_config_from_mapping({"live": 3})


BIG = b"1" + b"0" * 400  # a JSON integer no float can hold


def test_numbers_no_float_holds_are_refused_and_the_next_messages_kept() -> None:
    p = pipeline()
    p.handle("xixin/v1/dev/T001/gps", gps(T0, G1), T0)
    p.handle("owntracks/T001/phone", b'{"_type":"location","tst":1,"lat":%s,"lon":1}' % BIG, T0)
    p.handle("owntracks/T001/phone", b'{"_type":"lwt","tst":%s}' % BIG, T0)
    p.handle("xixin/v1/dev/T001/gps", b'{"v":1,"ts":%s,"lat":1,"lon":1}' % BIG, T0)
    p.handle("xixin/v1/dev/T001/gps", gps(T0 + 1, G1), T0 + 1)
    assert dict(p.counters.rejected) == {"bad_field": 3}
    assert [row[1] for row in p.take_rows()] == [T0, T0 + 1]


def test_text_that_cannot_be_stored_is_refused_before_the_filters_count_it() -> None:
    p = pipeline()
    lone_surrogate = b'{"_type":"location","tst":%d,"lat":%f,"lon":%f,"tid":"\\ud800"}' % (
        int(T0), G1[1], G1[0],
    )  # fmt: skip
    p.handle("owntracks/T001/phone", lone_surrogate, T0)
    assert dict(p.counters.rejected) == {"bad_field": 1}
    assert p.filters.accepted == 0 and p.take_rows() == []


def test_deeply_nested_json_is_counted_never_raised() -> None:
    p = pipeline()
    deep = b"[" * 1500 + b"]" * 1500
    p.handle("owntracks/T001/phone", deep, T0)
    p.handle("xixin/v1/dev/T001/gps", b'{"v":1,"ts":1,"lat":1,"lon":1,"x":%s}' % deep, T0)
    p.handle("xixin/v1/dev/T001/status", deep, T0)  # status noise: ignored, as other bad status
    assert dict(p.counters.rejected) == {"bad_json": 2}
    assert p.counters.ignored == 1


def test_a_message_the_pipeline_fails_on_is_counted_logged_once_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def is_device(device: str) -> bool:
        if device == "T666":
            raise RuntimeError("registry bug")
        return device == "T001"

    p = TrackingPipeline(
        TrackingConfig(), ORG, is_device=is_device, assigned_grid={}.get,
        logger=logging.getLogger("test.pipeline"),
    )  # fmt: skip
    with caplog.at_level(logging.DEBUG, logger="test.pipeline"):
        p.handle("xixin/v1/dev/T001/gps", gps(T0, G1), T0)
        p.handle("xixin/v1/dev/T666/gps", gps(T0, G1), T0)
        p.handle("xixin/v1/dev/T666/gps", gps(T0 + 1, G1), T0 + 1)
        p.handle("xixin/v1/dev/T001/gps", gps(T0 + 1, G1), T0 + 1)
    assert dict(p.counters.rejected) == {"internal": 2}
    assert [row[1] for row in p.take_rows()] == [T0, T0 + 1]
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "T666" in record.getMessage() and record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


def test_beacons_over_the_senders_budget_are_refused_and_counted() -> None:
    p = pipeline(require_provisioned=False)
    burst = limits.BEACON_BURST
    for i in range(burst + 5):  # a full offline store at once passes; past the burst, refused
        p.handle("xixin/v1/dev/T001/gps", gps(T0 - 3000 + i, G1), T0)
    assert len(p.take_rows()) == burst
    assert p.counters.rejected == {"rate_limited": 5}
    assert p.counters.received["native"] == burst + 5
    p.handle("xixin/v1/dev/T002/gps", gps(T0, G2), T0)  # another sender is not touched
    p.handle("xixin/v1/dev/T001/nmea", b"not even nmea", T0)  # nor parsed when over budget
    p.handle("owntracks/u/phone", b"{}", T0)
    assert len(p.take_rows()) == 1
    assert p.counters.rejected == {"rate_limited": 6, "unknown_device": 1}  # parsed: in budget
    p.handle("xixin/v1/dev/T001/gps", gps(T0, G1), T0 + 1.0)
    assert len(p.take_rows()) == 1, "the budget refills at its rate"
