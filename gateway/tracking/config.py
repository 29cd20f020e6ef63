"""Tracking settings for one deployment (filters, timeouts, alarms, history, ingest)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.tracking.alarms import AlarmConfig
from gateway.tracking.checkpoints import DEFAULT_SHIFTS, ShiftPattern
from gateway.tracking.filters import FilterConfig
from gateway.tracking.history import HistoryConfig
from gateway.tracking.live import LiveConfig


@dataclass(slots=True)
class TrackingConfig:
    filters: FilterConfig = field(default_factory=FilterConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    alarms: AlarmConfig = field(default_factory=AlarmConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    # OwnTracks "user/device" -> provisioned device id; unmapped users that are device ids map
    # to themselves (see formats.OwnTracksMapping).
    owntracks: dict[str, str] = field(default_factory=dict)
    left_grid_margin_m: float = 30.0  # outside the assigned grid by more than this = left it
    live_push_interval_s: float = 1.0  # newest position per device at most this often
    tick_interval_s: float = 1.0
    ingest_workers: int = 1  # MQTT connections in one shared-subscription group
    share_group: str = "xixin-ingest"
    writer_max_batch: int = 5000
    writer_max_wait_s: float = 0.05
    require_provisioned: bool = True  # beacons of unknown devices are refused and counted
    shifts: tuple[ShiftPattern, ...] = DEFAULT_SHIFTS
    utc_offset_h: float = 8.0  # shift times are local (China Standard Time)
    revisit_s: float = 600.0  # checkpoint visits closer than this are one visit

    def owntracks_pairs(self) -> dict[tuple[str, str], str]:
        pairs: dict[tuple[str, str], str] = {}
        for key, device in self.owntracks.items():
            user, _, dev = key.partition("/")
            pairs[(user, dev)] = device
        return pairs
