"""The one `xixin` command line: handlers, help texts, durations, --org, --log-level, errors."""

from __future__ import annotations

import argparse
import io
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.org import default_org
from xixin.cli import build_parser, main
from xixin.logs import CLEAR_LINE, ConsoleHandler, live_line, setup_logging
from xixin.options import duration, load_org_source, make_data_dir, org_file


def _parsers(
    parser: argparse.ArgumentParser, name: str = "xixin"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def _leaves() -> list[tuple[str, argparse.ArgumentParser]]:
    return [
        (name, p)
        for name, p in _parsers(build_parser())
        if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)
    ]


def test_every_option_and_subcommand_has_help() -> None:
    missing = []
    for name, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{name} {c.dest}" for c in action._choices_actions if not c.help]
                continue
            if not (action.help or "").strip():
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_every_command_sets_a_handler_and_none_a_func() -> None:
    for name, parser in _leaves():
        assert callable(parser.get_default("handler")), name
        assert parser.get_default("func") is None, name


def test_every_subparser_reports_usage_errors_the_xixin_way() -> None:
    for name, parser in _parsers(build_parser()):
        assert type(parser).__name__ == "XixinArgumentParser", name
        assert parser.prog == name


@pytest.mark.parametrize(
    ("argv", "dest", "expected"),
    [
        (["up", "--duration", "10s"], "duration", 10.0),
        (["up", "--duration", "90"], "duration", 90.0),
        (["up", "--max-burst", "500ms"], "max_burst", 0.5),
        (["sim", "--duration", "10m"], "duration", 600.0),
        (["sim", "--beacon-interval", "1.5h"], "beacon_interval", 5400.0),
        (["sim", "--outage-every", "2m", "--outage-length", "30s"], "outage_every", 120.0),
        (["sim", "--outage-length", "30s"], "outage_length", 30.0),
        (
            ["ingest", "--broker", "mqtt://h:1", "--db", "x", "--duration", "1.5h"],
            "duration",
            5400.0,
        ),
        (
            ["ingest", "--broker", "mqtt://h:1", "--db", "x", "--status-every", "500ms"],
            "status_every",
            0.5,
        ),
    ],
)
def test_durations_take_units_everywhere(argv: list[str], dest: str, expected: float) -> None:
    assert getattr(build_parser().parse_args(argv), dest) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["10x", "-5", "s", "1m30s", ""])
def test_a_bad_duration_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)


def test_every_option_of_seconds_parses_as_a_duration() -> None:
    """Options whose help says they take a duration use the one duration parser."""
    for name, parser in _parsers(build_parser()):
        for action in parser._actions:
            if "90s, 10m" in (action.help or ""):
                assert action.type is duration, f"{name} {action.option_strings}"


@pytest.mark.parametrize(
    "argv",
    [
        ["--log-level", "debug", "up"],
        ["up", "--log-level", "debug"],
        ["--log-level", "info", "up", "--log-level", "Debug"],
        ["devices", "list", "--log-level", "DEBUG"],
        ["devices", "--log-level", "debug", "list"],
        ["sim", "scenario", "f.yaml", "--log-level", "debug"],
        ["terminal", "--device", "T1", "--log-level", "debug"],
        ["quality", "x.wav", "--log-level", "debug"],
    ],
)
def test_log_level_before_or_after_the_subcommand(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).log_level == "DEBUG"


def test_log_level_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XIXIN_LOG_LEVEL", "warning")
    assert build_parser().parse_args(["up"]).log_level == "WARNING"
    assert build_parser().parse_args(["up", "--log-level", "error"]).log_level == "ERROR"
    monkeypatch.delenv("XIXIN_LOG_LEVEL")
    assert build_parser().parse_args(["devices", "list"]).log_level == "INFO"


def test_a_bad_log_level_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["up", "--log-level", "loud"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("xixin up: argument --log-level: invalid log level 'loud'")
    assert err.count("\n") == 1 and "xixin up --help" in err


@pytest.mark.parametrize("command", ["up", "devices", "ingest", "sim", "terminal"])
@pytest.mark.parametrize("org", ["longxi", "synthetic:4", "/some/org.yaml"])
def test_every_command_takes_the_same_org_values(command: str, org: str) -> None:
    argv = {
        "up": ["up"],
        "devices": ["devices", "list"],
        "ingest": ["ingest", "--broker", "mqtt://h:1", "--db", "x"],
        "sim": ["sim"],
        "terminal": ["terminal", "--device", "T1"],
    }[command]
    assert build_parser().parse_args([*argv, "--org", org]).org == org


def test_a_malformed_synthetic_org_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--org", "synthetic:many"])
    assert capsys.readouterr().err.startswith("xixin up: argument --org: bad org")


def test_org_values_resolve(tmp_path: Path) -> None:
    assert load_org_source("longxi").grids == default_org().grids
    assert load_org_source(None).grids == default_org().grids
    assert len(load_org_source("synthetic:3").grids) == 3
    assert org_file("longxi", tmp_path / "a") is None
    data_dir = tmp_path / "new" / "var"
    written = org_file("synthetic:3", data_dir)
    assert written is not None and written.parent == data_dir
    assert len(load_org_source(str(written)).grids) == 3
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert org_file(str(written), tmp_path) == written


def test_make_data_dir_tightens_an_existing_directory(tmp_path: Path) -> None:
    # It holds the database and secrets: an operator's existing 0755 directory becomes 0700.
    tmp_path.chmod(0o755)
    assert make_data_dir(tmp_path) == tmp_path
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700


def test_devices_take_a_shipped_org_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["devices", "--data-dir", str(tmp_path / "var")]
    assert (
        main([*base, "--org", "longxi", "add", "T1", "--grid", "grid-01", "--role", "officer"]) == 0
    )
    assert main([*base, "list", "--org", "synthetic:2", "--json"]) == 0
    assert '"T1"' in capsys.readouterr().out


def test_handler_errors_keep_the_command_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["devices", "--data-dir", str(tmp_path), "disable", "ghost"]) == 2
    assert capsys.readouterr().err == "xixin devices: no device 'ghost'\n"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_records_clear_the_progress_line_and_redraw_it() -> None:
    screen = Tty()
    handler = ConsoleHandler(screen)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("tests.xixin.live")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("before")
        with live_line(screen) as line:
            line.write("\rt=1s connected 3/3")
            line.flush()
            logger.warning("broker restarted")
            line.write("\rt=2s connected 3/3")
        logger.warning("after")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert screen.getvalue() == (
        "before\n"
        "\rt=1s connected 3/3"
        f"{CLEAR_LINE}broker restarted\n\rt=1s connected 3/3"
        "\rt=2s connected 3/3"
        "after\n"
    )


def test_chatty_libraries_are_quieted_unless_debugging() -> None:
    try:
        setup_logging("INFO")
        assert logging.getLogger("alembic.runtime.migration").getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("uvicorn.access").getEffectiveLevel() == logging.WARNING
        setup_logging("DEBUG")
        assert logging.getLogger("alembic").level == logging.NOTSET
    finally:
        setup_logging("INFO")


def _xixin(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xixin", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_log_level_after_the_subcommand_and_one_error_prefix(tmp_path: Path) -> None:
    """As a user runs it: a level after the subcommand rules the logging, and every error,
    argparse's included, is one `xixin <cmd>: …` line with exit 2."""
    data = ["--data-dir", str(tmp_path / "var")]
    env = {"XIXIN_LOG_LEVEL": "INFO"}
    chatty = _xixin("devices", *data, "list", env=env)
    assert chatty.returncode == 0, chatty.stderr
    assert " INFO gateway.store.db: " in chatty.stderr
    assert "alembic" not in chatty.stderr  # Alembic's context lines are quieted
    quiet = _xixin("devices", *data, "list", "--log-level", "warning", env=env)
    assert quiet.returncode == 0 and quiet.stderr == ""
    quiet_first = _xixin("--log-level", "WARNING", "devices", *data, "list", env=env)
    assert quiet_first.returncode == 0 and quiet_first.stderr == ""

    usage = _xixin("up", "--log-level", "debug", "--duration", "ten")
    assert usage.returncode == 2
    assert usage.stderr.startswith("xixin up: argument --duration: 'ten' is not a duration")
    assert usage.stderr.count("\n") == 1
    unknown = _xixin("devices", "--bogus", "list")
    assert unknown.returncode == 2 and unknown.stderr.startswith("xixin devices: ")
    handled = _xixin("devices", *data, "rotate", "ghost", "--log-level", "error")
    assert (handled.returncode, handled.stderr) == (2, "xixin devices: no device 'ghost'\n")
    missing = _xixin("quality", str(tmp_path / "missing.wav"))
    assert missing.returncode == 2 and missing.stderr.startswith("xixin quality: cannot read")
    org = _xixin("up", *data, "--http-port", "0", "--org", str(tmp_path / "none.yaml"))
    assert org.returncode == 2 and org.stderr.startswith("xixin up: cannot read org file")


def test_sim_creates_a_new_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "sim"
    done = _xixin(
        "sim",
        "--org",
        "synthetic:1",
        "--data-dir",
        str(data_dir),
        "--fleet",
        "2",
        "--duration",
        "2s",
        "--beacon-interval",
        "500ms",
        "--json",
        str(tmp_path / "report.json"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert (data_dir / "synthetic-1.yaml").exists()
    assert "xixin sim: 2 terminals on" in done.stdout
    assert "device S0001 added" not in done.stderr  # one summary line, not one per device
    assert "setup plugin" not in done.stderr  # Alembic, in the recorder process too
