"""``xixin devices``: handlers driven through a real argparse parser, a real SQLite file."""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import stat
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from gateway.broker_auth import GATEWAY_USER
from gateway.credentials import verify_secret
from gateway.store.db import create_db_engine, default_db_url
from gateway.store.registry import DeviceRegistry
from protocol.org import default_org
from xixin.commands.devices import add_parser

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
    assert captured.err.startswith("xixin devices: ")
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


# ---- bulk import ------------------------------------------------------------------------------

IMPORT_CSV = (
    "\ufeffid,grid,role,name\n"  # the BOM a spreadsheet's "CSV UTF-8" export starts with
    "T101,grid-01,officer,张伟\n"
    "\n"
    "G101, grid-02 ,guard,\n"
    "D101,centre,dispatcher,Centre desk\n"
)


def test_import_adds_all_and_writes_the_secrets_once(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "batch.csv"
    source.write_text(IMPORT_CSV, encoding="utf-8")
    secrets_path = tmp_path / "secrets.csv"
    assert run(["devices", "import", str(source), "--secrets-out", str(secrets_path)]) == 0
    assert "Imported 3 devices" in capsys.readouterr().out
    assert stat.S_IMODE(secrets_path.stat().st_mode) == 0o600
    with secrets_path.open(newline="") as handle:
        secrets = {row["id"]: row["secret"] for row in csv.DictReader(handle)}
    assert set(secrets) == {"T101", "G101", "D101"}
    users = _passwd_users(data_dir)
    for device_id, secret in secrets.items():
        assert verify_secret(secret, users[device_id])
    assert run(["devices", "list", "--json"]) == 0
    listed = {d["id"]: d for d in json.loads(capsys.readouterr().out)}
    assert listed["T101"]["name"] == "张伟" and listed["G101"]["unit"] == "grid-02"
    assert listed["G101"]["name"] == "G101" and listed["D101"]["role"] == "dispatcher"
    # The same file again: every row exists now, nothing changes, the secrets file stays.
    assert run(["devices", "import", str(source), "--secrets-out", str(tmp_path / "s2.csv")]) == 2
    assert capsys.readouterr().err.count("already exists") == 3
    assert not (tmp_path / "s2.csv").exists()


def test_import_to_stdout(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "batch.csv"
    source.write_text("id,unit,role\nT201,grid-03,officer\n", encoding="utf-8")
    assert run(["devices", "import", str(source)]) == 0
    captured = capsys.readouterr()
    [row] = list(csv.DictReader(io.StringIO(captured.out)))
    assert row["id"] == "T201" and verify_secret(row["secret"], _passwd_users(data_dir)["T201"])
    assert "Imported 1 devices" in captured.err


def test_import_with_bad_rows_names_each_line_and_adds_nothing(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _add(capsys, "T001", "--grid", "grid-01", "--role", "officer")
    source = tmp_path / "batch.csv"
    source.write_text(
        "id,grid,role\n"
        "t001,grid-01,officer\n"  # line 2: exists (ids compare ignoring case)
        "T300,grid-01,officer\n"
        "T301,grid-01,captain\n"  # line 4: bad role
        "T302,grid-99,officer\n"  # line 5: unknown grid
        "T300,grid-02,guard\n"  # line 6: repeats line 3
        "bad id,grid-01,officer\n"  # line 7: invalid id
        "T303,grid-01,officer,extra\n",  # line 8: a cell too many
        encoding="utf-8",
    )
    secrets_path = tmp_path / "secrets.csv"
    assert run(["devices", "import", str(source), "--secrets-out", str(secrets_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[2] for line in err[:-1]] == [f"line {n}" for n in (2, 4, 5, 6, 7, 8)]
    assert "already exists" in err[0] and "repeats line 3" in err[3]
    assert err[-1] == "xixin devices: 6 bad row(s); no device was imported"
    assert not secrets_path.exists()
    assert set(_passwd_users(data_dir)) == {GATEWAY_USER, "T001"}
    assert run(["devices", "list", "--json"]) == 0
    assert [d["id"] for d in json.loads(capsys.readouterr().out)] == ["T001"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name,role\nT1,officer\n", "the header must name id, grid (or unit), role"),
        (b"id,grid,role\nT1,grid-01,\xff\xfe\n", "not a UTF-8 CSV file"),
    ],
)
def test_import_refuses_unreadable_files(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: Any, message: str
) -> None:
    source = tmp_path / "batch.csv"
    if isinstance(content, bytes):
        source.write_bytes(content)
    else:
        source.write_text(content, encoding="utf-8")
    assert run(["devices", "import", str(source)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err


def test_import_never_overwrites_a_secrets_file(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "batch.csv"
    source.write_text("id,grid,role\nT401,grid-01,officer\n", encoding="utf-8")
    secrets_path = tmp_path / "secrets.csv"
    secrets_path.write_text("earlier secrets\n")
    assert run(["devices", "import", str(source), "--secrets-out", str(secrets_path)]) == 2
    assert "never written over" in capsys.readouterr().err
    assert secrets_path.read_text() == "earlier secrets\n"
    assert run(["devices", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
