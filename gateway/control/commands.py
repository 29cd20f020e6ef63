"""Commands to terminals (§5.4): their ids, the acks that answer them, who is stunned."""

from __future__ import annotations

from collections.abc import Mapping, Set
from types import MappingProxyType
from typing import Any

from gateway.control.output import Output
from protocol.control import CommandAck, ControlError, encode


class Commands:
    def __init__(self, out: Output) -> None:
        self._out = out
        self._pending: dict[str, tuple[str, str]] = {}  # id -> (device, cmd)
        self._stunned: set[str] = set()
        self.pending: Mapping[str, tuple[str, str]] = MappingProxyType(self._pending)
        #: how many commands were issued (the next id is c<issued + 1>)
        self.issued = 0

    @property
    def stunned(self) -> Set[str]:
        return self._stunned

    def issue(self, device: str, cmd: str, fields: Mapping[str, Any]) -> tuple[str, bytes]:
        """Number and encode a `command`, remember it for its ack, and note a stun or revive;
        returns its id and payload. One that cannot be encoded changes nothing (ControlError)."""
        command_id = f"c{self.issued + 1}"
        try:
            payload = encode("command", id=command_id, cmd=cmd, **fields)
        except (TypeError, ValueError) as exc:
            raise ControlError("bad_field", f"command {cmd!r} cannot be encoded: {exc}") from exc
        self.issued += 1
        self._pending[command_id] = (device, cmd)
        if cmd == "stun":
            self._stunned.add(device)
        elif cmd == "revive":
            self._stunned.discard(device)
        return command_id, payload

    def ack(self, device: str, request: CommandAck, wall_ms: int) -> None:
        sent = self._pending.pop(request.re, None)
        self._out.event(
            "command_ack",
            device,
            wall_ms,
            {
                "re": request.re,
                "ok": request.ok,
                "detail": request.detail,
                "cmd": sent[1] if sent else None,
            },
        )
