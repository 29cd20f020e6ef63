"""The alarm queue and the command outbox kept in SQLite and PostgreSQL: what a new process
loads is what the previous one left (open alarms with their position and state, unfinished
commands, who is stunned, the numbering)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy

from gateway.alarms.desk import AlarmDesk
from gateway.alarms.store import AlarmFilter
from gateway.command_store import CommandWriter, device_commands, load_outbox
from gateway.control.commands import CommandRecord
from gateway.events import GatewayEvent
from gateway.store.registry import DeviceRegistry
from gateway.tracking.model import Fix, TrackingEvent
from protocol.org import default_org

ORG = default_org()


def desk(engine: sqlalchemy.Engine, journal: Path, clock: list[float]) -> AlarmDesk:
    made = AlarmDesk(
        engine, ORG, lambda device: "grid-01", journal_dir=journal, clock=lambda: clock[0],
        last_fix=lambda device: Fix(device, 50.0, 30.5, 104.5),
    )  # fmt: skip
    made.load()
    made.start()
    return made


def test_open_alarms_outlive_the_process(engine: sqlalchemy.Engine, tmp_path: Path) -> None:
    clock = [100.0]
    first = desk(engine, tmp_path / "j", clock)
    try:
        first.on_tracking_events(
            [
                TrackingEvent("alarm", "sos", "T001", 99.0, lat=30.5, lon=104.5),
                TrackingEvent("alarm", "low_battery", "T002", 99.0),
                TrackingEvent("geofence", "enter", "T002", 99.0, geofence="x"),
            ]
        )
        clock[0] = 110.0
        asyncio.run(first.acknowledge(1, "wang"))
        asyncio.run(first.acknowledge(2, "wang"))
        asyncio.run(first.close(2, "wang", "valid", "charged it"))
        assert first.writer.core.wait_caught_up(10)
    finally:
        first.stop()
    second = desk(engine, tmp_path / "j", clock)
    try:
        (sos,) = second.queue.open_alarms()
        assert (sos.id, sos.state, sos.acknowledged_by, sos.acknowledged_at) == (
            1, "acknowledged", "wang", 110.0,
        )  # fmt: skip
        assert sos.position is not None and sos.position.at == 50.0  # the fix's own time
        every = asyncio.run(second.find(AlarmFilter(open_only=False)))
        assert [(a.id, a.state, a.note) for a in every] == [
            (2, "closed", "charged it"), (1, "acknowledged", None),
        ]  # fmt: skip
        in_grid = asyncio.run(second.find(AlarmFilter(units=frozenset({"grid-02"}))))
        assert in_grid == []
        second.on_tracking_events([TrackingEvent("alarm", "left_grid", "T003", 120.0)])
        assert second.queue.get(3).kind == "left_grid"  # numbering goes on
    finally:
        second.stop()


def test_the_outbox_outlives_the_process(engine: sqlalchemy.Engine, tmp_path: Path) -> None:
    DeviceRegistry(engine, ORG).add("T001", "grid-01", "officer")
    writer = CommandWriter(engine, journal_dir=tmp_path / "c")
    writer.start()
    try:

        def event(record: CommandRecord) -> GatewayEvent:
            return GatewayEvent("command", record.device, 0, {"command": record.as_dict()})

        queued = CommandRecord("c1", 1, "T001", "text", {"text": "集合"}, "queued", 1.0, "li", 1.0)
        stun = CommandRecord("c2", 2, "T001", "stun", {}, "pending", 2.0, "li", 2.0)
        done = CommandRecord("c2", 2, "T001", "stun", {}, "acknowledged", 2.0, "li", 3.0)
        writer.observe_gateway_events(
            [event(queued), event(stun), GatewayEvent("stun", "T001", 0, {"stunned": True})]
        )
        writer.observe_gateway_events([event(done)])
        asyncio.run(writer.durable())
        assert writer.core.wait_caught_up(10)
    finally:
        writer.stop()
    records, stunned, last = load_outbox(engine)
    assert [r.id for r in records] == ["c1"] and records[0].args == {"text": "集合"}
    assert stunned == ["T001"] and last == 2
    assert [(r.id, r.state) for r in device_commands(engine, "T001")] == [
        ("c2", "acknowledged"), ("c1", "queued"),
    ]  # fmt: skip
