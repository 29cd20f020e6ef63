"""How the simulated firmware answers dispatcher commands (docs/protocol.md §5.4).

stun, text, assign (the incident responder takes it from there), regroup (join or leave an
incident talkgroup by affiliating), config, status, radio_check, monitor, revive: each is
carried out on the :class:`firmware_sim.firmware.Firmware` state and acknowledged through its
outbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devices.session import CALL_PREFIX, Command
from firmware_sim.model import Affiliate, Send, parse_settings

if TYPE_CHECKING:
    from firmware_sim.firmware import Firmware


def answer_command(fw: Firmware, command: Command, now: float) -> None:
    """Carry out a dispatcher command (§5.4) and acknowledge it."""
    cmd, body = command.cmd, command.body
    fw.stats.bump(fw.stats.commands, cmd)
    ok, detail = True, None
    if cmd == "stun":
        fw.drop_talk(now)
    elif cmd == "text":
        fw.stats.texts.append(str(body.get("text", "")))
    elif cmd == "assign":
        fw.assignment = {k: body.get(k) for k in ("incident", "grid", "text")}
        _assigned(fw, body, now)
    elif cmd == "regroup":
        ok, detail = _regroup(fw, body)
    elif cmd == "config":
        ok, detail, interval = parse_settings(body.get("settings"))
        fw.beacon_interval = interval or fw.beacon_interval
    elif cmd == "status":
        fw.stats.texts.append(f"[{body.get('code')}] {body.get('text') or ''}".strip())
    elif cmd == "radio_check":
        battery = fw.battery.percent
        signal = round(100.0 - fw.config.impairment.loss_pct)  # what it sees of the link
        fw.outbox.append(Send(fw.session.ack(command.id, True, battery=battery, signal=signal)))
        fw.settle(now)
        return
    elif cmd == "monitor":
        peer, seconds = body.get("by"), body.get("seconds")
        if isinstance(peer, str) and isinstance(seconds, int | float) and seconds > 0:
            fw.outbox.append(Send(fw.session.ack(command.id, True)))
            fw.press(now, CALL_PREFIX + peer, float(seconds))
            fw.settle(now)
            return
        ok, detail = False, "monitor needs 'by' and positive 'seconds'"
    elif cmd != "revive":
        ok, detail = False, f"unknown command {cmd!r}"
    fw.outbox.append(Send(fw.session.ack(command.id, ok, detail)))
    fw.settle(now)


def _assigned(fw: Firmware, body: dict[str, Any], now: float) -> None:
    incident, lat, lon = body.get("incident"), body.get("lat"), body.get("lon")
    if not isinstance(incident, int) or isinstance(incident, bool):
        return
    target = None
    if isinstance(lat, int | float) and isinstance(lon, int | float):
        target = (float(lon), float(lat))
    here = fw.gps.here(now) if fw.gps is not None else None
    fw.responder.assign(incident, target, here, now)


def _regroup(fw: Firmware, body: dict[str, Any]) -> tuple[bool, str | None]:
    """Join (`active`) or leave an incident's talkgroup: affiliate with it added/removed."""
    tg, active = body.get("tg"), body.get("active")
    if not isinstance(tg, str) or not isinstance(active, bool):
        return False, "regroup needs 'tg' and 'active'"
    current = fw.affiliated or fw.profile.talkgroups
    wanted = (*current, tg) if active else tuple(t for t in current if t != tg)
    if wanted != current:
        fw.outbox.append(Affiliate(tuple(dict.fromkeys(wanted))))
    return True, None
