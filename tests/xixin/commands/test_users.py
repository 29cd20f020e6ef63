"""``xixin users``: accounts through a real argparse parser and SQLite file; passwords are
generated and shown once, or read from stdin, never taken as an argument."""

from __future__ import annotations

import argparse
import io
import json
import re
from pathlib import Path

import pytest

from gateway.auth.store import AccountStore
from gateway.store.db import create_db_engine, default_db_url
from protocol.org import default_org
from xixin.commands.users import add_parser

PASSWORD_LINE = re.compile(r"^  (\S{20})$", re.MULTILINE)


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


def store(data_dir: Path) -> AccountStore:
    return AccountStore(create_db_engine(default_db_url(data_dir)), default_org())


def test_add_list_disable_enable_reset_passwd(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(["users", "add", "wang", "--role", "grid:grid-01"]) == 0
    (password,) = PASSWORD_LINE.findall(capsys.readouterr().out)
    assert store(data_dir).authenticate("wang", password) is not None
    assert run(["users", "list", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["name"] == "wang" and listed["role"] == "grid:grid-01" and listed["enabled"]
    assert password not in json.dumps(listed)
    assert run(["users", "disable", "wang"]) == 0
    assert store(data_dir).authenticate("wang", password) is None
    assert run(["users", "enable", "wang"]) == 0
    assert run(["users", "reset", "wang"]) == 0
    (new,) = PASSWORD_LINE.findall(capsys.readouterr().out)
    assert new != password and store(data_dir).authenticate("wang", new) is not None
    monkeypatch.setattr("sys.stdin", io.StringIO("a long chosen password\n"))
    assert run(["users", "passwd", "wang"]) == 0
    assert store(data_dir).authenticate("wang", "a long chosen password") is not None
    assert run(["users", "list"]) == 0
    assert "grid:grid-01" in capsys.readouterr().out


def test_errors_are_one_line_and_exit_2(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(["users", "add", "x", "--role", "grid:grid-99"]) == 2
    assert capsys.readouterr().err.startswith("xixin users: role 'grid:grid-99'")
    assert run(["users", "disable", "ghost"]) == 2
    assert "no account 'ghost'" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert run(["users", "add", "li", "--role", "centre", "--ask-password"]) == 2
    assert "at least 12 characters" in capsys.readouterr().err


def test_no_password_option_exists() -> None:
    with pytest.raises(SystemExit):
        run(["users", "add", "li", "--role", "centre", "--password", "secret123456"])


def test_changes_made_with_the_command_are_audited(tmp_path: Path) -> None:
    from gateway.auth.audit import AuditQuery, find_audit
    from xixin.cli import main

    data = tmp_path / "var"
    assert main(["users", "add", "ops1", "--role", "centre", "--data-dir", str(data)]) == 0
    assert main(["users", "disable", "ops1", "--data-dir", str(data)]) == 0
    assert main(["devices", "add", "T001", "--grid", "grid-01", "--role", "officer",
                 "--data-dir", str(data)]) == 0  # fmt: skip
    assert main(["devices", "rotate", "T001", "--data-dir", str(data)]) == 0
    engine = create_db_engine(default_db_url(data))
    rows = find_audit(engine, AuditQuery(None, None, None, None, None, 100))
    engine.dispose()
    seen = {(r["action"], r["target"], r["result"]) for r in rows}
    assert {
        ("account_add", "ops1", "ok"),
        ("account_disable", "ops1", "ok"),
        ("device_add", "T001", "ok"),
        ("device_rotate", "T001", "ok"),
    } <= seen
    assert all(r["actor"].startswith("cli:") for r in rows)
