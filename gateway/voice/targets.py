"""Where a dispatcher talks: a talkgroup, a device (private call) or the all-call, and whether
the account's scope allows it (pure)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from gateway.auth.scope import IncidentOf, Scope, no_incidents
from protocol import ids
from protocol.org import ALL_CALL

#: Sample format of console audio in both directions: 16 kHz mono signed 16-bit little endian.
PCM_RATE: Final = 16000
PCM_FRAME_BYTES: Final = PCM_RATE * 20 // 1000 * 2  # 20 ms = 640 bytes


class TargetError(ValueError):
    """A talk target that is malformed, unknown or outside the caller's scope; `reason` is the
    word the console shows (`bad_target`, `unknown_talkgroup`, `no_such_device`,
    `not_in_scope`, `not_a_dispatcher`)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Target:
    kind: Literal["tg", "device"]
    id: str

    @property
    def text(self) -> str:
        return f"{self.kind}:{self.id}"

    @property
    def request_field(self) -> dict[str, str]:
        """The `tg` or `call` field of a floor request/release for this target (§5.1)."""
        return {"tg": self.id} if self.kind == "tg" else {"call": self.id}


def parse_target(text: str) -> Target:
    """`tg:<talkgroup>`, `device:<id>` or `all` (the all-call talkgroup)."""
    if text == "all":
        return Target("tg", ALL_CALL)
    kind, _, ident = text.partition(":")
    if kind == "tg" and ids.is_talkgroup_id(ident):
        return Target("tg", ident)
    if kind == "device" and ids.is_device_id(ident):
        return Target("device", ident)
    raise TargetError("bad_target", "target must be tg:<talkgroup>, device:<id> or all")


def check_target(
    target: Target,
    scope: Scope,
    talkgroups: Callable[[str], bool],
    unit_of: Callable[[str], str | None],
    incident_of: IncidentOf = no_incidents,
) -> None:
    """Raise TargetError unless an account of `scope` may talk to `target`: a talkgroup of its
    scope (the all-call only for the centre; an incident's talkgroup when it sees the incident —
    membership is then floor control's and the broker's to check, as for any talker), a device
    of its scope."""
    if not scope.role.is_dispatcher or not scope.may("command"):
        raise TargetError("not_a_dispatcher", f"role {scope.role} has no dispatcher voice")
    if target.kind == "tg":
        if not talkgroups(target.id):
            raise TargetError("unknown_talkgroup", f"no talkgroup {target.id}")
        if not scope.sees_talkgroup(target.id, incident_of):
            raise TargetError("not_in_scope", f"talkgroup {target.id} is outside {scope.role}")
        return
    if unit_of(target.id) is None:
        raise TargetError("no_such_device", f"no device {target.id}")
    if not scope.sees_device(target.id, unit_of):
        raise TargetError("not_in_scope", f"device {target.id} is outside {scope.role}")
