"""`xixin` — the one command-line entry point; each subcommand lives in :mod:`xixin.commands`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import cast

from xixin.commands import certs, devices, dispatch, ingest, quality, sim, up, users
from xixin.errors import EXPECTED_ERRORS, one_line
from xixin.logs import setup_logging
from xixin.options import XixinArgumentParser, add_log_level, add_log_level_everywhere

log = logging.getLogger("xixin")


def build_parser() -> argparse.ArgumentParser:
    parser = XixinArgumentParser(prog="xixin", description="Xixin intercom gateway (溪心对讲)")
    add_log_level(parser, root=True)
    # Subparsers (and theirs) are made by the parser's class: usage errors read the same.
    subparsers = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",  # what the commands register on
        parser.add_subparsers(dest="command", metavar="COMMAND", required=True),
    )
    up.add_parser(subparsers)
    devices.add_parser(subparsers)
    users.add_parser(subparsers)
    ingest.add_parser(subparsers)
    quality.add_parser(subparsers)
    sim.add_parser(subparsers)  # `xixin sim` and `xixin terminal`
    certs.add_parser(subparsers)
    dispatch.add_parser(subparsers)
    add_log_level_everywhere(parser)  # `xixin up --log-level debug` as well
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    # What xixin writes (database, recordings, journals, secrets) is its user's only.
    os.umask(0o077)
    # SIGTERM (systemd, docker stop, kill) takes the same way out as Ctrl-C, so every
    # subcommand stops what it started; `up` and `ingest` install their own handlers on top.
    # SIGINT is ours too, whatever we inherited: a shell starts background jobs with it
    # ignored, and `xixin ingest &` then never stopped on Ctrl-C sent to its PID.
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if on_main_thread else None
    previous_int = (
        signal.signal(signal.SIGINT, signal.default_int_handler) if on_main_thread else None
    )
    try:
        code: int = args.handler(args)
    except EXPECTED_ERRORS as exc:
        # Errors raised on purpose carry their explanation: one line, not a traceback.
        print(f"xixin {args.command}: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
    return code


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
