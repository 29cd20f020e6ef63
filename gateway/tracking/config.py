"""Tracking settings for one deployment (filters, timeouts, alarms, history, ingest)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, TypeVar

import yaml

from gateway.tracking.alarms import AlarmConfig
from gateway.tracking.checkpoints import DEFAULT_SHIFTS, ShiftPattern
from gateway.tracking.errors import TrackingError
from gateway.tracking.filters import FilterConfig
from gateway.tracking.history import HistoryConfig
from gateway.tracking.live import LiveConfig

T = TypeVar("T")


DEFAULT_SHARE_GROUP: Final = "xixin-ingest"


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
    ingest_workers: int = 1  # MQTT connections (several: one shared-subscription group)
    # None: a plain subscription. mosquitto 2.0 does not restore shared subscriptions after a
    # broker restart, so a shared group loses what is published before its members subscribe
    # again; set it (DEFAULT_SHARE_GROUP) only to add `xixin ingest` workers (protocol §10.2).
    share_group: str | None = None
    writer_max_batch: int = 20_000  # big batches: fewer commits, fewer B-tree pages per row
    writer_max_wait_s: float = 0.25  # a position is committed within this (live is not delayed)
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


_SECTIONS: dict[str, type[Any]] = {
    "filters": FilterConfig,
    "live": LiveConfig,
    "alarms": AlarmConfig,
    "history": HistoryConfig,
}


def _build(kind: type[T], raw: object, where: str) -> T:
    if not isinstance(raw, dict):
        raise TrackingError(f"{where}: expected a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in fields(kind)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise TrackingError(f"{where}: unknown setting {key!r}; known: {', '.join(known)}")
        if key in _SECTIONS and kind is TrackingConfig:
            values[key] = _build(_SECTIONS[key], value, f"{where}.{key}")
        elif key == "shifts" and kind is TrackingConfig:
            if not isinstance(value, list):
                raise TrackingError(f"{where}.shifts: expected a list")
            values[key] = tuple(_build(ShiftPattern, item, f"{where}.shifts") for item in value)
        else:
            values[key] = value
    try:
        return kind(**values)
    except TypeError as exc:
        raise TrackingError(f"{where}: {exc}") from exc


def tracking_config_from_mapping(raw: object, where: str = "tracking") -> TrackingConfig:
    """Build a TrackingConfig from parsed YAML/JSON (sections filters, live, alarms, history,
    shifts, and the top-level settings); unknown keys are errors, missing keys keep defaults."""
    return _build(TrackingConfig, raw, where)


def load_tracking_config(path: Path) -> TrackingConfig:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TrackingError(f"cannot read tracking settings {path}: {exc}") from exc
    return tracking_config_from_mapping(raw or {}, str(path))
