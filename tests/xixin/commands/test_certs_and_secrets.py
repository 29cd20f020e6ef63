"""`xixin certs`, listener options, and secrets kept off the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xixin.cli import build_parser, main


def test_certs_init_then_a_client_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "var"
    assert main(["certs", "init", "--data-dir", str(data), "--host", "gw.example"]) == 0
    out = capsys.readouterr().out
    assert "terminals trust the CA in" in out and "gw.example" in out
    tls = data / "tls"
    assert {p.name for p in tls.iterdir()} == {"ca.pem", "ca.key", "server.pem", "server.key"}
    assert (tls / "server.key").stat().st_mode & 0o777 == 0o600
    assert main(["certs", "client", "T001", "--data-dir", str(data)]) == 0
    assert (tls / "T001.key").stat().st_mode & 0o777 == 0o600
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tls / "ca.pem"), str(tls / "T001.pem")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    assert main(["certs", "client", "T 1", "--data-dir", str(data)]) == 2  # not a device id


def test_a_client_certificate_needs_a_ca_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", "client", "T001", "--data-dir", str(tmp_path)]) == 2
    assert "run `xixin certs init`" in capsys.readouterr().err


def test_listener_options() -> None:
    args = build_parser().parse_args(
        ["up", "--mqtt-listen", "0.0.0.0:1883", "--mqtt-listen", "[::1]:0",
         "--mqtt-tls-listen", "0.0.0.0:8883"]
    )  # fmt: skip
    assert args.mqtt_listen == [("0.0.0.0", 1883), ("::1", 0)]
    assert args.mqtt_tls_listen == [("0.0.0.0", 8883)]


@pytest.mark.parametrize("bad", ["1883", "host:", "host:99999", "host:x"])
def test_bad_listeners_are_usage_errors(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["up", "--mqtt-listen", bad])
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("xixin up: ")


def test_tls_listener_without_certificates_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["up", "--data-dir", str(tmp_path), "--http-port", "0",
         "--mqtt-listen", "127.0.0.1:0", "--mqtt-tls-listen", "127.0.0.1:0"]
    )  # fmt: skip
    assert code == 2
    assert "run `xixin certs init" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["up", "devices list", "ingest --broker mqtt://h:1"])
def test_a_database_password_on_the_command_line_is_refused(command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "xixin", *command.split(),
         "--db", "postgresql+psycopg://xixin:hunter2@127.0.0.1:1/x"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "visible to every user" in done.stderr and "XIXIN_DB" in done.stderr
    assert done.stderr.count("\n") <= 2, done.stderr


def test_the_database_url_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xixin.options import database_url

    url_file = tmp_path / "db.url"
    url_file.write_text("postgresql+psycopg://xixin:hunter2@db/x\n")
    url_file.chmod(0o600)
    args = build_parser().parse_args(["up", "--db-file", str(url_file)])
    assert database_url(args, required=False) == "postgresql+psycopg://xixin:hunter2@db/x"
    monkeypatch.setenv("XIXIN_DB", "sqlite:///from-env.db")
    assert database_url(build_parser().parse_args(["up"]), required=False) == (
        "sqlite:///from-env.db"
    )


def test_a_database_url_file_others_can_read_is_refused(tmp_path: Path) -> None:
    from xixin.errors import UsageError
    from xixin.options import database_url

    url_file = tmp_path / "db.url"
    url_file.write_text("postgresql+psycopg://xixin:hunter2@db/x\n")
    url_file.chmod(0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        database_url(build_parser().parse_args(["up", "--db-file", str(url_file)]), required=False)


def test_errors_are_one_line_without_the_sql() -> None:
    from xixin.errors import one_line

    text = "(psycopg.OperationalError) connection refused\n\tIs the server running?\n"
    text += "[SQL: SELECT 1]\n(Background on this error at: https://sqlalche.me/e/21/e3q8)"
    assert one_line(RuntimeError(text)) == (
        "(psycopg.OperationalError) connection refused Is the server running?"
    )


def test_devices_tightens_an_existing_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    assert main(["devices", "list", "--data-dir", str(data)]) == 0
    assert data.stat().st_mode & 0o777 == 0o700
