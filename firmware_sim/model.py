"""Values of the firmware state machine: states, configuration, effects and statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from codec.frame import VoiceFrame
from devices.session import Beacon, Outgoing, PendingRequest
from firmware_sim.battery import BatteryConfig
from firmware_sim.errors import SimError
from firmware_sim.gps import GpsConfig
from firmware_sim.impairment import ImpairmentConfig
from firmware_sim.reception import Histogram, ReceiverMeter
from firmware_sim.responder import ResponderConfig
from firmware_sim.voice import BurstLengths

INF = float("inf")


class State(StrEnum):
    BOOT = "boot"
    CONNECTING = "connecting"
    IDLE = "idle"
    TRANSMITTING = "transmitting"
    RECEIVING = "receiving"
    EMERGENCY = "emergency"
    STUNNED = "stunned"
    OFFLINE = "offline"


CONNECTED_STATES = frozenset(
    {State.IDLE, State.TRANSMITTING, State.RECEIVING, State.EMERGENCY, State.STUNNED}
)


@dataclass(frozen=True, slots=True)
class TerminalProfile:
    """Who the terminal is: id, home unit, role, what it listens to and talks on."""

    device_id: str
    unit: str
    role: str
    talkgroups: tuple[str, ...]  # affiliation after connecting (scan list order: priority)
    home: str  # the selected talkgroup: PTT talks here

    def __post_init__(self) -> None:
        if self.home not in self.talkgroups:
            raise SimError(f"{self.device_id}: home talkgroup {self.home} is not affiliated")


@dataclass(frozen=True, slots=True)
class TalkPattern:
    """When the simulated user presses PTT by themselves.

    none: only when a scenario says so; poisson: `rate_per_h` presses per hour at random;
    continuous: press again `gap_s` after each burst (a busy talker).
    """

    mode: str = "none"
    rate_per_h: float = 0.0
    gap_s: tuple[float, float] = (0.5, 2.0)

    def __post_init__(self) -> None:
        if self.mode not in ("none", "poisson", "continuous"):
            raise SimError("talk mode must be none, poisson or continuous")
        if self.mode == "poisson" and self.rate_per_h <= 0:
            raise SimError("a poisson talk pattern needs rate_per_h > 0")


@dataclass(frozen=True, slots=True)
class FirmwareConfig:
    gps: GpsConfig = field(default_factory=GpsConfig)
    battery: BatteryConfig = field(default_factory=BatteryConfig)
    impairment: ImpairmentConfig = field(default_factory=ImpairmentConfig)
    talk: TalkPattern = field(default_factory=TalkPattern)
    bursts: BurstLengths = field(default_factory=BurstLengths)
    beacons: bool = True
    packets_per_message: int = 1  # 1-3 packets of 20 ms per voice message
    probe: bool = False  # decode and play out received voice (jitter buffer + Opus)
    # Encode speech at run time with loss-adaptive protection (§9.3) instead of sending the
    # shared pre-encoded reel: costs an Opus encoder per talking terminal.
    live_voice: bool = False
    wait_in_queue: bool = True  # False: give up when queued
    emergency_talk_s: float = 8.0
    report_interval_s: float = 1.0
    receive_idle_s: float = 2.0  # no floor news nor frames this long: back to idle
    boot_s: float = 0.0
    responder: ResponderConfig = field(default_factory=ResponderConfig)


@dataclass(slots=True)
class Ptt:
    """One press of the PTT key, from request to release."""

    key: str
    pressed_at: float
    hold_s: float
    emergency: bool
    phase: str = "requesting"  # requesting | queued | talking
    request_id: str | None = None
    stop_at: float = INF  # revoked with grace: stop talking by then
    talk_started: float = 0.0


# ---- effects: what the I/O shell must do --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connect:
    """Start (or restart) the MQTT session."""


@dataclass(frozen=True, slots=True)
class Drop:
    """Lose the connection abruptly (out of coverage): the broker fires the Last Will."""


@dataclass(frozen=True, slots=True)
class PowerOff:
    """Clean shutdown: status offline (shutdown), DISCONNECT, no reconnect."""


@dataclass(frozen=True, slots=True)
class Affiliate:
    """Subscribe to these talkgroups' topics, then send the affiliate request."""

    tgs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SendRequest:
    pending: PendingRequest
    message: Outgoing


@dataclass(frozen=True, slots=True)
class Send:
    message: Outgoing


@dataclass(frozen=True, slots=True)
class SendBeacon:
    beacon: Beacon


@dataclass(frozen=True, slots=True)
class SendFrame:
    frame: VoiceFrame
    key: str


Effect = Connect | Drop | PowerOff | Affiliate | SendRequest | Send | SendBeacon | SendFrame


# ---- statistics -----------------------------------------------------------------------------


@dataclass(slots=True)
class FirmwareStats:
    fixes: int = 0
    bad_fixes: dict[str, int] = field(default_factory=dict)
    presses: int = 0
    blocked_presses: int = 0  # stunned, offline or already talking
    grants: int = 0
    queued: int = 0
    denied: dict[str, int] = field(default_factory=dict)
    no_reply: int = 0
    revoked: dict[str, int] = field(default_factory=dict)
    bursts_sent: int = 0
    frames_sent: int = 0
    talk_s: float = 0.0
    access_ms: Histogram = field(default_factory=Histogram)  # press -> immediate grant
    queue_wait_ms: Histogram = field(default_factory=Histogram)  # press -> grant after queueing
    commands: dict[str, int] = field(default_factory=dict)
    incident_answers: dict[str, int] = field(default_factory=dict)  # status code -> sent
    texts: list[str] = field(default_factory=list)
    low_battery_alarms: int = 0
    outages: int = 0
    reports_sent: int = 0
    reports_applied: int = 0  # forwarded `rr` the live talker's protection adapted to
    frames_protected: int = 0  # frames sent with RED or FEC (§9.3)
    meter: ReceiverMeter = field(default_factory=ReceiverMeter)
    mouth_to_ear: Histogram = field(default_factory=Histogram)
    transitions: list[tuple[float, str, str]] = field(default_factory=list)  # (t, from, to)
    sent_bursts: dict[tuple[str, int], int] = field(default_factory=dict)  # (key, burst) -> frames

    def bump(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1

    def summary(self) -> dict[str, Any]:
        totals = self.meter.totals
        return {
            "fixes": self.fixes,
            "bad_fixes": dict(self.bad_fixes),
            "presses": self.presses,
            "grants": self.grants,
            "queued": self.queued,
            "denied": dict(self.denied),
            "no_reply": self.no_reply,
            "revoked": dict(self.revoked),
            "bursts_sent": self.bursts_sent,
            "frames_sent": self.frames_sent,
            "bursts_heard": totals.bursts,
            "frames_expected": totals.frames_expected,
            "frames_received": totals.frames_received,
            "late_entries": totals.late_entries,
            "commands": dict(self.commands),
            "outages": self.outages,
        }


def parse_settings(settings: object) -> tuple[bool, str | None, float | None]:
    """A `config` command's settings (protocol §5.4): (ok, detail, beacon interval or None).

    Known settings are applied even when an unknown one makes the answer ok=false."""
    if not isinstance(settings, dict):
        return False, "settings must be an object", None
    unknown = sorted(k for k in settings if k != "beacon_interval_s")
    interval = settings.get("beacon_interval_s")
    if interval is not None and (
        not isinstance(interval, int | float) or not 1 <= interval <= 3600
    ):
        return False, "beacon_interval_s must be 1..3600", None
    value = float(interval) if interval is not None else None
    if unknown:
        return False, f"unknown settings {unknown}", value
    return True, None, value
