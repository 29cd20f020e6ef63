"""What every subcommand parses the same way: durations, organisations, the log level, and the
parser class that reports a usage error as one ``xixin <cmd>: …`` line."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from firmware_sim.errors import SimError
from firmware_sim.orgs import synthetic_org_yaml
from firmware_sim.scenario_spec import seconds
from protocol.org import Organisation, default_org, load_org, parse_org
from xixin.errors import UsageError

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
    """The data directory, created if missing, mode 0700 either way: it holds secrets."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)  # whatever the umask, and an operator's existing 0755 directory
    return path


# ---- secrets: never on a command line (every user of the machine reads it with ps) ----------

DB_ENV = "XIXIN_DB"


def _read_secret_file(path: Path, what: str) -> str:
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise UsageError(
                f"the {what} file {path} can be read by other users (mode {mode & 0o777:o}): "
                f"chmod 600 {path}"
            )
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {path}: {exc}") from exc
    if not text:
        raise UsageError(f"the {what} file {path} is empty")
    return text


def db_url_arg(text: str) -> str:
    """A `--db` value: refused if it holds a password (see add_database)."""
    if urlsplit(text).password is not None:
        raise argparse.ArgumentTypeError(
            "a password on the command line is visible to every user of this machine (ps): "
            f"put the database URL in ${DB_ENV} or in a 0600 file given with --db-file"
        )
    return text


DB_HELP = (
    "database URL without a password, e.g. sqlite:///var/x.db or "
    "postgresql+psycopg://xixin@host/xixin (with a password: --db-file or $XIXIN_DB)"
)


def add_database(
    parser: argparse.ArgumentParser, *, required: bool = False, default: object = None
) -> None:
    """`--db URL` (no password in it), or the URL from `--db-file` or $XIXIN_DB."""
    parser.add_argument(
        "--db",
        type=db_url_arg,
        default=default,
        help=DB_HELP + ("" if required else " (default: SQLite in the data dir)"),
    )
    parser.add_argument(
        "--db-file",
        type=Path,
        default=default,
        help="a file (mode 0600) holding the database URL",
    )


def database_url(args: argparse.Namespace, *, required: bool) -> str | None:
    """The database URL of `add_database`'s options: --db, else --db-file, else $XIXIN_DB."""
    db: str | None = getattr(args, "db", None)
    if db is not None:
        return db
    db_file: Path | None = getattr(args, "db_file", None)
    if db_file is not None:
        return _read_secret_file(db_file, "database URL")
    url = os.environ.get(DB_ENV)
    if url:
        return url
    if required:
        raise UsageError(f"a database is needed: --db, --db-file or ${DB_ENV}")
    return None


def add_gateway_account(parser: argparse.ArgumentParser, what: str) -> None:
    """`--gateway-user` and `--gateway-password-file`: the gateway's account on a broker."""
    parser.add_argument(
        "--gateway-user",
        default=os.environ.get("XIXIN_GATEWAY_USER"),
        help=f"the gateway's broker account {what} (default: $XIXIN_GATEWAY_USER)",
    )
    parser.add_argument(
        "--gateway-password-file",
        type=Path,
        help="a file (0600) with its password (default: $XIXIN_GATEWAY_PASSWORD)",
    )


def gateway_password(path: Path | None) -> str | None:
    """The gateway's password on an external broker: from a file, else $XIXIN_GATEWAY_PASSWORD."""
    if path is not None:
        return _read_secret_file(path, "gateway password")
    return os.environ.get("XIXIN_GATEWAY_PASSWORD")


def host_port(text: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:1883`); port 0 is any free port."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT, e.g. 0.0.0.0:1883")
    try:
        number = int(port)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: the port is not a number") from exc
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: the port is not in 0-65535")
    return host, number


DATA_DIR_ENV = "XIXIN_DATA_DIR"
DEFAULT_DATA_DIR = Path("var")


def default_data_dir() -> Path:
    from_env = os.environ.get(DATA_DIR_ENV)
    return Path(from_env) if from_env else DEFAULT_DATA_DIR


def data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help=f"the gateway's data directory (default: ${DATA_DIR_ENV} or ./{DEFAULT_DATA_DIR})",
    )
