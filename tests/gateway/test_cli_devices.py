"""``xixin devices``: handlers driven through a real argparse parser, a real SQLite file."""

from __future__ import annotations

import argparse
import json
import re
import unicodedata
from pathlib import Path

import pytest

from devices.credentials import verify_secret
from devices.org import default_org
from gateway.broker_auth import GATEWAY_USER
from gateway.cli_devices import add_parser
from gateway.store.db import create_db_engine, default_db_url
from gateway.store.registry import DeviceRegistry

SECRET_LINE = re.compile(r"^  ([A-Za-z0-9_-]{32})$", re.MULTILINE)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xixin")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "var"
    monkeypatch.setenv("XIXIN_DATA_DIR", str(data))
    return data


def _columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _passwd_users(data_dir: Path) -> dict[str, str]:
    text = (data_dir / "broker.passwd").read_text()
    return dict(line.split(":", 1) for line in text.splitlines())


def _add(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert run(["devices", "add", *argv]) == 0
    out = capsys.readouterr().out
    found = SECRET_LINE.findall(out)
    assert len(found) == 1, out
    return str(found[0])


def test_add_prints_the_secret_once_and_syncs_broker_files(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = _add(capsys, "T001", "--grid", "grid-01", "--role", "officer", "--name", "张警官")
    users = _passwd_users(data_dir)
    assert set(users) == {GATEWAY_USER, "T001"}
    assert verify_secret(secret, users["T001"])
    assert "user T001" in (data_dir / "broker.acl").read_text()
    engine = create_db_engine(default_db_url(data_dir))
    try:
        assert DeviceRegistry(engine, default_org()).verify("T001", secret)
    finally:
        engine.dispose()

    assert run(["devices", "list"]) == 0
    listing = capsys.readouterr().out
    assert secret not in listing
    header, row = listing.splitlines()
    assert header.split() == ["ID", "NAME", "UNIT", "ROLE", "STATE", "CREATED"]
    assert row.split()[:5] == ["T001", "张警官", "grid-01", "officer", "enabled"]
    # Columns line up in a terminal even with double-width (CJK) names.
    assert _columns(header[: header.index("UNIT")]) == _columns(row[: row.index("grid-01")])


def test_list_json_disable_enable(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _add(capsys, "T001", "--grid", "grid-01", "--role", "officer")
    _add(capsys, "D001", "--grid", "centre", "--role", "dispatcher")
    assert run(["devices", "disable", "T001"]) == 0
    assert "T001 disabled" in capsys.readouterr().out
    assert set(_passwd_users(data_dir)) == {GATEWAY_USER, "D001"}
    assert "user T001" not in (data_dir / "broker.acl").read_text()

    assert run(["devices", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(d["id"], d["role"], d["enabled"]) for d in listed] == [
        ("D001", "dispatcher", True),
        ("T001", "officer", False),
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", listed[0]["created_at"])

    assert run(["devices", "enable", "T001"]) == 0
    assert set(_passwd_users(data_dir)) == {GATEWAY_USER, "D001", "T001"}


def test_rotate_prints_a_new_secret(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = _add(capsys, "T001", "--grid", "grid-01", "--role", "officer")
    assert run(["devices", "rotate", "T001"]) == 0
    out = capsys.readouterr().out
    (new,) = SECRET_LINE.findall(out)
    assert new != old
    stored = _passwd_users(data_dir)["T001"]
    assert verify_secret(new, stored) and not verify_secret(old, stored)


def test_json_add_and_rotate(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["devices", "add", "G001", "--grid", "grid-05", "--role", "guard", "--json"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["id"] == "G001" and added["unit"] == "grid-05"
    assert verify_secret(added["secret"], _passwd_users(data_dir)["G001"])
    assert run(["devices", "rotate", "G001", "--json"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert verify_secret(rotated["secret"], _passwd_users(data_dir)["G001"])


def test_options_before_or_after_the_action(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    db = f"sqlite:///{tmp_path / 'other.db'}"
    assert (
        run(
            [
                "devices",
                "--data-dir",
                str(elsewhere),
                "--db",
                db,
                "add",
                "T1",
                "--grid",
                "grid-02",
                "--role",
                "guard",
            ]
        )
        == 0
    )
    assert run(["devices", "list", "--json", "--data-dir", str(elsewhere), "--db", db]) == 0
    capsys.readouterr()
    assert (tmp_path / "other.db").is_file()
    assert (elsewhere / "broker.passwd").is_file()
    assert not data_dir.exists()


def test_custom_org_file(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    org_file = tmp_path / "org.yaml"
    org_file.write_text(
        "centre: {name: C}\nareas: [{id: area-x, name: X}]\n"
        "grids: [{id: grid-x1, name: X1, area: area-x, "
        "polygon: [[120.1, 30.86], [120.11, 30.86], [120.11, 30.87]]}]\n"
    )
    _add(capsys, "T001", "--grid", "grid-x1", "--role", "officer", "--org", str(org_file))
    assert (
        run(
            [
                "devices",
                "add",
                "T002",
                "--grid",
                "grid-01",
                "--role",
                "officer",
                "--org",
                str(org_file),
            ]
        )
        == 2
    )
    assert "unknown unit 'grid-01'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["add", "T 1", "--grid", "grid-01", "--role", "officer"], "1-32 characters"),
        (["add", "T1", "--grid", "grid-99", "--role", "officer"], "unknown unit 'grid-99'"),
        (["add", "xixin-x", "--grid", "centre", "--role", "dispatcher"], "reserved"),
        (["disable", "ghost"], "no device 'ghost'"),
        (["enable", "ghost"], "no device 'ghost'"),
        (["rotate", "ghost"], "no device 'ghost'"),
        (["list", "--org", "/nonexistent/org.yaml"], "cannot read org file"),
        (["list", "--db", "nonsense"], "not a database URL"),
    ],
)
def test_errors_are_one_line_and_exit_2(
    data_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run(["devices", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("xixin devices: error: ")
    assert message in captured.err


def test_duplicate_add_fails_without_touching_the_first(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = _add(capsys, "T001", "--grid", "grid-01", "--role", "officer")
    assert run(["devices", "add", "T001", "--grid", "grid-02", "--role", "guard"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert verify_secret(secret, _passwd_users(data_dir)["T001"])


def test_bad_role_is_an_argparse_error(data_dir: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        run(["devices", "add", "T1", "--grid", "grid-01", "--role", "captain"])
    assert exited.value.code == 2
