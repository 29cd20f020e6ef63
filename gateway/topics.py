"""Topic names of docs/protocol.md §2, built and parsed in one place."""

from __future__ import annotations

ROOT = "xixin/v1"
TG_PREFIX = f"{ROOT}/tg/"
DEV_PREFIX = f"{ROOT}/dev/"
MAX_JSON_BYTES = 4096


def status(device: str) -> str:
    return f"{ROOT}/dev/{device}/status"


def ctrl_up(device: str) -> str:
    return f"{ROOT}/dev/{device}/ctrl/up"


def ctrl_down(device: str) -> str:
    return f"{ROOT}/dev/{device}/ctrl/down"


def gps(device: str) -> str:
    return f"{ROOT}/dev/{device}/gps"


def call_up(device: str) -> str:
    return f"{ROOT}/dev/{device}/call/up"


def voice_down(device: str) -> str:
    return f"{ROOT}/dev/{device}/voice/down"


def tg_up(talkgroup: str, device: str) -> str:
    return f"{ROOT}/tg/{talkgroup}/up/{device}"


def tg_down(talkgroup: str) -> str:
    return f"{ROOT}/tg/{talkgroup}/down"


def tg_ctrl(talkgroup: str) -> str:
    return f"{ROOT}/tg/{talkgroup}/ctrl"


def gateway_status(instance: str) -> str:
    return f"{ROOT}/gw/{instance}/status"


# Subscriptions of a gateway instance that owns `talkgroups` (None = all of them).
def gateway_subscriptions(talkgroups: list[str] | None = None) -> list[tuple[str, int]]:
    subs: list[tuple[str, int]] = [
        (f"{ROOT}/dev/+/status", 1),
        (f"{ROOT}/dev/+/ctrl/up", 1),
        (f"{ROOT}/dev/+/call/up", 0),
    ]
    if talkgroups is None:
        subs.append((f"{ROOT}/tg/+/up/+", 0))
    else:
        subs.extend((f"{ROOT}/tg/{tg}/up/+", 0) for tg in talkgroups)
    return subs


def device_topic(topic: str) -> tuple[str, str] | None:
    """`xixin/v1/dev/{dev}/{rest}` -> (dev, rest), else None."""
    if not topic.startswith(DEV_PREFIX):
        return None
    device, _, rest = topic[len(DEV_PREFIX) :].partition("/")
    if not device or not rest:
        return None
    return device, rest
