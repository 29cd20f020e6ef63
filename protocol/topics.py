"""Topic names of protocol §2 and the broker ACL of §8, built and parsed in one place."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal

ROOT: Final = "xixin/v1"
OWNTRACKS_ROOT: Final = "owntracks"
TG_PREFIX: Final = f"{ROOT}/tg/"
DEV_PREFIX: Final = f"{ROOT}/dev/"
GW_PREFIX: Final = f"{ROOT}/gw/"
GATEWAY_STATUS_FILTER: Final = f"{ROOT}/gw/+/status"
DEVICE_STATUS_FILTER: Final = f"{ROOT}/dev/+/status"

Access = Literal["read", "write", "readwrite"]


# ---- one builder per topic ----------------------------------------------------------------------


def device(device_id: str, rest: str) -> str:
    return f"{ROOT}/dev/{device_id}/{rest}"


def status(device_id: str) -> str:
    return f"{ROOT}/dev/{device_id}/status"


def ctrl_up(device_id: str) -> str:
    return f"{ROOT}/dev/{device_id}/ctrl/up"


def ctrl_down(device_id: str) -> str:
    return f"{ROOT}/dev/{device_id}/ctrl/down"


def gps(device_id: str) -> str:
    return f"{ROOT}/dev/{device_id}/gps"


def nmea(device_id: str) -> str:
    return f"{ROOT}/dev/{device_id}/nmea"


def call_up(device_id: str) -> str:
    return f"{ROOT}/dev/{device_id}/call/up"


def voice_down(device_id: str) -> str:
    return f"{ROOT}/dev/{device_id}/voice/down"


def tg_up(talkgroup: str, device_id: str) -> str:
    return f"{ROOT}/tg/{talkgroup}/up/{device_id}"


def tg_down(talkgroup: str) -> str:
    return f"{ROOT}/tg/{talkgroup}/down"


def tg_ctrl(talkgroup: str) -> str:
    return f"{ROOT}/tg/{talkgroup}/ctrl"


def gateway_status(instance: str) -> str:
    return f"{ROOT}/gw/{instance}/status"


def owntracks(user: str, device_id: str) -> str:
    return f"{OWNTRACKS_ROOT}/{user}/{device_id}"


# ---- subscriptions ------------------------------------------------------------------------------


def gateway_subscriptions(talkgroups: Iterable[str] | None = None) -> list[tuple[str, int]]:
    """What a gateway instance that owns `talkgroups` (None = all of them) subscribes to."""
    return gateway_control_subscriptions() + gateway_voice_subscriptions(talkgroups)


def gateway_control_subscriptions() -> list[tuple[str, int]]:
    """The gateway's control plane: presence and control uplinks of every device."""
    return [(DEVICE_STATUS_FILTER, 1), (f"{ROOT}/dev/+/ctrl/up", 1)]


def gateway_voice_subscriptions(talkgroups: Iterable[str] | None = None) -> list[tuple[str, int]]:
    """The gateway's relay: private-call and talkgroup voice uplinks (of `talkgroups`)."""
    subs: list[tuple[str, int]] = [(f"{ROOT}/dev/+/call/up", 0)]
    if talkgroups is None:
        subs.append((f"{ROOT}/tg/+/up/+", 0))
    else:
        subs.extend((f"{ROOT}/tg/{tg}/up/+", 0) for tg in talkgroups)
    return subs


def tracking_subscriptions() -> list[str]:
    """What the tracking ingest reads (§7, §10): beacons, NMEA, presence, OwnTracks."""
    return [
        f"{ROOT}/dev/+/gps",
        f"{ROOT}/dev/+/nmea",
        DEVICE_STATUS_FILTER,
        f"{OWNTRACKS_ROOT}/+/+",
    ]


def terminal_subscriptions(device_id: str) -> list[tuple[str, int]]:
    """A terminal's own subscriptions, before any talkgroup (§4)."""
    return [(ctrl_down(device_id), 1), (voice_down(device_id), 0), (GATEWAY_STATUS_FILTER, 1)]


def talkgroup_subscriptions(talkgroups: Iterable[str]) -> list[tuple[str, int]]:
    """A terminal's subscriptions for the talkgroups it is affiliated to (§4)."""
    return [
        (topic, qos) for tg in talkgroups for topic, qos in ((tg_down(tg), 0), (tg_ctrl(tg), 1))
    ]


# ---- parsers ------------------------------------------------------------------------------------


def device_topic(topic: str) -> tuple[str, str] | None:
    """`xixin/v1/dev/{dev}/{rest}` -> (dev, rest), else None."""
    if not topic.startswith(DEV_PREFIX):
        return None
    device_id, _, rest = topic[len(DEV_PREFIX) :].partition("/")
    if not device_id or not rest:
        return None
    return device_id, rest


def talkgroup_topic(topic: str) -> tuple[str, str] | None:
    """`xixin/v1/tg/{tg}/{rest}` -> (tg, rest): rest is `down`, `ctrl` or `up/{dev}`."""
    if not topic.startswith(TG_PREFIX):
        return None
    tg, _, rest = topic[len(TG_PREFIX) :].partition("/")
    if not tg or not rest:
        return None
    return tg, rest


def talkgroup_uplink(topic: str) -> tuple[str, str] | None:
    """`xixin/v1/tg/{tg}/up/{dev}` -> (tg, dev), else None."""
    parsed = talkgroup_topic(topic)
    if parsed is None:
        return None
    tg, rest = parsed
    kind, _, device_id = rest.partition("/")
    if kind != "up" or not device_id or "/" in device_id:
        return None
    return tg, device_id


def owntracks_topic(topic: str) -> tuple[str, str] | None:
    """`owntracks/{user}/{device}` -> (user, device); sub-topics (…/event, …/cmd) -> None."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != OWNTRACKS_ROOT or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def gateway_status_instance(topic: str) -> str | None:
    """The instance of a `xixin/v1/gw/{instance}/status` topic, else None."""
    if not (topic.startswith(GW_PREFIX) and topic.endswith("/status")):
        return None
    instance = topic[len(GW_PREFIX) : -len("/status")]
    return instance or None


def device_status_id(topic: str) -> str | None:
    """The device of a `xixin/v1/dev/{dev}/status` topic, else None."""
    parsed = device_topic(topic)
    return parsed[0] if parsed is not None and parsed[1] == "status" else None


# ---- broker ACL (§8) ----------------------------------------------------------------------------


def gateway_acl() -> list[tuple[Access, str]]:
    """The gateway's account reads and writes everything of the protocol and reads OwnTracks."""
    return [("readwrite", f"{ROOT}/#"), ("read", f"{OWNTRACKS_ROOT}/#")]


def device_acl(
    device_id: str, talkgroups: Iterable[str], *, dispatcher: bool = False
) -> list[tuple[Access, str]]:
    """The topics one device may use: its own, and those of its member talkgroups (§8)."""
    rules: list[tuple[Access, str]] = [
        ("readwrite", status(device_id)),
        ("write", ctrl_up(device_id)),
        ("write", gps(device_id)),
        ("write", nmea(device_id)),
        ("write", call_up(device_id)),
        ("read", ctrl_down(device_id)),
        ("read", voice_down(device_id)),
        # Gateway presence: a terminal re-affiliates when a gateway comes (back) online.
        ("read", GATEWAY_STATUS_FILTER),
    ]
    for tg in sorted(talkgroups):
        rules.append(("write", tg_up(tg, device_id)))
        rules.append(("read", tg_down(tg)))
        rules.append(("read", tg_ctrl(tg)))
    if dispatcher:
        rules.append(("read", DEVICE_STATUS_FILTER))
    # The OwnTracks app as a terminal (§10): it publishes as its MQTT user, i.e. the device id.
    rules.append(("readwrite", f"{OWNTRACKS_ROOT}/{device_id}/#"))
    return rules
