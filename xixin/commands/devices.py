"""``xixin devices``: provision terminals (add, import, list, disable, enable, rotate).

Every change regenerates the broker's password file and ACL in the data directory, so a running
managed broker only needs a reload (``xixin up`` watches those files). Handlers return an exit
code; errors are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.auth.audit import record_cli
from gateway.broker_auth import sync_broker_auth
from gateway.errors import GatewayError
from gateway.store.db import create_db_engine, default_db_url, migrate
from gateway.store.registry import Device, DeviceRegistry, InvalidDeviceError, NewDevice
from protocol.org import ROLES, Organisation
from xixin.errors import EXPECTED_OR_OS_ERRORS, one_line
from xixin.options import (
    DATA_DIR_ENV,
    DEFAULT_DATA_DIR,
    add_database,
    add_org,
    database_url,
    default_data_dir,
    load_org_source,
    make_data_dir,
)

EXIT_OK = 0
EXIT_ERROR = 2

Handler = Callable[[argparse.Namespace], int]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``devices`` and its actions; each action sets ``handler`` (Namespace -> int)."""
    # SUPPRESS: options may come before or after the action without the action's parser
    # overwriting a value given earlier with its default.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument(
        "--data-dir",
        type=Path,
        help=f"data directory (default: ${DATA_DIR_ENV} or ./{DEFAULT_DATA_DIR})",
    )
    add_database(common, default=argparse.SUPPRESS)
    add_org(common, default=argparse.SUPPRESS)

    parser = subparsers.add_parser("devices", help="provision terminals", parents=[common])
    actions = parser.add_subparsers(dest="devices_action", metavar="ACTION", required=True)

    add = actions.add_parser("add", parents=[common], help="add a device and print its secret once")
    add.add_argument("device", help="device id, e.g. T001")
    add.add_argument(
        "--grid", "--unit", dest="unit", required=True, help="grid, area or 'centre' it belongs to"
    )
    add.add_argument("--role", required=True, choices=ROLES, help="what the terminal is for")
    add.add_argument("--name", default=None, help="display name (default: the id)")
    add.add_argument("--json", action="store_true", help="print the result as JSON")
    add.set_defaults(handler=cmd_add)

    bulk = actions.add_parser(
        "import",
        parents=[common],
        help="add the devices of a CSV file (id,grid,role[,name]): all of them or none",
    )
    bulk.add_argument("file", type=Path, help="CSV with a header row; UTF-8 (a BOM is fine)")
    bulk.add_argument(
        "--secrets-out",
        type=Path,
        default=None,
        help="write id,secret CSV here (created 0600, never overwritten); default: stdout",
    )
    bulk.set_defaults(handler=cmd_import)

    listing = actions.add_parser("list", parents=[common], help="list devices")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=cmd_list)

    for name, handler, text in (
        ("disable", cmd_disable, "refuse the device at the broker"),
        ("enable", cmd_enable, "allow a disabled device again"),
        ("rotate", cmd_rotate, "replace the device's secret and print the new one once"),
    ):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("device", help="device id")
        if name == "rotate":
            action.add_argument("--json", action="store_true", help="print the result as JSON")
        action.set_defaults(handler=handler)


# ---- plumbing --------------------------------------------------------------------------------


def data_dir_of(args: argparse.Namespace) -> Path:
    explicit: Path | None = getattr(args, "data_dir", None)
    return explicit if explicit is not None else default_data_dir()


def org_of(args: argparse.Namespace) -> Organisation:
    return load_org_source(getattr(args, "org", None))


@contextmanager
def _registry(args: argparse.Namespace) -> Iterator[tuple[DeviceRegistry, Organisation, Path]]:
    data_dir = make_data_dir(data_dir_of(args))
    org = org_of(args)
    engine = create_db_engine(database_url(args, required=False) or default_db_url(data_dir))
    try:
        migrate(engine)
        yield DeviceRegistry(engine, org), org, data_dir
    finally:
        engine.dispose()


def _guarded(run: Callable[[], int]) -> int:
    try:
        return run()
    except EXPECTED_OR_OS_ERRORS as exc:
        print(f"xixin devices: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


def _width(text: str) -> int:
    """Terminal columns: CJK names (wide characters) take two each."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_json(device: Device) -> dict[str, Any]:
    return {
        "id": device.id,
        "name": device.name,
        "unit": device.unit,
        "role": device.role,
        "enabled": device.enabled,
        "created_at": _iso(device.created_at),
    }


def _print_secret(headline: str, device_id: str, secret: str) -> None:
    print(headline)
    print("Secret (shown only this once; only a hash is stored):")
    print(f"  {secret}")
    print(f"Configure the terminal with username {device_id} and this secret as its password.")


# ---- handlers --------------------------------------------------------------------------------


def cmd_add(args: argparse.Namespace) -> int:
    def run() -> int:
        with _registry(args) as (registry, org, data_dir):
            device, secret = registry.add(args.device, args.unit, args.role, name=args.name)
            sync_broker_auth(registry, org, data_dir)
            detail = {"unit": device.unit, "role": device.role}
            record_cli(registry.engine, "device_add", [device.id], detail)
        if args.json:
            print(json.dumps({**_as_json(device), "secret": secret}, ensure_ascii=False))
        else:
            where = f"{device.unit} ({org.unit_name(device.unit)})"
            _print_secret(f"Added device {device.id}: {device.role} at {where}.", device.id, secret)
        return EXIT_OK

    return _guarded(run)


def cmd_list(args: argparse.Namespace) -> int:
    def run() -> int:
        with _registry(args) as (registry, _org, _data_dir):
            devices = registry.list()
        if args.json:
            print(json.dumps([_as_json(d) for d in devices], ensure_ascii=False))
            return EXIT_OK
        header = ("ID", "NAME", "UNIT", "ROLE", "STATE", "CREATED")
        rows = [
            (
                d.id,
                d.name,
                d.unit,
                d.role,
                "enabled" if d.enabled else "DISABLED",
                _iso(d.created_at),
            )
            for d in devices
        ]
        widths = [max(_width(r[i]) for r in (header, *rows)) for i in range(len(header))]
        for row in (header, *rows):
            cells = (c + " " * (w - _width(c)) for c, w in zip(row, widths, strict=True))
            print("  ".join(cells).rstrip())
        if not rows:
            print(
                "(no devices; add one with: xixin devices add T001 --grid grid-01 --role officer)"
            )
        return EXIT_OK

    return _guarded(run)


def _toggle(args: argparse.Namespace, enable: bool) -> int:
    def run() -> int:
        with _registry(args) as (registry, org, data_dir):
            (registry.enable if enable else registry.disable)(args.device)
            sync_broker_auth(registry, org, data_dir)
            action = "device_enable" if enable else "device_disable"
            record_cli(registry.engine, action, [args.device])
        print(f"Device {args.device} {'enabled' if enable else 'disabled'}.")
        return EXIT_OK

    return _guarded(run)


def cmd_disable(args: argparse.Namespace) -> int:
    return _toggle(args, enable=False)


def cmd_enable(args: argparse.Namespace) -> int:
    return _toggle(args, enable=True)


def cmd_rotate(args: argparse.Namespace) -> int:
    def run() -> int:
        with _registry(args) as (registry, org, data_dir):
            secret = registry.rotate(args.device)
            sync_broker_auth(registry, org, data_dir)
            record_cli(registry.engine, "device_rotate", [args.device])
        if args.json:
            print(json.dumps({"id": args.device, "secret": secret}))
        else:
            _print_secret(f"New secret for device {args.device}.", args.device, secret)
        return EXIT_OK

    return _guarded(run)


# ---- bulk import ------------------------------------------------------------------------------

MAX_IMPORT_ROWS = 10_000


class ImportFileError(GatewayError):
    """The import file cannot be read as a device list at all."""


Problem = tuple[int, str]  # (line, what is wrong)


def _read_import(path: Path) -> tuple[list[tuple[int, NewDevice]], list[Problem]]:
    """(line, device) rows and one problem per bad line; raises ImportFileError for the file."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = {(name or "").strip().lower() for name in reader.fieldnames or ()}
            unit_column = "grid" if "grid" in header else "unit"
            if not {"id", "role", unit_column} <= header:
                raise ImportFileError(
                    f"{path}: the header must name id, grid (or unit), role and optionally name"
                )
            rows: list[tuple[int, NewDevice]] = []
            problems: list[Problem] = []
            for record in reader:
                if None in record:  # more cells than the header has columns
                    problems.append((reader.line_num, "more cells than the header"))
                    continue
                fields = {(k or "").strip().lower(): (v or "").strip() for k, v in record.items()}
                if not any(fields.values()):
                    continue  # a blank line
                if len(rows) + len(problems) >= MAX_IMPORT_ROWS:
                    raise ImportFileError(f"{path}: more than {MAX_IMPORT_ROWS} devices")
                device = NewDevice(
                    fields["id"], fields[unit_column], fields["role"], fields.get("name") or None
                )
                rows.append((reader.line_num, device))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ImportFileError(f"{path}: not a UTF-8 CSV file: {exc}") from exc
    return rows, problems


def _check_import(registry: DeviceRegistry, rows: list[tuple[int, NewDevice]]) -> list[Problem]:
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    existing = registry.existing_ids(device.id for _, device in rows)
    for line, device in rows:
        try:
            registry.check_new(device.id, device.unit, device.role, device.name)
        except InvalidDeviceError as exc:
            problems.append((line, str(exc)))
            continue
        key = device.id.lower()
        if key in first_line:
            problems.append((line, f"device id {device.id!r} repeats line {first_line[key]}"))
        elif key in existing:
            problems.append((line, f"device {existing[key]!r} already exists"))
        first_line.setdefault(key, line)
    return problems


def _open_secrets(path: Path | None) -> Any:
    """The secrets destination, opened before any device exists: created 0600, never an
    existing file (a secret that cannot be written must not be made)."""
    if path is None:
        return sys.stdout
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ImportFileError(f"{path} exists; secrets are never written over a file") from exc
    return os.fdopen(fd, "w", encoding="utf-8", newline="")


def cmd_import(args: argparse.Namespace) -> int:
    def run() -> int:
        rows, problems = _read_import(args.file)
        with _registry(args) as (registry, org, data_dir):
            problems += _check_import(registry, rows)
            if problems:
                for line, problem in sorted(problems):
                    print(f"xixin devices: {args.file}: line {line}: {problem}", file=sys.stderr)
                raise ImportFileError(f"{len(problems)} bad row(s); no device was imported")
            out = _open_secrets(args.secrets_out)
            try:
                created = registry.add_many([device for _, device in rows])
                writer = csv.writer(out)
                writer.writerow(["id", "secret"])
                writer.writerows((device.id, secret) for device, secret in created)
            except BaseException:
                if out is not sys.stdout:
                    out.close()
                    args.secrets_out.unlink(missing_ok=True)
                raise
            if out is not sys.stdout:
                out.close()
            sync_broker_auth(registry, org, data_dir)
            record_cli(registry.engine, "device_add", [device.id for device, _ in created])
        where = f"in {args.secrets_out} (mode 0600)" if args.secrets_out else "above"
        print(
            f"Imported {len(created)} devices; their secrets are {where}, shown only this once.",
            file=sys.stderr if args.secrets_out is None else sys.stdout,
        )
        return EXIT_OK

    return _guarded(run)
