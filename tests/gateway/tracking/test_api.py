"""The tracking API on the assembled gateway: managed mosquitto with accounts and ACL, SQLite,
a terminal logging in with its secret and sending all three formats."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import gpxpy
import pytest
from fastapi.testclient import TestClient

from devices.client import TerminalClient
from gateway.api import create_app
from gateway.service import GatewayService, ServiceConfig
from gateway.tracking.config import TrackingConfig
from gateway.tracking.formats import nmea_checksum
from protocol.org import default_org
from tests.gateway.signin import client as signin_client
from tests.gateway.signin import sign_in

ORG = default_org()
LON, LAT = ORG.grids["grid-01"].centre
M_LAT = 1 / 111_195.0


def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, GatewayService]]:
    config = ServiceConfig(
        data_dir=tmp_path,
        device_poll_s=0.2,
        record=False,
        tracking=TrackingConfig(live_push_interval_s=0.0, tick_interval_s=0.2),
    )
    service = GatewayService(config)
    try:
        with signin_client(create_app(service)) as client:
            sign_in(client, service, "admin")
            yield client, service
    finally:
        service.close()


def beacon(ts: float, lat: float, lon: float = LON, **extra: object) -> bytes:
    return json.dumps({"v": 1, "ts": int(ts * 1000), "lat": lat, "lon": lon, **extra}).encode()


def test_terminal_to_replay_exports_geofences_coverage_and_stream(
    api: tuple[TestClient, GatewayService],
) -> None:
    http, service = api
    secret = http.post(
        "/api/devices", json={"id": "T001", "unit": "grid-01", "role": "officer"}
    ).json()["secret"]
    tracking = service.tracking
    assert tracking is not None
    until(lambda: tracking.ready.is_set() and "T001" in tracking.devices)
    assert service.broker is not None
    terminal = TerminalClient("T001", secret, service.broker.host, service.broker.port)
    terminal.connect()
    try:
        now = time.time()
        start = now - 600
        with http.websocket_connect("ws://localhost/api/tracking/stream") as ws:
            for i in range(60):  # 5 minutes walking north at 1.2 m/s
                info = terminal.publish_raw(
                    "xixin/v1/dev/T001/gps",
                    beacon(start + 5 * i, LAT + 6 * i * M_LAT, bat=90, acc=5.0),
                    qos=1,
                )
                info.wait_for_publish(5)
            clock = time.gmtime(start + 400)
            lat_field = f"{int(LAT):02d}{(LAT - int(LAT)) * 60 + 0.2:07.4f}"  # ~370 m on
            lon_field = f"{int(LON):03d}{(LON - int(LON)) * 60:07.4f}"
            rmc = nmea_checksum(
                f"GPRMC,{time.strftime('%H%M%S', clock)},A,{lat_field},N,{lon_field},E,"
                f"002.0,000.0,{time.strftime('%d%m%y', clock)},,"
            )
            terminal.publish_raw("xixin/v1/dev/T001/nmea", rmc.encode(), qos=1).wait_for_publish(5)
            location = {"_type": "location", "tst": int(start + 420), "lat": LAT + 0.0035,
                        "lon": LON, "acc": 10, "batt": 88, "tid": "T1"}  # fmt: skip
            terminal.publish_raw(
                "owntracks/T001/phone", json.dumps(location).encode(), qos=1
            ).wait_for_publish(5)
            until(lambda: tracking.writer.inserted >= 62)
            kinds = set()
            while "position" not in kinds:
                kinds.add(ws.receive_json()["kind"])
            assert kinds <= {"position", "status", "alarm", "geofence"}

        stats = http.get("/api/tracking/stats").json()
        assert stats["received"] == {"native": 60, "nmea": 1, "owntracks": 1}
        assert stats["stored"] == 62 and stats["filtered"] == {}

        (live,) = [d for d in http.get("/api/tracking/live").json() if d["device"] == "T001"]
        assert live["state"] == "online" and live["position"]["source"] == "owntracks"
        assert "grid-01" in live["geofences"]

        query = {"start": start - 1, "end": now + 1}
        full = http.get("/api/tracking/devices/T001/replay", params=query).json()
        assert full["points"] == 62 and len(full["segments"]) == 1
        coarse = http.get("/api/tracking/devices/T001/replay", params=query | {"zoom": 12}).json()
        assert coarse["source_points"] == 62 and coarse["points"] < 10
        assert http.get("/api/tracking/devices/T001/replay",
                        params={"start": now, "end": now - 5}).status_code == 422  # fmt: skip
        assert http.get("/api/tracking/devices/NOPE/replay", params=query).status_code == 404

        summary = http.get("/api/tracking/devices/T001/summary", params=query).json()
        assert summary["distance_m"] == pytest.approx(59 * 6 + 2 * 0.0005 * 111_195, rel=0.3)

        gpx = http.get("/api/tracking/devices/T001/export.gpx", params=query)
        assert gpx.headers["content-type"].startswith("application/gpx+xml")
        assert len(gpxpy.parse(gpx.text).tracks[0].segments[0].points) == 62
        geojson = http.get("/api/tracking/devices/T001/export.geojson", params=query).json()
        coords = geojson["features"][0]["geometry"]["coordinates"]
        assert coords[0][:2] == [LON, LAT]  # [lon, lat]
        rows = list(csv.DictReader(io.StringIO(
            http.get("/api/tracking/devices/T001/export.csv", params=query).text)))  # fmt: skip
        assert len(rows) == 62
        assert http.get("/api/tracking/devices/T001/export.kml", params=query).status_code == 422

        # a custom circle around the start: visible in the list, refused twice, deleted
        circle = {"id": "start", "kind": "circle", "coordinates": [[LON, LAT]], "radius_m": 40}
        assert http.post("/api/tracking/geofences", json=circle).status_code == 201
        assert http.post("/api/tracking/geofences", json=circle).status_code == 409
        grid = {"id": "grid-01", "kind": "circle", "coordinates": [[LON, LAT]], "radius_m": 4}
        assert http.post("/api/tracking/geofences", json=grid).status_code == 409
        bad = {"id": "bad", "kind": "circle", "coordinates": [[LON, LAT]]}
        assert http.post("/api/tracking/geofences", json=bad).status_code == 422
        fences = {f["id"]: f for f in http.get("/api/tracking/geofences").json()}
        assert fences["start"]["kind"] == "circle" and fences["grid-05"]["kind"] == "grid"
        assert http.delete("/api/tracking/geofences/start").status_code == 204
        assert http.delete("/api/tracking/geofences/start").status_code == 404

        checkpoint = {"id": "cp-gate", "grid": "grid-01", "name": "Gate", "lat": LAT + 0.001,
                      "lon": LON, "radius_m": 20, "required_visits": 1}  # fmt: skip
        assert http.post("/api/tracking/checkpoints", json=checkpoint).status_code == 201
        missed = checkpoint | {"id": "cp-far", "lat": LAT - 0.002}
        assert http.post("/api/tracking/checkpoints", json=missed).status_code == 201
        assert http.post("/api/tracking/checkpoints",
                         json=missed | {"grid": "grid-99"}).status_code == 422  # fmt: skip
        (report,) = http.get("/api/tracking/coverage", params=query).json()
        status = {c["id"]: c["status"] for c in report["checkpoints"]}
        assert status == {"cp-gate": "visited", "cp-far": "missed"}
        assert report["officers"][0]["device"] == "T001"
        today = datetime.fromtimestamp(now, UTC).date().isoformat()
        shifts = http.get("/api/tracking/coverage", params={"date": today}).json()
        assert [s["shift"]["name"] for s in shifts] == ["day", "night"]
        coverage_csv = http.get("/api/tracking/coverage.csv", params=query).text
        assert coverage_csv.splitlines()[0].startswith("shift,") and "cp-far" in coverage_csv
        assert http.get("/api/tracking/coverage").status_code == 422

        # SOS through the control plane: stored as a tracking alarm with the last position
        terminal.sos(True)
        until(lambda: http.get("/api/tracking/events", params={"kind": "alarm"}).json())
        (sos,) = http.get("/api/tracking/events", params={"kind": "alarm"}).json()
        assert sos["type"] == "sos" and sos["lat"] == pytest.approx(LAT + 0.0035)

        metrics = http.get("/metrics").text
        assert 'xixin_beacons_received_total{format="native"} 60.0' in metrics
    finally:
        terminal.disconnect()


def test_a_failing_tracking_database_answers_503(api: tuple[TestClient, GatewayService]) -> None:
    http, service = api
    assert service.tracking is not None
    with service.tracking.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE checkpoints")
    listed = http.get("/api/tracking/checkpoints")
    assert listed.status_code == 503
    assert listed.json()["detail"].startswith("tracking database: reading checkpoints failed")
    checkpoint = {"id": "cp-1", "grid": "grid-01", "name": "Gate", "lat": LAT, "lon": LON,
                  "radius_m": 20, "required_visits": 1}  # fmt: skip
    assert http.post("/api/tracking/checkpoints", json=checkpoint).status_code == 503
    assert http.delete("/api/tracking/checkpoints/cp-1").status_code == 503
    assert http.get("/api/tracking/coverage", params={"start": 0, "end": 60}).status_code == 503


def test_coverage_windows_out_of_range_answer_422_before_any_query(
    api: tuple[TestClient, GatewayService],
) -> None:
    http, _ = api
    for route in ("/api/tracking/coverage", "/api/tracking/coverage.csv"):
        # (nan and inf are refused by the query parameters: test_api_bad_input.py)
        for query in ({"start": 0, "end": 1e12}, {"start": 0, "end": 40 * 86_400},
                      {"date": "9999-12-31"}, {"date": "0001-01-01"}):  # fmt: skip
            answer = http.get(route, params=query)
            assert answer.status_code == 422, (route, query, answer.text)
            assert "shift" in answer.json()["detail"]
