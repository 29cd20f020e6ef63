"""The tracking pipeline, sans-I/O: MQTT messages in; rows, events and live updates out.

`handle(topic, payload, now)` is the hot path (parse, filter, queue a row) and does nothing
per message that can wait. `flush(now)` runs the per-batch work — live state, geofences and
alarms, vectorised over the batch — and returns what the I/O shell must store and push.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from gateway.budget import Budgets
from gateway.log_once import LogOnce
from gateway.tracking.alarms import AlarmEngine
from gateway.tracking.config import TrackingConfig
from gateway.tracking.errors import BeaconError, UnknownSourceError
from gateway.tracking.filters import FilterChain
from gateway.tracking.formats import (
    OwnTracksMapping,
    parse_native,
    parse_nmea,
    parse_owntracks,
)
from gateway.tracking.geofence import (
    GeofenceSet,
    GeofenceSpec,
    GeofenceTracker,
    build_geometry,
    grid_specs,
    org_projection,
)
from gateway.tracking.live import LiveTracker, StatusChange
from gateway.tracking.model import Fix, StatusReport, TrackingEvent
from gateway.tracking.store import PositionRow, fix_row
from protocol import limits, topics
from protocol.control import ControlError, parse_status
from protocol.ids import DEVICE_ID_RE
from protocol.org import Organisation

log = logging.getLogger(__name__)

OWNTRACKS_ROOT: Final = topics.OWNTRACKS_ROOT
_GPS_SUFFIX: Final = "/gps"
_NMEA_SUFFIX: Final = "/nmea"
_STATUS_SUFFIX: Final = "/status"
MAX_LOGGED_FAILURES: Final = 1000  # distinct internal failures logged with a traceback


def ingest_subscriptions(share_group: str | None) -> list[tuple[str, int]]:
    """Topics of §7/§10, as a shared subscription when `share_group` is set."""
    filters = topics.tracking_subscriptions()
    if share_group:
        return [(f"$share/{share_group}/{f}", 1) for f in filters]
    return [(f, 1) for f in filters]


@dataclass(slots=True)
class IngestCounters:
    received: Counter[str] = field(default_factory=Counter)  # by format
    rejected: Counter[str] = field(default_factory=Counter)  # parse errors by reason
    # ...and "rate_limited": over the sender's beacon budget (§7), refused before parsing
    # ...and "internal": a message the pipeline failed on (a bug), counted and skipped
    ignored: int = 0  # OwnTracks types other than location/lwt, foreign topics


@dataclass(slots=True)
class FlushResult:
    events: list[TrackingEvent] = field(default_factory=list)
    status: list[StatusChange] = field(default_factory=list)
    positions: list[Fix] = field(default_factory=list)  # newest per device, for live push


class TrackingPipeline:
    def __init__(
        self,
        config: TrackingConfig,
        org: Organisation,
        *,
        is_device: Callable[[str], bool],
        assigned_grid: Callable[[str], str | None],
        fences: Iterable[GeofenceSpec] = (),
        logger: logging.Logger | None = None,
    ) -> None:
        self.config = config
        self.org = org
        self.log = logger or log
        self.is_device = is_device
        self.assigned_grid = assigned_grid
        self.owntracks = OwnTracksMapping(config.owntracks_pairs(), is_device)
        self.filters = FilterChain(config.filters)
        self.live = LiveTracker(config.live)
        self.alarms = AlarmEngine(config.alarms)
        self.counters = IngestCounters()
        self.projection = org_projection(org)
        self.geofences = GeofenceTracker(GeofenceSet([], self.projection))
        self.set_fences(fences)
        self._grid_bounds: dict[str, BaseGeometry] = {}
        for spec in grid_specs(org):
            geometry = build_geometry(spec, self.projection).buffer(config.left_grid_margin_m)
            shapely.prepare(geometry)
            self._grid_bounds[spec.id] = geometry
        self.rows: list[PositionRow] = []
        self._accepted: list[Fix] = []
        self._status: list[StatusReport] = []
        self._seen: dict[str, float] = {}
        self._dirty: dict[str, Fix] = {}
        self._last_push = 0.0
        self._failures = LogOnce(self.log, MAX_LOGGED_FAILURES)
        # Per-sender beacon budget (§7): device id, or the OwnTracks topic before it is mapped.
        self.budget = Budgets(limits.BEACON_RATE, limits.BEACON_BURST)
        self._limited = LogOnce(self.log)
        self._refused = LogOnce(self.log)

    def set_fences(self, custom: Iterable[GeofenceSpec]) -> None:
        """Grids of the organisation plus these custom fences."""
        specs = grid_specs(self.org) + list(custom)
        self.geofences.replace(GeofenceSet(specs, self.projection))

    # ---- hot path -------------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, now: float) -> None:
        """One MQTT message. Never raises for bad input: it is counted by reason instead."""
        try:
            if topic.startswith(topics.DEV_PREFIX):
                device, _, rest = topic[len(topics.DEV_PREFIX) :].partition("/")
                if rest == "gps":
                    self.counters.received["native"] += 1
                    if not self.budget.allow(device, now):
                        self._rate_limited(device)
                        return
                    self._check_device(device)
                    self._offer(parse_native(device, payload, now), now)
                elif rest == "nmea":
                    self.counters.received["nmea"] += 1
                    if not self.budget.allow(device, now):
                        self._rate_limited(device)
                        return
                    self._check_device(device)
                    for fix in parse_nmea(device, payload, now):
                        self._offer(fix, now)
                elif rest == "status":
                    self._native_status(device, payload, now)
                else:
                    self.counters.ignored += 1
            elif topic.startswith(OWNTRACKS_ROOT + "/"):
                self.counters.received["owntracks"] += 1
                if not self.budget.allow(topic, now):
                    self._rate_limited(topic)
                    return
                result = parse_owntracks(topic, payload, now, self.owntracks)
                if isinstance(result, Fix):
                    self._offer(result, now)
                elif isinstance(result, StatusReport):
                    self._status.append(result)
                else:
                    self.counters.ignored += 1
            else:
                self.counters.ignored += 1
        except BeaconError as exc:
            self.counters.rejected[exc.reason] += 1
            # Once per (reason, topic): a device sending the same bad beacon every second
            # must not fill the log; the counter has every one.
            self._refused.warning(
                (exc.reason, topic), "beacon on %s refused (%s): %s", topic, exc.reason, exc
            )
        except Exception as exc:  # a bug, not bad input: it must not cost the next messages
            self.internal_error(topic, exc)

    def _rate_limited(self, sender: str) -> None:
        """A beacon over its sender's budget: counted, logged once per sender, not parsed."""
        self.counters.rejected["rate_limited"] += 1
        self._limited.warning(
            sender,
            "beacons from %s over the budget (%g/s, burst %d): refused and counted",
            sender,
            limits.BEACON_RATE,
            limits.BEACON_BURST,
        )

    def internal_error(self, topic: str, exc: Exception) -> None:
        """Count a message the pipeline failed on as rejected (`internal`) and log it with its
        traceback once per failure site (exception type and the line that raised it)."""
        self.counters.rejected["internal"] += 1
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = ("", 0) if tb is None else (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        self._failures.log_once(
            logging.ERROR,
            (type(exc).__name__, where),
            "tracking message on %s failed (counted as rejected: internal; later failures "
            "at the same place are only counted)",
            topic,
            exc_info=exc,
        )

    def _check_device(self, device: str) -> None:
        if self.config.require_provisioned and not self.is_device(device):
            raise UnknownSourceError(f"no provisioned device {device!r}")

    def _offer(self, fix: Fix, now: float) -> None:
        if fix.device not in self._seen and not DEVICE_ID_RE.fullmatch(fix.device):
            # Unprovisioned sources may be accepted, but an id the store cannot hold (over 32
            # characters: PostgreSQL would refuse the whole batch, again and again) may not.
            raise UnknownSourceError(f"{fix.device!r} is not a device id")
        self._seen[fix.device] = now
        row = fix_row(fix)  # first: a fix that cannot become a row is never counted accepted
        if self.filters.apply(fix, now) is None:
            self.rows.append(row)
            self._accepted.append(fix)

    def _native_status(self, device: str, payload: bytes, now: float) -> None:
        """Retained §4 status: offline (Last Will / shutdown) ends a device's online time."""
        try:
            status = parse_status(payload)
        except ControlError:  # the control plane counts malformed status; here it is noise
            self.counters.ignored += 1
            return
        self._status.append(
            StatusReport(
                device,
                "online" if status.state == "online" else "offline",
                now,
                reason=status.reason,
                battery=status.battery,
            )
        )

    @property
    def pending_fixes(self) -> int:
        """Accepted fixes waiting for the next flush's analytics."""
        return len(self._accepted)

    def take_rows(self) -> list[PositionRow]:
        rows, self.rows = self.rows, []
        return rows

    # ---- per batch ----------------------------------------------------------------------------

    def flush(self, now: float) -> FlushResult:
        result = FlushResult()
        if self._seen:
            result.status += self.live.on_seen_many(self._seen)
            self._seen.clear()
        for report in self._status:
            result.status += self.live.on_status(report, now)
        self._status.clear()
        fixes, self._accepted = self._accepted, []
        if fixes:
            self._analyse(fixes, now, result)
        for change in result.status:
            result.events += self.alarms.on_status(change.device, change.state, change.ts)
        if self._dirty and now - self._last_push >= self.config.live_push_interval_s:
            result.positions = list(self._dirty.values())
            self._dirty.clear()
            self._last_push = now
        return result

    def _analyse(self, fixes: list[Fix], now: float, result: FlushResult) -> None:
        lons = np.fromiter((f.lon for f in fixes), dtype=np.float64, count=len(fixes))
        lats = np.fromiter((f.lat for f in fixes), dtype=np.float64, count=len(fixes))
        xs, ys = self.projection.arrays_to_xy(lons, lats)
        # Late points (older than what we know of the device) are history: no live effects.
        newest: dict[str, float] = {}
        devices = self.live.devices
        keep: list[bool] = []
        for fix in fixes:
            known = newest.get(fix.device)
            if known is None:
                live = devices.get(fix.device)
                known = live.fix.fix_time if live is not None and live.fix is not None else -1.0
            current = fix.fix_time >= known
            keep.append(current)
            if current:
                newest[fix.device] = fix.fix_time
        if not all(keep):
            mask = np.array(keep, dtype=bool)
            fixes = [f for f, current in zip(fixes, keep, strict=True) if current]
            xs, ys = xs[mask], ys[mask]
        in_grid = self._in_assigned_grid(fixes, xs, ys)
        result.events += self.geofences.update(fixes, xs, ys)
        result.status += self.live.on_fixes(fixes, now)
        result.events += self.alarms.on_fixes(fixes, in_grid)
        self._dirty.update({fix.device: fix for fix in fixes})

    def _in_assigned_grid(
        self, fixes: list[Fix], xs: np.ndarray, ys: np.ndarray
    ) -> list[bool | None]:
        grids = [self.assigned_grid(f.device) for f in fixes]
        answer: list[bool | None] = [None] * len(fixes)
        for grid in set(grids) - {None}:
            bounds = self._grid_bounds.get(grid or "")
            if bounds is None:
                continue
            index = [i for i, g in enumerate(grids) if g == grid]
            inside = shapely.contains_xy(bounds, xs[index], ys[index])
            for i, flag in zip(index, inside.tolist(), strict=True):
                answer[i] = bool(flag)
        return answer

    def tick(self, now: float) -> FlushResult:
        result = self.flush(now)
        changes = self.live.tick(now)
        result.status += changes
        for change in changes:
            result.events += self.alarms.on_status(change.device, change.state, change.ts)
        result.events += self.alarms.tick(now)
        return result

    def on_sos(
        self,
        device: str,
        active: bool,
        ts: float,
        lat: float | None = None,
        lon: float | None = None,
    ) -> list[TrackingEvent]:
        return self.alarms.on_sos(device, active, ts, lat, lon)

    def filtered(self) -> dict[str, int]:
        return dict(self.filters.counts)
