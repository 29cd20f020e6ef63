"""Control JSON from terminals: every malformed message is a ControlError with its code."""

from __future__ import annotations

import json
import logging

import pytest

from gateway.log_once import LogOnce
from protocol.control import ControlError, parse_request, parse_status
from tests.gateway.test_control import TG, make_plane


def code_of(payload: bytes) -> str:
    with pytest.raises(ControlError) as caught:
        parse_request(payload)
    return caught.value.code


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"[" * 2000 + b"]" * 2000, "bad_json"),  # deep nesting: no RecursionError
        (b'{"v":1,"type":"sos","id":"\\udc00","active":true}', "bad_json"),  # lone surrogate
        ('{"v":1,"type":"sos","id":"a","active":true}'.encode("utf-16"), "bad_json"),
        (b'{"v":1,"type":["x"],"id":"a"}', "unknown_type"),  # unhashable type
        (b'{"v":1,"type":{"a":1},"id":"a"}', "unknown_type"),
        (b'{"v":true,"type":"sos","id":"a","active":true}', "bad_version"),
        (b'{"v":1.0,"type":"sos","id":"a","active":true}', "bad_version"),
        (b'{"v":1,"type":"floor_request","id":"a","tg":"grid-01\\n"}', "bad_field"),
        (b'{"v":1,"type":"floor_request","id":"a","call":"T002\\n"}', "bad_field"),
        (b'{"v":1,"type":"affiliate","id":"a","tgs":["grid-01\\n"]}', "bad_field"),
    ],
)
def test_malformed_control_is_refused_with_its_code(payload: bytes, code: str) -> None:
    assert code_of(payload) == code


def test_a_surrogate_pair_is_text_not_an_error() -> None:
    body = {"v": 1, "type": "status_msg", "id": "a", "code": "on_scene", "text": "\U0001f6a8"}
    request = parse_request(json.dumps(body).encode())  # ensure_ascii: a \\ud83d\\udea8 pair
    assert getattr(request, "text", None) == "\U0001f6a8"


def test_status_is_checked_like_control() -> None:
    with pytest.raises(ControlError, match="nested too deeply"):
        parse_status(b"[" * 2000 + b"]" * 2000)
    status = parse_status(b'{"state":"online","battery":true,"reason":"' + b"x" * 900 + b'"}')
    assert status.battery is None and status.reason == "x" * 256


def test_a_request_id_that_cannot_be_encoded_leaves_no_floor_held() -> None:
    plane = make_plane()
    payload = b'{"v":1,"type":"floor_request","id":"\\udc00","tg":"grid-01"}'
    plane.handle("xixin/v1/dev/T001/ctrl/up", payload, 0.0, 0)
    [reply] = [json.loads(o.payload) for o in plane.outbox]
    assert (reply["type"], reply["code"]) == ("error", "bad_json")
    assert plane.floors[TG].holder is None


def test_log_once_logs_each_key_once_and_says_when_it_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    once = LogOnce(logging.getLogger("test.once"), max_keys=3)
    with caplog.at_level(logging.WARNING, logger="test.once"):
        for n in [1, 1, 2, 3, 4, 5, 4, 2]:
            once.warning(n, "problem %d", n)
    assert [r.getMessage() for r in caplog.records] == [
        "problem 1",
        "problem 2",
        "problem 3",
        "3 distinct problems logged; new ones are only counted from now on",
    ]


@pytest.mark.parametrize("field", ['"call":"T002\\n"', '"tg":"grid-01\\n"'])
def test_ids_with_a_trailing_newline_are_bad_fields(field: str) -> None:
    payload = ('{"v":1,"type":"floor_request","id":"r1",' + field + "}").encode()
    assert code_of(payload) == "bad_field"
