"""Commands to terminals (§5.4) with feedback, sans-I/O: a persistent outbox.

Each command is a `CommandRecord`: `queued` while its terminal is offline (delivered when its
status goes online), `pending` once sent, then `acknowledged` (ack ok), `failed` (ack not ok) or
`timed_out` (no ack within `ack_timeout_s` while the terminal stayed online). A pending command
whose terminal goes offline is queued again (at least once: a terminal may see it twice).
Every change is a `command` event carrying the record; the runner's sinks store it
(gateway/store/commands.py) and stream it. Times are wall-clock epoch seconds (records outlive
the process); who is stunned is kept here and on the device record (a `stun` event).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final, Literal

from gateway.control.output import Output
from protocol.control import CommandAck, ControlError, encode

CommandState = Literal["queued", "pending", "acknowledged", "failed", "timed_out"]
OPEN_STATES: Final = frozenset({"queued", "pending"})
#: How long a sent command waits for its ack (the terminal online all along) by default.
ACK_TIMEOUT_S: Final = 30.0
#: Finished records kept in memory for the API (older ones are read from the database).
RECENT_LIMIT: Final = 5000


@dataclass(frozen=True, slots=True)
class CommandRecord:
    id: str
    seq: int
    device: str
    command: str
    args: dict[str, Any]
    state: CommandState
    created_at: float
    created_by: str
    updated_at: float
    result: dict[str, Any] | None = None
    deadline: float | None = field(default=None, compare=False)  # pending: when it times out

    def as_dict(self) -> dict[str, Any]:
        """The API's and the hub's `Command`."""
        return {
            "id": self.id,
            "device": self.device,
            "command": self.command,
            "args": self.args,
            "state": self.state,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "updated_at": self.updated_at,
            "result": self.result,
        }


class Commands:
    """The outbox: numbered commands, their state, their acks, and who is stunned."""

    def __init__(self, out: Output, ack_timeout_s: float = ACK_TIMEOUT_S) -> None:
        self._out = out
        self.ack_timeout_s = ack_timeout_s
        self._open: dict[str, CommandRecord] = {}
        self._recent: OrderedDict[str, CommandRecord] = OrderedDict()
        self._pending: dict[str, tuple[str, str]] = {}  # id -> (device, cmd), awaiting ack
        self._stunned: set[str] = set()
        self.pending: Mapping[str, tuple[str, str]] = MappingProxyType(self._pending)
        #: how many commands were ever issued (the next id is c<issued + 1>)
        self.issued = 0

    # ---- state --------------------------------------------------------------------------------

    @property
    def stunned(self) -> Set[str]:
        return self._stunned

    def load(self, records: Iterable[CommandRecord], stunned: Iterable[str], issued: int) -> None:
        """Take what a previous run left: its unfinished commands, who is stunned, the count."""
        for record in records:
            if record.state == "pending":
                # its deadline restarts: the terminal may answer the new process
                record = replace(record, deadline=None)
                self._pending[record.id] = (record.device, record.command)
            self._open[record.id] = record
            self._remember(record)
        self._stunned.update(stunned)
        self.issued = max(self.issued, issued)

    def get(self, command_id: str) -> CommandRecord:
        """A command this process issued or loaded (KeyError for an old one)."""
        return self._recent[command_id]

    def records(self, device: str) -> list[CommandRecord]:
        """The device's commands this process knows (open ones and recent finished ones)."""
        return [r for r in self._recent.values() if r.device == device]

    def queued(self, device: str) -> list[CommandRecord]:
        return [r for r in self._open.values() if r.device == device and r.state == "queued"]

    def _remember(self, record: CommandRecord) -> None:
        self._recent[record.id] = record
        self._recent.move_to_end(record.id)
        while len(self._recent) > RECENT_LIMIT:
            self._recent.popitem(last=False)

    def _change(self, record: CommandRecord, wall_ms: int) -> None:
        if record.state in OPEN_STATES:
            self._open[record.id] = record
        else:
            self._open.pop(record.id, None)
        if record.state == "pending":
            self._pending[record.id] = (record.device, record.command)
        else:
            self._pending.pop(record.id, None)
        self._remember(record)
        self._out.event("command", record.device, wall_ms, {"command": record.as_dict()})

    # ---- transitions ------------------------------------------------------------------------

    def issue(
        self,
        device: str,
        cmd: str,
        fields: Mapping[str, Any],
        wall_ms: int = 0,
        *,
        online: bool = True,
        by: str = "gateway",
    ) -> tuple[str, bytes | None]:
        """Number a command and note it; returns its id and, when its terminal is online, the
        payload to publish now (None: queued until it is). A stun or revive takes effect at
        once. One that cannot be encoded changes nothing (ControlError)."""
        command_id = f"c{self.issued + 1}"
        payload = self._encode(command_id, cmd, fields)
        self.issued += 1
        now = wall_ms / 1000
        record = CommandRecord(
            command_id, self.issued, device, cmd, dict(fields),
            "pending" if online else "queued", now, by, now,
            deadline=now + self.ack_timeout_s if online else None,
        )  # fmt: skip
        if cmd in ("stun", "revive") and (cmd == "stun") != (device in self._stunned):
            if cmd == "stun":
                self._stunned.add(device)
            else:
                self._stunned.discard(device)
            self._out.event("stun", device, wall_ms, {"stunned": cmd == "stun"})
        self._change(record, wall_ms)
        return command_id, payload if online else None

    @staticmethod
    def _encode(command_id: str, cmd: str, fields: Mapping[str, Any]) -> bytes:
        try:
            return encode("command", id=command_id, cmd=cmd, **fields)
        except (TypeError, ValueError) as exc:
            raise ControlError("bad_field", f"command {cmd!r} cannot be encoded: {exc}") from exc

    def deliver(self, device: str, wall_ms: int) -> list[bytes]:
        """The device came online: its queued commands, oldest first, now pending."""
        now = wall_ms / 1000
        payloads = []
        for record in sorted(self.queued(device), key=lambda r: r.seq):
            payloads.append(self._encode(record.id, record.command, record.args))
            self._change(
                replace(record, state="pending", updated_at=now, deadline=now + self.ack_timeout_s),
                wall_ms,
            )
        for command_id, (owner, _) in list(self._pending.items()):
            record = self._open[command_id]
            if owner == device and record.deadline is None:  # pending from a previous run
                self._open[command_id] = replace(record, deadline=now + self.ack_timeout_s)
        return payloads

    def went_offline(self, device: str, wall_ms: int) -> None:
        """Sent but unanswered commands of a device that went offline wait for it again."""
        now = wall_ms / 1000
        for command_id, (owner, _) in list(self._pending.items()):
            if owner == device:
                record = self._open[command_id]
                self._change(
                    replace(record, state="queued", updated_at=now, deadline=None), wall_ms
                )

    def ack(self, device: str, request: CommandAck, wall_ms: int) -> None:
        sent = self._pending.get(request.re)
        if sent is not None and sent[0] == device:
            record = self._open[request.re]
            result = request.result()
            if request.detail is not None:
                result = (result or {}) | {"detail": request.detail}
            self._change(
                replace(
                    record,
                    state="acknowledged" if request.ok else "failed",
                    updated_at=wall_ms / 1000,
                    result=result,
                    deadline=None,
                ),
                wall_ms,
            )
        self._out.event(
            "command_ack",
            device,
            wall_ms,
            {
                "re": request.re,
                "ok": request.ok,
                "detail": request.detail,
                "cmd": sent[1] if sent and sent[0] == device else None,
            },
        )

    def tick(self, wall_ms: int) -> None:
        """Time out sent commands whose ack is overdue."""
        now = wall_ms / 1000
        for command_id in list(self._pending):
            record = self._open[command_id]
            if record.deadline is not None and record.deadline <= now:
                self._change(
                    replace(record, state="timed_out", updated_at=now, deadline=None), wall_ms
                )

    def next_deadline(self) -> float | None:
        deadlines = [r.deadline for r in self._open.values() if r.deadline is not None]
        return min(deadlines) if deadlines else None
