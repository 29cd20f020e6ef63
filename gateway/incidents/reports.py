"""Incident reports (pure): per period, tier and category — counts, time to accept, time to
arrive on scene and time to close (mean and median, seconds from the report), the share of the
period's closed incidents of that category closed at this tier, and the reopen rate.

An incident counts in the period it was reported in (local time, `utc_offset_h`), at its tier:
the tier it was closed at, or for an open incident the tier it is at now.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from gateway.incidents.categories import TIERS
from gateway.incidents.model import Incident

Period = Literal["day", "week", "month", "all"]
PERIODS: Final[tuple[Period, ...]] = ("day", "week", "month", "all")


@dataclass(frozen=True, slots=True)
class ReportRow:
    period: str
    tier: str
    category: str
    incidents: int
    closed: int
    closed_share: float | None  # of the period's closed incidents of the category
    reopened: int
    reopen_rate: float
    accept_mean_s: float | None
    accept_median_s: float | None
    on_scene_mean_s: float | None
    on_scene_median_s: float | None
    close_mean_s: float | None
    close_median_s: float | None


CSV_COLUMNS: Final = tuple(f.name for f in fields(ReportRow))


def period_of(ts: float, period: Period, utc_offset_h: float) -> str:
    local = datetime.fromtimestamp(ts, UTC) + timedelta(hours=utc_offset_h)
    if period == "day":
        return local.strftime("%Y-%m-%d")
    if period == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return local.strftime("%Y-%m")
    return "all"


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return round(statistics.fmean(values), 3), round(statistics.median(values), 3)


def build_report(
    incidents: Iterable[Incident], period: Period = "day", utc_offset_h: float = 8.0
) -> list[ReportRow]:
    groups: dict[tuple[str, str, str], list[Incident]] = defaultdict(list)
    for incident in incidents:
        at: str = incident.closed_tier or incident.tier
        key = (period_of(incident.reported_at, period, utc_offset_h), at, incident.category)
        groups[key].append(incident)
    closed_per: dict[tuple[str, str], int] = defaultdict(int)
    for (when, _, category), found in groups.items():
        closed_per[(when, category)] += sum(i.closed_at is not None for i in found)
    rows: list[ReportRow] = []
    order: dict[str, int] = {t: n for n, t in enumerate(TIERS)}
    for (when, tier, category), found in sorted(
        groups.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 9), kv[0][2])
    ):
        accept = _stats([i.accepted_at - i.reported_at for i in found if i.accepted_at])
        scene = _stats([i.on_scene_at - i.reported_at for i in found if i.on_scene_at])
        done = _stats([i.closed_at - i.reported_at for i in found if i.closed_at])
        closed = sum(i.closed_at is not None for i in found)
        reopened = sum(i.reopens > 0 for i in found)
        total_closed = closed_per[(when, category)]
        rows.append(
            ReportRow(
                when, tier, category, len(found), closed,
                round(closed / total_closed, 4) if total_closed else None,
                reopened, round(reopened / len(found), 4), *accept, *scene, *done,
            )
        )  # fmt: skip
    return rows


def report_csv(rows: Iterable[ReportRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(["" if v is None else v for v in asdict(row).values()])
    return out.getvalue()
