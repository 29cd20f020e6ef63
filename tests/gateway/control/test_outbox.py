"""The command outbox, sans-I/O: queued for an offline terminal, pending once sent, then
acknowledged / failed / timed out; queued again when the terminal drops; reloaded after a
restart. The clock is the `wall_ms` passed in."""

from __future__ import annotations

import json
import logging

import pytest

from gateway.control.commands import CommandRecord, Commands
from gateway.control.output import Output
from gateway.metrics import Counters
from protocol.control import CommandAck, ControlError, check_command


def make() -> tuple[Commands, Output]:
    out = Output(Counters(), logging.getLogger("test"))
    return Commands(out, ack_timeout_s=10.0), out


def states(out: Output) -> list[tuple[str, str]]:
    return [
        (e.data["command"]["id"], e.data["command"]["state"])
        for e in out.events
        if e.kind == "command"
    ]


def test_offline_terminal_gets_its_commands_in_order_when_it_is_back() -> None:
    commands, out = make()
    first, payload = commands.issue("T001", "text", {"text": "a"}, 1000, online=False, by="li")
    second, _ = commands.issue("T001", "radio_check", {}, 2000, online=False, by="li")
    assert payload is None and [r.state for r in commands.queued("T001")] == ["queued"] * 2
    assert commands.deliver("T002", 3000) == []
    sent = [json.loads(p) for p in commands.deliver("T001", 3000)]
    assert [(m["id"], m["cmd"]) for m in sent] == [(first, "text"), (second, "radio_check")]
    assert sent[0]["text"] == "a" and commands.pending.keys() == {first, second}
    commands.ack("T001", CommandAck(second, True, None, battery=80, signal=61), 4000)
    done = commands.get(second)
    assert done.state == "acknowledged" and done.result == {"battery": 80, "signal": 61}
    assert done.created_by == "li" and done.updated_at == 4.0
    assert states(out) == [
        (first, "queued"), (second, "queued"), (first, "pending"), (second, "pending"),
        (second, "acknowledged"),
    ]  # fmt: skip


def test_pending_times_out_fails_or_goes_back_to_the_queue() -> None:
    commands, out = make()
    a, _ = commands.issue("T001", "text", {"text": "x"}, 0)
    b, _ = commands.issue("T001", "config", {"settings": {"beacon_interval_s": 5}}, 0)
    c, _ = commands.issue("T002", "stun", {}, 0)
    assert commands.next_deadline() == 10.0
    commands.ack("T001", CommandAck(b, False, "unknown settings"), 1000)
    assert commands.get(b).state == "failed"
    assert commands.get(b).result == {"detail": "unknown settings"}
    commands.ack("T009", CommandAck(c, True, None), 1000)  # not its command: ignored
    commands.went_offline("T002", 2000)
    assert commands.get(c).state == "queued"
    commands.tick(9_999)
    assert commands.get(a).state == "pending"
    commands.tick(10_000)
    assert commands.get(a).state == "timed_out" and commands.get(c).state == "queued"
    assert not commands.pending
    assert (c, "queued") in states(out)


def test_stun_is_noted_once_and_reloaded() -> None:
    commands, out = make()
    commands.issue("T001", "stun", {}, 0, online=False)
    commands.issue("T001", "stun", {}, 0, online=False)
    assert commands.stunned == {"T001"}
    assert [e.data for e in out.events if e.kind == "stun"] == [{"stunned": True}]
    restored, _ = make()
    open_records = [r for r in (commands.get("c1"), commands.get("c2"))]
    restored.load(open_records, ["T001"], issued=2)
    assert restored.stunned == {"T001"} and restored.issue("T001", "revive", {}, 0)[0] == "c3"
    assert restored.stunned == set()
    # a command pending in the previous run waits for its ack again, with a fresh deadline
    pending = CommandRecord("c7", 7, "T002", "text", {"text": "y"}, "pending", 0.0, "a", 0.0)
    again, _ = make()
    again.load([pending], [], issued=7)
    again.tick(10_000_000)
    assert again.get("c7").state == "pending"  # no deadline until the terminal is back
    again.deliver("T002", 20_000)
    again.tick(30_000)
    assert again.get("c7").state == "timed_out"


@pytest.mark.parametrize(
    ("cmd", "fields", "words"),
    [
        ("text", {}, "needs 'text'"),
        ("text", {"text": "   "}, "non-empty"),
        ("shout", {}, "unknown command"),
        ("stun", {"x": 1}, "no field x"),
        ("config", {"settings": {"volume": 3}}, "unknown settings"),
        ("config", {"settings": {"beacon_interval_s": 0}}, "beacon_interval_s"),
        ("config", {"settings": {}}, "non-empty"),
        ("status", {"text": "x"}, "needs 'code'"),
        ("status", {"code": "x" * 33}, "at most 32"),
        ("assign", {}, "needs 'incident'"),
    ],
)
def test_invalid_commands_are_refused(cmd: str, fields: dict[str, object], words: str) -> None:
    with pytest.raises(ControlError) as caught:
        check_command(cmd, fields)
    assert caught.value.code == "bad_field" and words in caught.value.message


def test_valid_commands_pass() -> None:
    for cmd, fields in [
        ("text", {"text": "hi"}),
        ("radio_check", {}),
        ("status", {"code": "return_to_base", "text": "now"}),
        ("config", {"settings": {"beacon_interval_s": 30}}),
        ("assign", {"incident": 1}),
    ]:
        check_command(cmd, fields)
