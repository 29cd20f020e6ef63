"""The audit trail: rows from the gateway's events (acks, status messages, revokes), written
through the durable writer, queried and exported."""

from __future__ import annotations

import time

from gateway.auth.audit import AuditQuery, AuditWriter, audit_csv, find_audit, from_gateway_events
from gateway.events import GatewayEvent
from gateway.store.db import create_db_engine, migrate


def test_gateway_events_become_audit_rows() -> None:
    rows = from_gateway_events(
        [
            GatewayEvent("command_ack", "T001", 1000, {"re": "c1", "ok": True, "cmd": "text"}),
            GatewayEvent(
                "command_ack",
                "T002",
                2000,
                {"re": "c2", "ok": False, "cmd": "config", "detail": "unknown key"},
            ),
            GatewayEvent("status_msg", "T003", 3000, {"code": 12, "text": "arrived at gate"}),
            GatewayEvent("floor", "T004", 4000, {"floor": "grid-01", "event": "revoked"}),
            GatewayEvent("floor", "T004", 5000, {"floor": "grid-01", "event": "granted"}),
            GatewayEvent("presence", "T004", 6000, {"state": "online"}),
            GatewayEvent("command", "T001", 7000, {"id": "c3", "cmd": "text"}),  # the API's
        ]
    )
    assert [(r.ts, r.actor, r.action, r.target, r.result) for r in rows] == [
        (1.0, "T001", "command_ack", "c1", "ack"),
        (2.0, "T002", "command_ack", "c2", "nak"),
        (3.0, "T003", "status_msg", None, "ok"),
        (4.0, "system", "floor_revoked", "grid-01", "ok"),
    ]
    assert rows[2].detail == {"code": 12, "text": "arrived at gate"}


def test_written_durably_queried_and_exported(tmp_path: object) -> None:
    engine = create_db_engine("sqlite://")
    migrate(engine)
    writer = AuditWriter(engine, clock=lambda: 100.0)
    writer.start()
    try:
        writer.record("wang", "sign_in", "session", "ok", {"client": "10.0.0.7"})
        writer.record("li", "command", "T001", "denied", {"cmd": "stun"})
        writer.observe_gateway_events([GatewayEvent("status_msg", "T009", 200_000, {"code": 1})])
        deadline = time.monotonic() + 5
        while writer.backlog and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        writer.stop()
    rows = find_audit(engine, AuditQuery())
    assert [(r["actor"], r["action"]) for r in rows] == [
        ("T009", "status_msg"), ("li", "command"), ("wang", "sign_in"),
    ]  # fmt: skip
    assert rows[2]["detail"] == {"client": "10.0.0.7"}
    assert [r["actor"] for r in find_audit(engine, AuditQuery(action="command"))] == ["li"]
    assert find_audit(engine, AuditQuery(since=150.0))[0]["actor"] == "T009"
    text = audit_csv(rows)
    assert text.splitlines()[0] == "id,ts,actor,action,target,result,detail"
    assert '"{""client"": ""10.0.0.7""}"' in text
