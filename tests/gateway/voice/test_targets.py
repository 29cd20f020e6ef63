"""Who may talk where from the console (gateway.voice.targets, pure): a talkgroup or device of
the account's scope, and an incident's talkgroup when the account sees that incident."""

from __future__ import annotations

import pytest

from gateway.auth.roles import parse_role
from gateway.auth.scope import scope_of
from gateway.voice.targets import TargetError, check_target, parse_target
from protocol.org import default_org

ORG = default_org()
INCIDENTS = {"inc-1": ("grid-01", "grid-01"), "inc-5": ("grid-06", "grid-06")}
TALKGROUPS = {"grid-01", "grid-02", "inc-1", "inc-5"}


def check(role: str, target: str) -> str:
    """'ok' or the refusal's reason."""
    scope = scope_of(parse_role(role, ORG), ORG)
    try:
        check_target(
            parse_target(target), scope, TALKGROUPS.__contains__, lambda d: None,
            INCIDENTS.get,
        )  # fmt: skip
    except TargetError as exc:
        return exc.reason
    return "ok"


@pytest.mark.parametrize(
    ("role", "target", "answer"),
    [
        ("grid:grid-01", "tg:grid-01", "ok"),
        ("grid:grid-01", "tg:grid-02", "not_in_scope"),
        ("grid:grid-01", "tg:inc-1", "ok"),  # its grid's incident
        ("grid:grid-01", "tg:inc-5", "not_in_scope"),  # Fengxi's incident
        ("area:area-renxi", "tg:inc-1", "ok"),
        ("centre", "tg:inc-5", "ok"),
        ("grid:grid-01", "tg:inc-9", "unknown_talkgroup"),
        ("viewer", "tg:grid-01", "not_a_dispatcher"),
    ],
)
def test_talk_targets(role: str, target: str, answer: str) -> None:
    assert check(role, target) == answer
