"""/api/health and /metrics on the assembled service: degraded with a reason while a database
writer is in outage (a real SQLite file write-locked by another connection), ok after; broker
restarts shown."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from gateway.events import GatewayEvent
from gateway.service import GatewayService

DEADLINE_S = 60.0


def until(predicate: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def test_health_is_degraded_while_the_event_writer_cannot_write_and_ok_after(
    api: tuple[TestClient, GatewayService],
) -> None:
    http, service = api
    until(lambda: http.get("/api/health").json()["status"] == "ok", "a healthy gateway")
    assert http.get("/api/health").json()["problems"] == []
    db_file = service.config.data_dir / "xixin.db"
    holder = sqlite3.connect(db_file, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the database
    try:
        now_ms = int(time.time() * 1000)
        service.writer.submit(
            [GatewayEvent("presence", "T001", now_ms, {"state": "online", "reason": None})]
        )
        health = until(
            lambda: (h := http.get("/api/health").json())["status"] == "degraded" and h,
            "degraded health",
        )
        [problem] = health["problems"]
        assert re.fullmatch(
            # journal first: the event is on disk before the database is tried
            r"event writer: database unreachable for \d+ s, 1 events waiting \(1 in the journal\)",
            problem,
        ), problem
        assert health["mqtt_connected"] is True
        text = http.get("/metrics").text
        assert metric(text, 'xixin_writer_backlog{writer="events"}') == 1
        assert metric(text, 'xixin_writer_journal_items{writer="events"}') == 1
        assert metric(text, 'xixin_writer_alive{writer="positions"}') == 1
        until(
            lambda: (
                metric(http.get("/metrics").text, 'xixin_writer_outage_seconds{writer="events"}')
                > 0
            ),
            "outage seconds",
        )
        assert service.writer.alive
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    until(lambda: http.get("/api/health").json()["status"] == "ok", "health ok again")
    assert http.get("/api/health").json()["problems"] == []
    assert service.writer.written == 1 and service.writer.backlog == 0
    text = http.get("/metrics").text
    assert metric(text, 'xixin_writer_outage_seconds{writer="events"}') == 0
    assert metric(text, 'xixin_writer_backlog{writer="events"}') == 0


def test_broker_restarts_show_in_health_and_metrics(
    api: tuple[TestClient, GatewayService],
) -> None:
    """The count is ManagedBroker.restarts (tests/gateway/test_broker.py kills a broker)."""
    http, service = api
    until(lambda: http.get("/api/health").json()["status"] == "ok", "a healthy gateway")
    assert http.get("/api/health").json()["broker_restarts"] == 0
    assert metric(http.get("/metrics").text, "xixin_broker_restarts_total") == 0
    broker = service.broker
    assert broker is not None
    broker.restarts = 2  # as the supervisor counts them
    assert http.get("/api/health").json()["broker_restarts"] == 2
    assert metric(http.get("/metrics").text, "xixin_broker_restarts_total") == 2
