"""Floor events into protocol messages (§5.2, §5.3) and stored events."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from gateway.control.output import Output
from gateway.floor import (
    Denied,
    FloorEvent,
    Granted,
    Idle,
    Queued,
    Released,
    Revoked,
    Taken,
)
from gateway.floors import FloorTable, Target
from protocol import topics
from protocol.control import encode

_TO_DEVICE = (Granted, Queued, Denied, Revoked, Released)
_COUNTED: dict[type[FloorEvent], str] = {
    Granted: "grant",
    Queued: "queued",
    Denied: "deny",
    Revoked: "revoke",
}


class FloorAnnouncer:
    def __init__(self, floors: FloorTable, out: Output) -> None:
        self._floors = floors
        self._out = out

    def announce(self, key: str, floor_events: Iterable[FloorEvent], wall_ms: int) -> None:
        """Tell the devices concerned about each event of floor `key`, and record it."""
        target = self._floors.target(key)
        out = self._out
        counters = out.counters.floor
        for event in floor_events:
            if isinstance(event, _TO_DEVICE):
                counted = _COUNTED.get(type(event))
                if counted is not None:
                    counters[counted] += 1
                # Event fields are named as the protocol's message fields (§5.2).
                fields = {name: getattr(event, name) for name in _field_names(type(event))}
                device = fields.pop("device")
                fields["re"] = fields.pop("request_id", None)
                out.reply(device, event.message, **fields, **target.field_for(device))
            elif isinstance(event, Taken):
                self._broadcast_taken(target, event, wall_ms)
            elif isinstance(event, Idle):
                self._broadcast_idle(target, wall_ms)
            out.event("floor", _event_device(event), wall_ms, _event_data(key, event))

    def _broadcast_taken(self, target: Target, event: Taken, wall_ms: int) -> None:
        fields = {
            "by": event.by,
            "burst": event.burst,
            "priority": event.priority.label,
            "call_no": event.call,
            "ts": wall_ms,
        }
        if target.tg is not None:
            self._out.publish(
                topics.tg_ctrl(target.tg), encode("floor_taken", tg=target.tg, **fields)
            )
        else:
            assert target.parties is not None
            for party in target.parties:
                if party != event.by:
                    self._out.reply(party, "floor_taken", **target.field_for(party), **fields)

    def _broadcast_idle(self, target: Target, wall_ms: int) -> None:
        if target.tg is not None:
            self._out.publish(
                topics.tg_ctrl(target.tg), encode("floor_idle", tg=target.tg, ts=wall_ms)
            )
        else:
            assert target.parties is not None
            for party in target.parties:
                self._out.reply(party, "floor_idle", ts=wall_ms, **target.field_for(party))


_FIELD_NAMES: dict[type[FloorEvent], tuple[str, ...]] = {}


def _field_names(kind: type[FloorEvent]) -> tuple[str, ...]:
    """An event type's field names (dataclasses.fields() is slow for a per-message call)."""
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(kind))
    return names


def _event_device(event: FloorEvent) -> str | None:
    if isinstance(event, Taken):
        return event.by
    device = getattr(event, "device", None)
    return device if isinstance(device, str) else None


def _event_data(key: str, event: FloorEvent) -> dict[str, Any]:
    data: dict[str, Any] = {"floor": key, "event": event.message}
    for name in ("burst", "reason", "position"):
        value = getattr(event, name, None)
        if value is not None:
            data[name] = value
    if isinstance(event, Taken):
        data["priority"] = event.priority.label
    return data
