"""Floor keys (protocol §6): a talkgroup id, or `call:{a}:{b}` for a private call between two
devices (sorted), which a terminal knows as `call:{peer}`."""

from __future__ import annotations

from typing import Any, Final

from protocol.ids import check_device_id, check_talkgroup_id

CALL_PREFIX: Final = "call:"


def call_key(a: str, b: str) -> str:
    """The gateway's key of a private call between devices `a` and `b` (order-free)."""
    first, second = sorted((a, b))
    return f"{CALL_PREFIX}{first}:{second}"


def call_parties(key: str) -> tuple[str, str] | None:
    """The two devices of a gateway call key, or None for a talkgroup key."""
    if not key.startswith(CALL_PREFIX):
        return None
    a, sep, b = key[len(CALL_PREFIX) :].partition(":")
    return (a, b) if sep and a and b else None


def is_call_key(key: str) -> bool:
    return key.startswith(CALL_PREFIX)


def target_key(tg: str | None = None, call: str | None = None) -> str:
    """A terminal's key of a floor: the talkgroup id, or `call:{peer}` for a private call."""
    if (tg is None) == (call is None):
        raise ValueError("name exactly one of tg or call")
    if tg is not None:
        return check_talkgroup_id(tg)
    return CALL_PREFIX + check_device_id(call)


def key_fields(key: str) -> dict[str, str]:
    """`{"tg": …}` or `{"call": …}` for a terminal's floor key."""
    if key.startswith(CALL_PREFIX):
        return {"call": key[len(CALL_PREFIX) :]}
    return {"tg": key}


def body_key(body: dict[str, Any]) -> str | None:
    """The terminal floor key a control message is about, or None."""
    tg, call = body.get("tg"), body.get("call")
    if isinstance(tg, str):
        return tg
    if isinstance(call, str):
        return CALL_PREFIX + call
    return None
