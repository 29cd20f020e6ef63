"""What every subcommand parses the same way: durations, organisations, the log level, and the
parser class that reports a usage error as one ``xixin <cmd>: …`` line."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from firmware_sim.errors import SimError
from firmware_sim.orgs import synthetic_org_yaml
from firmware_sim.scenario_spec import seconds
from protocol.org import Organisation, default_org, load_org, parse_org

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_LEVEL_ENV = "XIXIN_LOG_LEVEL"
SHIPPED_ORGS = ("longxi", "default")
SYNTHETIC = "synthetic:"
DURATION_HELP = "90, 90s, 10m, 1.5h or 500ms; a bare number is seconds"
ORG_HELP = (
    "organisation: longxi (the shipped Longxi 1-3-13 org), synthetic:N (N generated grids) "
    "or an org YAML file"
)


class XixinArgumentParser(argparse.ArgumentParser):
    """Usage errors as every other error of a subcommand: ``xixin <cmd>: <message>``, exit 2.

    The root parser and (through ``add_subparsers``, which makes subparsers of its parser's
    class) every subparser use it.
    """

    def error(self, message: str) -> NoReturn:
        # `xixin devices list` reports as `xixin devices`, like the command's own errors.
        command = " ".join(self.prog.split()[:2])
        self.exit(2, f"{command}: {message} (see: {self.prog} --help)\n")

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """As argparse's, but arguments nobody took are the subcommand's error, not the
        root's: ``xixin devices: unrecognized arguments: --bogus``."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self._chosen(parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _chosen(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        """The (sub)subcommand's parser the parsed arguments chose."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(parsed, action.dest, None) or "")
                if isinstance(chosen, XixinArgumentParser):
                    return chosen._chosen(parsed)
        return self


# ---- durations --------------------------------------------------------------------------------


def duration(text: str) -> float:
    """argparse type of every duration option: ``90``, ``90s``, ``10m``, ``1.5h``, ``500ms``."""
    try:
        return seconds(text, "duration")
    except SimError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration like 90, 90s, 10m, 1.5h or 500ms"
        ) from exc


# ---- log level --------------------------------------------------------------------------------


def log_level(text: str) -> str:
    """argparse type of ``--log-level``: one of :data:`LOG_LEVELS`, any case; upper-cased."""
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"invalid log level {text!r} (choose from {', '.join(LOG_LEVELS)})"
        )
    return level


def add_log_level(parser: argparse.ArgumentParser, root: bool = False) -> None:
    """``--log-level`` on the root (default: ``$XIXIN_LOG_LEVEL`` or INFO) and on a subparser
    (no default: a level given before the subcommand is not overwritten)."""
    parser.add_argument(
        "--log-level",
        type=log_level,
        metavar="LEVEL",
        default=os.environ.get(LOG_LEVEL_ENV, "INFO") if root else argparse.SUPPRESS,
        help=f"{', '.join(LOG_LEVELS)} (any case; default: ${LOG_LEVEL_ENV} or INFO)",
    )


def add_log_level_everywhere(parser: argparse.ArgumentParser) -> None:
    """Give every subparser below `parser` ``--log-level``, so it is accepted after any
    subcommand too (``xixin up --log-level debug``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in {id(p): p for p in action.choices.values()}.values():
                if "--log-level" not in sub._option_string_actions:
                    add_log_level(sub)
                add_log_level_everywhere(sub)


# ---- organisations ----------------------------------------------------------------------------


def org_source(text: str) -> str:
    """argparse type of every ``--org``: a shipped name, ``synthetic:N`` or a file path (read
    when the command runs, so a bad file is reported as the command's error)."""
    if text.startswith(SYNTHETIC):
        _grids(text)
    return text


def add_org(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--org`` as every subcommand takes it (None: the shipped Longxi org)."""
    parser.add_argument(
        "--org",
        type=org_source,
        default=default,
        metavar="ORG",
        help=f"{ORG_HELP} (default: longxi)",
    )


def _grids(source: str) -> int:
    try:
        grids = int(source[len(SYNTHETIC) :])
    except ValueError:
        grids = 0
    if not 1 <= grids <= 5000:
        raise argparse.ArgumentTypeError(
            f"bad org {source!r}: expected synthetic:N with 1 <= N <= 5000 grids"
        )
    return grids


def load_org_source(source: str | Path | None) -> Organisation:
    """The organisation an ``--org`` value names (None: the shipped Longxi org)."""
    if source is None or str(source) in SHIPPED_ORGS:
        return default_org()
    text = str(source)
    if text.startswith(SYNTHETIC):
        return parse_org(synthetic_org_yaml(_synthetic(text)), source=text)
    return load_org(Path(text))


def org_file(source: str | Path | None, data_dir: Path) -> Path | None:
    """An ``--org`` value as the org file a gateway service takes: None for the shipped org,
    a generated file in `data_dir` for ``synthetic:N``, the file itself otherwise (checked)."""
    if source is None or str(source) in SHIPPED_ORGS:
        return None
    text = str(source)
    if text.startswith(SYNTHETIC):
        grids = _synthetic(text)
        make_data_dir(data_dir)
        path = data_dir / f"synthetic-{grids}.yaml"
        path.write_text(synthetic_org_yaml(grids), encoding="utf-8")
        return path
    path = Path(text)
    load_org(path)  # a bad file is refused here, before anything starts
    return path


def _synthetic(text: str) -> int:
    try:
        return _grids(text)
    except argparse.ArgumentTypeError as exc:
        raise SimError(str(exc)) from exc


# ---- data directory ---------------------------------------------------------------------------


def make_data_dir(path: Path) -> Path:
    """Create a data directory that does not exist yet (mode 0700: it holds secrets)."""
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
        else:
            os.chmod(path, 0o700)  # whatever the umask
    return path
