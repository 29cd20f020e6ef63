"""``xixin users``: accounts of people (dispatchers, administrators, viewers), not devices.

Passwords are hashed with argon2id and never taken on the command line (it ends up in shell
history and in ``ps``): a new password is read from the terminal (asked twice) or from standard
input when it is not a terminal, or generated and printed once. Handlers return an exit code;
errors are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.auth.audit import record_cli
from gateway.auth.errors import InvalidAccountError
from gateway.auth.roles import ROLES_HELP
from gateway.auth.store import Account, AccountStore
from gateway.store.db import create_db_engine, default_db_url, migrate
from xixin.commands.devices import data_dir_of, org_of
from xixin.errors import EXPECTED_OR_OS_ERRORS
from xixin.options import DATA_DIR_ENV, DEFAULT_DATA_DIR, add_database, add_org, database_url

EXIT_OK = 0
EXIT_ERROR = 2
_ERRORS: tuple[type[Exception], ...] = (*EXPECTED_OR_OS_ERRORS, EOFError)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument(
        "--data-dir",
        type=Path,
        help=f"data directory (default: ${DATA_DIR_ENV} or ./{DEFAULT_DATA_DIR})",
    )
    add_database(common, default=argparse.SUPPRESS)
    add_org(common, default=argparse.SUPPRESS)

    parser = subparsers.add_parser(
        "users", help="accounts of dispatchers, administrators and viewers", parents=[common]
    )
    actions = parser.add_subparsers(dest="users_action", metavar="ACTION", required=True)

    add = actions.add_parser(
        "add", parents=[common], help="add an account; its password is generated and shown once"
    )
    add.add_argument("name", help="account name, e.g. wang-li (a-z 0-9 _ -)")
    add.add_argument("--role", required=True, help=ROLES_HELP)
    add.add_argument(
        "--ask-password",
        action="store_true",
        help="read the password from the terminal (or stdin) instead of generating one",
    )
    add.set_defaults(handler=cmd_add)

    listing = actions.add_parser("list", parents=[common], help="list accounts")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=cmd_list)

    for name, handler, text in (
        ("disable", cmd_disable, "refuse the account's sign-in and end its sessions"),
        ("enable", cmd_enable, "allow a disabled account again"),
        ("passwd", cmd_passwd, "set a new password, read from the terminal (or stdin)"),
        ("reset", cmd_reset, "replace the password by a generated one, shown once"),
    ):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("name", help="account name")
        action.set_defaults(handler=handler)


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[AccountStore]:
    data_dir = data_dir_of(args)
    engine = create_db_engine(database_url(args, required=False) or default_db_url(data_dir))
    try:
        migrate(engine)
        yield AccountStore(engine, org_of(args))
    finally:
        engine.dispose()


def _guarded(run: Callable[[], int]) -> int:
    try:
        return run()
    except _ERRORS as exc:
        print(f"xixin users: {exc or 'no password given'}", file=sys.stderr)
        return EXIT_ERROR


def read_new_password() -> str:
    """A new password: asked twice on a terminal, else the first line of standard input."""
    if sys.stdin.isatty():
        first = getpass.getpass("New password: ")
        if getpass.getpass("Repeat it: ") != first:
            raise InvalidAccountError("the two passwords differ; nothing changed")
        return first
    line = sys.stdin.readline()
    if not line:
        raise EOFError("no password on standard input")
    return line.rstrip("\r\n")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_json(account: Account) -> dict[str, Any]:
    return {
        "name": account.name,
        "role": str(account.role),
        "enabled": account.enabled,
        "created_at": _iso(account.created_at),
    }


def print_password(headline: str, password: str) -> None:
    print(headline)
    print("Password (shown only this once; only an argon2id hash is stored):")
    print(f"  {password}")


def cmd_add(args: argparse.Namespace) -> int:
    def run() -> int:
        password = read_new_password() if args.ask_password else None
        with _store(args) as store:
            account, generated = store.add(args.name, args.role, password)
            record_cli(store.engine, "account_add", [account.name], {"role": str(account.role)})
        headline = f"Added account {account.name} ({account.role})."
        if password is None:
            print_password(headline, generated)
        else:
            print(headline)
        return EXIT_OK

    return _guarded(run)


def cmd_list(args: argparse.Namespace) -> int:
    def run() -> int:
        with _store(args) as store:
            accounts = store.list()
        if args.json:
            print(json.dumps([_as_json(a) for a in accounts]))
            return EXIT_OK
        header = ("NAME", "ROLE", "STATE", "CREATED")
        rows = [
            (a.name, str(a.role), "enabled" if a.enabled else "DISABLED", _iso(a.created_at))
            for a in accounts
        ]
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
        for row in (header, *rows):
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if not rows:
            print("(no accounts; add one with: xixin users add NAME --role centre)")
        return EXIT_OK

    return _guarded(run)


def _toggle(args: argparse.Namespace, enable: bool) -> int:
    def run() -> int:
        with _store(args) as store:
            store.set_enabled(args.name, enable)
            record_cli(store.engine, f"account_{'enable' if enable else 'disable'}", [args.name])
        print(f"Account {args.name} {'enabled' if enable else 'disabled; its sessions ended'}.")
        return EXIT_OK

    return _guarded(run)


def cmd_disable(args: argparse.Namespace) -> int:
    return _toggle(args, enable=False)


def cmd_enable(args: argparse.Namespace) -> int:
    return _toggle(args, enable=True)


def cmd_passwd(args: argparse.Namespace) -> int:
    def run() -> int:
        with _store(args) as store:
            store.get(args.name)  # an unknown account before asking for a password
            store.set_password(args.name, read_new_password())
            record_cli(store.engine, "password_change", [args.name])
        print(f"Password of {args.name} changed; its sessions ended.")
        return EXIT_OK

    return _guarded(run)


def cmd_reset(args: argparse.Namespace) -> int:
    def run() -> int:
        with _store(args) as store:
            password = store.reset_password(args.name)
            record_cli(store.engine, "account_reset", [args.name])
        print_password(f"New password for {args.name}; its sessions ended.", password)
        return EXIT_OK

    return _guarded(run)
