"""Ids of protocol §2: one pattern each, matched whole (a trailing newline is not an id)."""

from __future__ import annotations

import pytest

from protocol.errors import InvalidIdError
from protocol.ids import check_device_id, check_talkgroup_id, is_device_id, is_talkgroup_id


@pytest.mark.parametrize("good", ["T002", "a", "A-b_9", "x" * 32])
def test_device_ids(good: str) -> None:
    assert is_device_id(good)
    assert check_device_id(good) == good


@pytest.mark.parametrize("bad", ["T002\n", "", "x" * 33, "T 2", "T/2", "T#", "Ｔ1", None, 7])
def test_not_device_ids(bad: object) -> None:
    assert not is_device_id(bad)
    with pytest.raises(InvalidIdError):
        check_device_id(bad)


@pytest.mark.parametrize("good", ["grid-07", "all", "a", "x" * 32])
def test_talkgroup_ids(good: str) -> None:
    assert is_talkgroup_id(good)
    assert check_talkgroup_id(good) == good


@pytest.mark.parametrize("bad", ["grid-07\n", "Grid-07", "", "x" * 33, "grid_07", None])
def test_not_talkgroup_ids(bad: object) -> None:
    assert not is_talkgroup_id(bad)
    with pytest.raises(InvalidIdError):
        check_talkgroup_id(bad)
