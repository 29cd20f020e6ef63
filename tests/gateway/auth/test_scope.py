"""The scope rules as a table: every role x resource kind (gateway.auth.scope, pure)."""

from __future__ import annotations

import pytest

from gateway.auth.errors import InvalidAccountError
from gateway.auth.roles import Role, parse_role
from gateway.auth.scope import ABILITIES, ACTIONS, event_visible, geofence_unit, scope_of
from protocol.ids import incident_of_talkgroup
from protocol.org import default_org

ORG = default_org()
# grid-01 .. grid-05 are Renxi's; grid-06 is Fengxi's (protocol/orgs/longxi.yaml).
UNITS = {
    "T01": "grid-01", "T04": "grid-04", "T05": "grid-06",
    "DA": "area-renxi", "DF": "area-fengxi", "DC": "centre",
}  # fmt: skip
ROLES = ["admin", "centre", "area:area-renxi", "grid:grid-01", "viewer"]


# Incident talkgroups -> their incident's (grid, handling unit): as the incident service says.
INCIDENTS: dict[str, tuple[str | None, str]] = {
    "inc-1": ("grid-01", "grid-01"),
    "inc-2": ("grid-01", "area-renxi"),  # escalated: the grid keeps sight of it
    "inc-3": ("grid-04", "centre"),
    "inc-4": (None, "area-renxi"),
    "inc-5": ("grid-06", "grid-06"),
}


def unit_of(device: str) -> str | None:
    return UNITS.get(device)


def incident_of(tg: str) -> tuple[str | None, str] | None:
    return INCIDENTS.get(tg)


def scope(role: str):  # type: ignore[no-untyped-def]
    return scope_of(parse_role(role, ORG), ORG)


def test_every_area_grid_is_in_the_org() -> None:
    assert ORG.grids["grid-04"].area == "area-renxi" and ORG.grids["grid-06"].area != "area-renxi"


# (resource kind, resource, roles that see it)
EVERYONE = {"admin", "centre", "area:area-renxi", "grid:grid-01", "viewer"}
WHOLE = {"admin", "centre", "viewer"}
TABLE = [
    ("device", "T01", EVERYONE),
    ("device", "T04", WHOLE | {"area:area-renxi"}),
    ("device", "T05", WHOLE),
    ("device", "DA", WHOLE | {"area:area-renxi"}),
    ("device", "DC", WHOLE),
    ("device", "NOPE", WHOLE),  # unknown devices: only whole-org scopes (then 404)
    ("talkgroup", "grid-01", EVERYONE),
    ("talkgroup", "grid-04", WHOLE | {"area:area-renxi"}),
    ("talkgroup", "area-renxi", WHOLE | {"area:area-renxi"}),
    ("talkgroup", "area-fengxi", WHOLE),
    ("talkgroup", "all", WHOLE),
    ("talkgroup", "inc-1", EVERYONE),
    ("talkgroup", "inc-2", EVERYONE),
    ("talkgroup", "inc-3", WHOLE | {"area:area-renxi"}),  # at the centre: grid-04 still
    ("talkgroup", "inc-4", WHOLE | {"area:area-renxi"}),
    ("talkgroup", "inc-5", WHOLE),
    ("talkgroup", "inc-99", WHOLE),  # no such incident
    ("floor", "grid-01", EVERYONE),
    ("floor", "grid-06", WHOLE),
    ("floor", "call:T01:T05", EVERYONE),  # either party in scope
    ("floor", "call:T04:T05", WHOLE | {"area:area-renxi"}),
    ("floor", "call:T05:DF", WHOLE),
    ("floor", "inc-1", EVERYONE),
    ("floor", "inc-5", WHOLE),
    ("recording", ("grid-01", "T01"), EVERYONE),
    ("recording", ("all", "T01"), EVERYONE),  # its talker is in scope
    ("recording", ("all", "DC"), WHOLE),
    ("recording", ("call:T04:T05", "T05"), WHOLE | {"area:area-renxi"}),
    ("recording", ("inc-2", "T05"), EVERYONE),  # its incident's talkgroup is in scope
    ("recording", ("inc-4", "T05"), WHOLE | {"area:area-renxi"}),
    ("recording", ("inc-5", "T04"), WHOLE | {"area:area-renxi"}),  # its talker is
    ("geofence", "grid-01", EVERYONE),
    ("geofence", "grid-04", WHOLE | {"area:area-renxi"}),
    ("geofence", "centre", WHOLE),
    ("checkpoint", "grid-01", EVERYONE),
    ("checkpoint", "grid-06", WHOLE),
    ("event", {"kind": "floor", "floor": "grid-04", "device": "T01"},
     WHOLE | {"area:area-renxi"}),
    ("event", {"kind": "presence", "device": "T01"}, EVERYONE),
    ("event", {"kind": "alarm", "device": "T05"}, WHOLE),
    ("event", {"kind": "geofence"}, WHOLE),
    ("event", {"kind": "floor", "floor": "inc-1", "device": "T05"}, EVERYONE),
    ("event", {"kind": "floor", "floor": "inc-5", "device": "T05"}, WHOLE),
]  # fmt: skip


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("kind", "resource", "seen_by"), TABLE)
def test_scope_table(role: str, kind: str, resource: object, seen_by: set[str]) -> None:
    s = scope(role)
    if kind == "device":
        seen = s.sees_device(str(resource), unit_of)
    elif kind == "talkgroup":
        seen = s.sees_talkgroup(str(resource), incident_of)
    elif kind == "floor":
        seen = s.sees_floor(str(resource), unit_of, incident_of)
    elif kind == "recording":
        floor, talker = resource  # type: ignore[misc]
        seen = s.sees_recording(floor, talker, unit_of, incident_of)
    elif kind == "geofence":
        seen = s.sees_geofence(str(resource))
    elif kind == "checkpoint":
        seen = s.sees_checkpoint(str(resource))
    else:
        seen = event_visible(s, resource, unit_of, incident_of)  # type: ignore[arg-type]
    assert seen == (role in seen_by), (role, kind, resource)


# What each role may do at all (then only in scope).
MAY = {
    "admin": {"read", "listen", "command", "provision", "accounts", "audit", "metrics"},
    "centre": {"read", "listen", "command", "monitor", "audit", "metrics"},
    "area:area-renxi": {"read", "listen", "command", "monitor"},
    "grid:grid-01": {"read", "listen", "command"},
    "viewer": {"read"},
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", ACTIONS)
def test_abilities_table(role: str, action: str) -> None:
    s = scope(role)
    assert s.may(action) == (action in MAY[role])  # type: ignore[arg-type]
    assert s.allows(action, in_scope=False) is False  # type: ignore[arg-type]


def test_only_centre_and_area_may_monitor() -> None:
    assert {k for k, may in ABILITIES.items() if "monitor" in may} == {"centre", "area"}


def test_custom_geofences_belong_to_the_grid_of_their_first_point() -> None:
    lon, lat = ORG.grids["grid-04"].centre
    assert geofence_unit("circle", "x", [(lon, lat)], ORG) == "grid-04"
    assert geofence_unit("grid", "grid-02", [], ORG) == "grid-02"
    assert geofence_unit("circle", "far", [(0.0, 0.0)], ORG) == "centre"


@pytest.mark.parametrize(
    ("text", "role"),
    [
        ("admin", Role("admin")),
        ("centre", Role("centre")),
        ("area:area-renxi", Role("area", "area-renxi")),
        ("grid:grid-13", Role("grid", "grid-13")),
        ("viewer", Role("viewer")),
    ],
)
def test_roles_parse_and_print(text: str, role: Role) -> None:
    assert parse_role(text, ORG) == role and str(role) == text


@pytest.mark.parametrize(
    "text", ["", "root", "area", "grid:", "grid:area-renxi", "area:grid-01", "centre:x", "admin:"]
)
def test_bad_roles_refused(text: str) -> None:
    with pytest.raises(InvalidAccountError):
        parse_role(text, ORG)


def test_incident_talkgroups_are_unseen_without_a_resolver() -> None:
    assert not scope("grid:grid-01").sees_talkgroup("inc-1")
    assert scope("grid:grid-01").sees_talkgroup("inc-1", incident_of)


@pytest.mark.parametrize(
    ("tg", "number"),
    [("inc-7", 7), ("inc-0", None), ("inc-07", None), ("inc-", None), ("inc-x", None),
     ("grid-01", None), ("inc-9007199254740992", None), ("xinc-7", None)],
)  # fmt: skip
def test_incident_of_talkgroup(tg: str, number: int | None) -> None:
    assert incident_of_talkgroup(tg) == number
