"""FloorTable: the one owner of floors, passing each change on to the relay's routes."""

from __future__ import annotations

import pytest

from gateway.floor import Floor, Priority
from gateway.floors import FloorTable, Target
from protocol.keys import call_key


class RecordingRoutes:
    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    def add_talkgroup(self, tg: str, floor: Floor) -> None:
        self.log.append(("add_talkgroup", tg))

    def add_call(self, key: str, floor: Floor, parties: tuple[str, str]) -> None:
        self.log.append(("add_call", key))

    def remove_call(self, key: str) -> None:
        self.log.append(("remove_call", key))


def test_changes_reach_the_routes_and_lookups_see_both_kinds() -> None:
    routes = RecordingRoutes()
    table = FloorTable(routes)
    tg, call = Floor("grid-01"), Floor("call:T001:T004")
    table.add_talkgroup("grid-01", tg)
    table.add_call("call:T001:T004", call, ("T001", "T004"))
    assert routes.log == [("add_talkgroup", "grid-01"), ("add_call", "call:T001:T004")]
    assert table.get("grid-01") is tg and table["call:T001:T004"] is call
    assert table.get("nope") is None and "nope" not in table
    with pytest.raises(KeyError):
        table["nope"]
    assert len(table) == 2 and list(table) == ["grid-01", "call:T001:T004"]
    assert table.is_call("call:T001:T004") and not table.is_call("grid-01")
    assert table.target("grid-01") == Target(tg="grid-01")
    assert table.target("call:T001:T004").field_for("T004") == {"call": "T001"}
    assert table.items() == [("grid-01", tg), ("call:T001:T004", call)]

    assert table.remove_call("call:T001:T004") is call
    assert routes.log[-1] == ("remove_call", "call:T001:T004")
    assert "call:T001:T004" not in table.calls and "call:T001:T004" not in table.targets
    assert table.remove_call("call:T001:T004") is None


def test_views_are_read_only() -> None:
    table = FloorTable()
    table.add_talkgroup("grid-01", Floor("grid-01"))
    with pytest.raises(TypeError):
        table.talkgroups["grid-02"] = Floor("grid-02")  # type: ignore[index]
    with pytest.raises(TypeError):
        table.targets["grid-02"] = Target(tg="grid-02")  # type: ignore[index]


def test_holding_and_holders() -> None:
    table = FloorTable()
    one, two = Floor("grid-01"), Floor("grid-02")
    table.add_talkgroup("grid-01", one)
    table.add_talkgroup("grid-02", two)
    one.request("T001", Priority.NORMAL, 0.0, "r1")
    one.request("T002", Priority.NORMAL, 0.0, "r2")  # queued behind T001
    assert table.holders() == {"grid-01": "T001"}
    assert table.holding("T002", 0.0) == [("grid-01", one)]
    assert table.holding("T003", 0.0) == []
    two.request("T003", Priority.NORMAL, 0.0, "r3")
    two.release("T003", 1.0, "r4")  # its frames may still come for the release tail
    assert table.holding("T003", 1.5) == [("grid-02", two)]
    assert table.holding("T003", 2.0) == []


def test_call_key_is_the_same_either_way() -> None:
    assert call_key("T004", "T001") == call_key("T001", "T004") == "call:T001:T004"
