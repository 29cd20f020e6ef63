"""`xixin terminal --device T001`: the softphone in a terminal window.

Keys: hold SPACE to talk (terminals repeat a held key; the softphone releases when the repeats
stop), `t` toggles talking for keyboards without repeat, `1`-`9` select the talkgroup, `e` raises
or cancels an SOS, `q` quits. Without a terminal on stdin it reads the same keys as lines
(`p` press, `r` release, `e`, a digit, `q`), so it can be scripted. `--talk-file F` talks a WAV
file once as soon as the terminal is connected (floor request, the file at real-time pace,
release), then keeps listening, or quits with `--exit-after-talk`.

It prints the access time of every press (PTT -> floor granted) and, for every burst it heard,
the mouth-to-ear delay (p50, p95): from the capture time each frame carries (the talker's wall
clock: meaningful when both clocks agree) to the moment its audio goes to the speaker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import termios
import time
import tty
from pathlib import Path

from codec.protection import ProtectionPolicy, ProtectMode
from devices.aio_client import AsyncTerminalClient
from devices.tls import client_tls_context
from firmware_sim.audio import RATE, WavMicrophone, card_report, open_audio
from firmware_sim.demo_fleet import DEMO_DEVICES
from firmware_sim.errors import SimError
from firmware_sim.softphone import Softphone
from transport.address import BrokerAddress
from transport.loop import freeze_startup_heap
from xixin.demo import SECRETS_FILE as DEMO_SECRETS_FILE
from xixin.errors import EXPECTED_ERRORS, one_line
from xixin.options import add_org, default_data_dir, load_org_source

FIRST_REPEAT_S = 0.6  # a held key starts repeating after ~250-500 ms
REPEAT_GAP_S = 0.15  # then repeats every ~30-50 ms


SECRET_ENV = "XIXIN_DEVICE_SECRET"


def add_terminal_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "terminal",
        help="softphone: this PC as a handheld (microphone, speaker, keyboard PTT)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", required=True, help="device id, e.g. T001")
    p.add_argument(
        "--broker", default="mqtt://127.0.0.1:1883", help="mqtt://host:port or mqtts://host:port"
    )
    p.add_argument(
        "--cafile",
        type=Path,
        help="with mqtts://: the CA to trust, PEM (`xixin certs init` writes var/tls/ca.pem; "
        "default: the system's CA store)",
    )
    p.add_argument("--cert", type=Path, help="with mqtts://: this terminal's certificate, PEM")
    p.add_argument("--key", type=Path, help="with mqtts://: its private key, PEM")
    p.add_argument(
        "--secrets",
        type=Path,
        help="secrets JSON: {id: secret} (xixin up --demo writes var/demo-secrets.json) or "
        f"the file xixin sim writes; or the secret alone in ${SECRET_ENV}",
    )
    p.add_argument("--tg", action="append", default=[], help="talkgroup (repeat; first = PTT)")
    p.add_argument("--unit", help="the device's grid/area/centre (for its default talkgroups)")
    p.add_argument(
        "--role",
        choices=("officer", "guard", "dispatcher"),
        help="the device's role (for its default talkgroups; default: from the secrets file, "
        "else officer)",
    )
    add_org(p)
    p.add_argument("--wav-in", type=Path, help="talk from this WAV file instead of a microphone")
    p.add_argument("--wav-out", type=Path, help="write what you hear to this WAV file")
    p.add_argument("--no-card", action="store_true", help="do not try the sound card")
    p.add_argument(
        "--protect",
        choices=[mode.value for mode in ProtectMode],
        default=ProtectMode.AUTO.value,
        help="loss protection of what you say (docs/protocol.md §9.3): auto adapts to the "
        "listeners' receiver reports (default); off, fec and red force a mode",
    )
    p.add_argument(
        "--position",
        type=_position,
        help="where this PC is, LAT,LON in degrees: sent with an SOS (protocol §5.1)",
    )
    p.add_argument(
        "--talk-file",
        type=Path,
        help="talk this WAV file once when connected (floor request, send, release)",
    )
    p.add_argument(
        "--exit-after-talk",
        action="store_true",
        help="with --talk-file: quit once it has been spoken (exit 1 if the floor was not had)",
    )
    p.set_defaults(handler=cmd_terminal)


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """What the secrets file says of the device: its secret, and its unit and role if known."""

    secret: str | None
    unit: str | None = None
    role: str | None = None


def _identity(args: argparse.Namespace) -> Identity:
    # Never a command-line option: every user of the machine reads those (ps).
    from_env = os.environ.get(SECRET_ENV)
    path = args.secrets
    if path is None:
        default = default_data_dir() / DEMO_SECRETS_FILE
        path = default if default.exists() else None
    if path is None:
        return Identity(from_env)
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SimError(f"cannot read {path}: {exc}") from exc
    if isinstance(body, dict) and isinstance(body.get("devices"), list):  # xixin sim's file
        for device in body["devices"]:
            if device.get("id") == args.device:
                secret = from_env or str(device.get("secret"))
                return Identity(secret, device.get("unit"), device.get("role"))
    elif isinstance(body, dict) and isinstance(body.get(args.device), str):  # the demo's file
        if path.name == DEMO_SECRETS_FILE:
            for device_id, unit, role, _name in DEMO_DEVICES:
                if device_id == args.device:
                    return Identity(from_env or str(body[args.device]), unit, role)
        return Identity(from_env or str(body[args.device]))
    if from_env:
        return Identity(from_env)
    raise SimError(f"{path} has no secret for {args.device}")


def _talkgroups(args: argparse.Namespace, identity: Identity) -> list[str]:
    if args.tg:
        return list(args.tg)
    org = load_org_source(args.org)
    unit = args.unit or identity.unit
    role = args.role or identity.role or "officer"
    if unit is None:
        raise SimError(
            f"which talkgroups for {args.device}? give --unit GRID (its unit, as provisioned) "
            "or --tg TG (repeatable)"
        )
    return list(org.default_affiliation(unit, role))


def _position(text: str) -> tuple[float, float]:
    try:
        lat, lon = (float(part) for part in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not LAT,LON") from exc
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise argparse.ArgumentTypeError(f"{text!r} is outside -90..90, -180..180")
    return lat, lon


def cmd_terminal(args: argparse.Namespace) -> int:
    try:
        address = BrokerAddress.parse(args.broker)
        identity = _identity(args)
        secret = identity.secret
        talkgroups = _talkgroups(args, identity)
        if args.exit_after_talk and args.talk_file is None:
            raise SimError("--exit-after-talk needs --talk-file")
        once = WavMicrophone(args.talk_file, loop=False) if args.talk_file else None
        # Before the card opens: the collection would hold up its callbacks (they need the GIL).
        freeze_startup_heap()  # the audio runs on this process's loop: keep collections short
        mic, speaker, audio_note = open_audio(args.wav_in, args.wav_out, not args.no_card)
    except EXPECTED_ERRORS as exc:
        print(f"xixin terminal: {one_line(exc)}", file=sys.stderr)
        return 2
    print(f"xixin terminal: {audio_note}")
    try:
        tls = client_tls_context(args.cafile, args.cert, args.key) if address.tls else None
    except EXPECTED_ERRORS as exc:
        print(f"xixin terminal: {one_line(exc)}", file=sys.stderr)
        return 2
    where: tuple[float, float] | None = args.position
    client = AsyncTerminalClient(
        args.device, secret, address.host, address.port, tls=tls, position=lambda: where
    )
    policy = ProtectionPolicy(mode=ProtectMode(args.protect))
    phone = Softphone(client, talkgroups, mic, speaker, policy=policy)
    talk = TalkFile(once, args.exit_after_talk) if once is not None else None
    try:
        return asyncio.run(_main(phone, talk))
    except KeyboardInterrupt:
        return 0
    except EXPECTED_ERRORS as exc:
        print(f"\nxixin terminal: {one_line(exc)}", file=sys.stderr)
        return 2


class TalkFile:
    """--talk-file: talk it once when the softphone is ready; then maybe quit."""

    def __init__(self, mic: WavMicrophone, exit_after: bool) -> None:
        self.mic = mic
        self.exit_after = exit_after
        self.state = "waiting"  # waiting | talking | done
        self.granted = False

    def poll(self, phone: Softphone, stop: asyncio.Event) -> None:
        if self.state == "waiting" and phone.ready and phone.ptt is None:
            if phone.talk_once(self.mic):
                self.state = "talking"
                print(f"xixin terminal: talking {len(self.mic.pcm) / RATE:.1f} s once")
        elif self.state == "talking":
            if phone.ptt is not None and phone.ptt.access_ms is not None:
                self.granted = True
            if not phone.talking_once:
                self.state = "done"
                print(f"xixin terminal: talked {'the file' if self.granted else 'nothing'}")
                if self.exit_after:
                    stop.set()


async def _main(phone: Softphone, talk: TalkFile | None = None) -> int:
    await phone.start()
    stop = asyncio.Event()
    keys = KeyboardPtt(phone, stop)
    interactive = sys.stdin.isatty()
    saved = None
    if interactive:
        saved = termios.tcgetattr(sys.stdin.fileno())
        tty.setcbreak(sys.stdin.fileno())
        print("SPACE hold to talk · t toggle · 1-9 talkgroup · e SOS · q quit")
    loop = asyncio.get_running_loop()
    try:
        loop.add_reader(sys.stdin.fileno(), keys.on_input, interactive)
        watching = True
    except (PermissionError, OSError):  # stdin is a plain file (< /dev/null): no keyboard
        watching = False
        print("xixin terminal: no keyboard (stdin is not a terminal or pipe); Ctrl-C stops")
    try:
        while not stop.is_set():
            keys.poll(time.monotonic())
            if talk is not None:
                talk.poll(phone, stop)
            _render(phone, interactive)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)
    finally:
        if watching:
            loop.remove_reader(sys.stdin.fileno())
        if saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
        await phone.stop()
        print()
        card = card_report(phone.mic, phone.speaker)
        if card is not None:
            print(f"xixin terminal: sound card: {card}")
    if talk is not None and talk.exit_after and not talk.granted:
        return 1
    return 0


_last_render = [""]
_notes_printed = [0]


def _render(phone: Softphone, interactive: bool) -> None:
    """Every new message on a line of its own (access times, bursts heard), then the status."""
    new = min(phone.notes_total - _notes_printed[0], len(phone.messages))
    _notes_printed[0] = phone.notes_total
    for message in phone.messages[len(phone.messages) - new :] if new > 0 else ():
        sys.stdout.write(("\r\x1b[2K" if interactive else "") + message + "\n")
        _last_render[0] = ""
    line = f"{phone.status()}"[:150]
    if line != _last_render[0]:
        _last_render[0] = line
        sys.stdout.write("\r\x1b[2K" + line if interactive else line + "\n")
    sys.stdout.flush()


class KeyboardPtt:
    """Key presses -> softphone actions; a held SPACE is seen as a stream of repeats."""

    def __init__(self, phone: Softphone, stop: asyncio.Event) -> None:
        self.phone = phone
        self.stop = stop
        self.holding = False
        self.toggled = False
        self.first_space = 0.0
        self.last_space = 0.0

    def on_input(self, interactive: bool) -> None:
        data = os.read(sys.stdin.fileno(), 64).decode(errors="ignore")
        if not data:
            self.stop.set()
            return
        if not interactive:
            for command in data.split():
                self.line(command)
            return
        for key in data:
            self.key(key, time.monotonic())

    def key(self, key: str, now: float) -> None:
        if key == " ":
            if not self.holding:
                self.holding, self.first_space = True, now
                self.phone.press()
            self.last_space = now
        elif key == "t":
            self.toggled = not self.toggled
            (self.phone.press if self.toggled else self.phone.release)()
        elif key == "e":
            self.phone.toggle_sos()
        elif key.isdigit() and key != "0":
            self.phone.select(int(key) - 1)
        elif key in ("q", "\x03", "\x04"):
            self.stop.set()

    def line(self, command: str) -> None:
        if command == "p":
            self.phone.press()
        elif command == "r":
            self.phone.release()
        else:
            self.key(command[0], time.monotonic())

    def poll(self, now: float) -> None:
        """Release when the key repeats stop."""
        if not self.holding:
            return
        repeating = self.last_space > self.first_space
        gap = REPEAT_GAP_S if repeating else FIRST_REPEAT_S
        if now - self.last_space > gap:
            self.holding = False
            self.phone.release()
