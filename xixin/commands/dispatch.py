"""`xixin dispatch say`: speak text (espeak-ng on the gateway) or a WAV file to a talkgroup, a
device or the all-call as a dispatcher account, through a running gateway's API.

The account signs in with its name (`--user`, or $XIXIN_USER) and password, which is read from
$XIXIN_PASSWORD, from `--password-file`, or from the terminal (or the first line of standard
input) — never from the command line, where it would show in `ps` and the shell history.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Final

USER_ENV: Final = "XIXIN_USER"
PASSWORD_ENV: Final = "XIXIN_PASSWORD"
URL_ENV: Final = "XIXIN_URL"
DEFAULT_URL: Final = "http://127.0.0.1:8080"
FINAL_STATES: Final = frozenset({"done", "denied", "preempted", "failed"})


class DispatchError(Exception):
    """Why the command could not do it (one line for the user)."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("dispatch", help="dispatcher actions through the API")
    actions = parser.add_subparsers(dest="dispatch_action", metavar="ACTION", required=True)
    say = actions.add_parser("say", help="speak text or a WAV file as a dispatcher")
    where = say.add_mutually_exclusive_group(required=True)
    where.add_argument("--tg", help="a talkgroup, e.g. grid-07")
    where.add_argument("--device", help="a device (private call), e.g. T001")
    where.add_argument("--all", action="store_true", help="the all-call (centre only)")
    what = say.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="text to speak (espeak-ng on the gateway)")
    what.add_argument("--wav", type=Path, help="a PCM WAV file to send")
    say.add_argument("--lang", choices=("cmn", "en"), default="cmn", help="language of --text")
    say.add_argument(
        "--url",
        default=os.environ.get(URL_ENV, DEFAULT_URL),
        help=f"the gateway's console/API (default ${URL_ENV} or {DEFAULT_URL})",
    )
    say.add_argument(
        "--user", default=os.environ.get(USER_ENV), help=f"account name (default ${USER_ENV})"
    )
    say.add_argument(
        "--password-file",
        type=Path,
        help=f"file holding the password (else ${PASSWORD_ENV}, else asked)",
    )
    say.add_argument("--no-wait", action="store_true", help="return once queued")
    say.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the end")
    say.set_defaults(handler=cmd_say)  # fmt: skip


def read_password(path: Path | None) -> str:
    if path is not None:
        try:
            lines = path.read_text("utf-8").splitlines()
        except OSError as exc:
            raise DispatchError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if not lines or not lines[0]:
            raise DispatchError(f"{path} holds no password")
        return lines[0]
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return env
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    line = sys.stdin.readline().rstrip("\n")
    if not line:
        raise DispatchError(f"no password: set ${PASSWORD_ENV}, --password-file, or type it")
    return line


def _call(request: urllib.request.Request, timeout: float = 30.0) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail")
        except ValueError:
            detail = exc.reason
        raise DispatchError(f"{request.full_url}: {exc.code} {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DispatchError(f"cannot reach {request.full_url}: {exc}") from exc


def sign_in(url: str, user: str, password: str) -> str:
    form = urllib.parse.urlencode({"username": user, "password": password}).encode()
    request = urllib.request.Request(
        f"{url}/api/auth/token", data=form, method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    token = _call(request).get("access_token")
    if not isinstance(token, str):
        raise DispatchError("the gateway gave no token")
    return token


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    boundary = secrets.token_hex(16)
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode("utf-8") + b"\r\n"
        )  # fmt: skip
    for name, (filename, data) in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: audio/wav\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _target(args: argparse.Namespace) -> str:
    if args.all:
        return "all"
    return f"tg:{args.tg}" if args.tg else f"device:{args.device}"


def cmd_say(args: argparse.Namespace) -> int:
    try:
        job = say(args)
    except DispatchError as exc:
        print(f"xixin dispatch say: {exc}", file=sys.stderr)
        return 1
    print(f"{job['id']}: {job['state']} to {job['target']} ({job['duration_s']} s)"
          + (f", burst {job['burst']}" if job.get("burst") else "")
          + (f", {job['reason']}" if job.get("reason") else "")
          + (f" (by {job['by']})" if job.get("by") else ""))  # fmt: skip
    return 0 if job["state"] in ("done", "queued", "waiting", "talking") else 1


def say(args: argparse.Namespace) -> dict[str, Any]:
    if not args.user:
        raise DispatchError(f"which account? --user or ${USER_ENV}")
    url = args.url.rstrip("/")
    token = sign_in(url, args.user, read_password(args.password_file))
    fields = {"target": _target(args)}
    files: dict[str, tuple[str, bytes]] = {}
    if args.wav is not None:
        try:
            files["wav"] = (args.wav.name, args.wav.read_bytes())
        except OSError as exc:
            raise DispatchError(f"cannot read {args.wav}: {exc.strerror or exc}") from exc
    else:
        fields |= {"text": args.text, "lang": args.lang}
    body, content_type = multipart(fields, files)
    auth = {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(
        f"{url}/api/voice/say", data=body, method="POST",
        headers={**auth, "Content-Type": content_type},
    )  # fmt: skip
    job = _call(request)
    deadline = time.monotonic() + args.timeout
    while not args.no_wait and job["state"] not in FINAL_STATES:
        if time.monotonic() > deadline:
            raise DispatchError(f"{job['id']} still {job['state']} after {args.timeout:g} s")
        time.sleep(0.2)
        job = _call(urllib.request.Request(f"{url}/api/voice/say/{job['id']}", headers=auth))
    return job
