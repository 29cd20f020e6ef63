"""Reports on a seeded history, checked against figures computed by hand."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy

from gateway.incidents import store as db
from gateway.incidents.model import Incident
from gateway.incidents.reports import build_report, period_of, report_csv

# 2027-01-15 00:00 China Standard Time (UTC+8) = 2027-01-14 16:00 UTC.
DAY = 1_800_000_000.0 - (1_800_000_000.0 + 8 * 3600) % 86400


def inc(n: int, category: str, at: float, **kw: object) -> Incident:
    base: dict[str, object] = {
        "id": n, "category": category, "text": "x", "source": "api", "reporter": "g",
        "grid": "grid-01", "area": "area-renxi", "tier": "grid", "unit": "grid-01",
        "reported_at": DAY + at, "tier_since": DAY + at, "updated_at": DAY + at,
    }  # fmt: skip
    base.update(kw)
    return Incident(**base)  # type: ignore[arg-type]


def seeded() -> list[Incident]:
    d = DAY
    return [
        # police, closed at the grid: accept 60 / 120, on scene 300 / 600, close 900 / 1500
        inc(1, "police", 0, state="closed", accepted_at=d + 60, on_scene_at=d + 300,
            closed_at=d + 900, closed_tier="grid"),
        inc(2, "police", 1000, state="closed", accepted_at=d + 1120, on_scene_at=d + 1600,
            closed_at=d + 2500, closed_tier="grid", reopens=1),
        # police, escalated and closed at the area: accept 400, close 7200
        inc(3, "police", 2000, state="closed", tier="area", unit="area-renxi",
            accepted_at=d + 2400, closed_at=d + 9200, closed_tier="area", escalations=1),
        # police, still open at the grid, not accepted
        inc(4, "police", 3000),
        # mediation, open, accepted after 3600
        inc(5, "mediation", 4000, state="accepted", accepted_at=d + 7600),
        # the next day: one police incident closed at the centre
        inc(6, "police", 86400 + 10, state="closed", tier="centre", unit="centre",
            accepted_at=d + 86400 + 40, closed_at=d + 86400 + 1010, closed_tier="centre"),
    ]  # fmt: skip


def test_report_figures_by_hand() -> None:
    rows = {(r.period, r.tier, r.category): r for r in build_report(seeded(), "day")}
    day1, day2 = period_of(DAY, "day", 8), period_of(DAY + 86400, "day", 8)
    assert day1 == "2027-01-15" and day2 == "2027-01-16"
    assert set(rows) == {
        (day1, "grid", "police"), (day1, "area", "police"), (day1, "grid", "mediation"),
        (day2, "centre", "police"),
    }  # fmt: skip
    grid = rows[(day1, "grid", "police")]
    assert (grid.incidents, grid.closed, grid.reopened) == (3, 2, 1)
    assert grid.reopen_rate == round(1 / 3, 4)
    assert (grid.accept_mean_s, grid.accept_median_s) == (90.0, 90.0)  # 60, 120
    assert (grid.on_scene_mean_s, grid.on_scene_median_s) == (450.0, 450.0)  # 300, 600
    assert (grid.close_mean_s, grid.close_median_s) == (1200.0, 1200.0)  # 900, 1500
    assert grid.closed_share == round(2 / 3, 4)  # 2 of the day's 3 closed police incidents
    area = rows[(day1, "area", "police")]
    assert (area.incidents, area.closed, area.closed_share) == (1, 1, round(1 / 3, 4))
    assert (area.accept_mean_s, area.close_mean_s, area.on_scene_mean_s) == (400.0, 7200.0, None)
    mediation = rows[(day1, "grid", "mediation")]
    assert (mediation.closed, mediation.closed_share, mediation.accept_median_s) == (
        0, None, 3600.0,
    )  # fmt: skip
    centre = rows[(day2, "centre", "police")]
    assert (centre.closed_share, centre.accept_mean_s, centre.close_mean_s) == (1.0, 30.0, 1000.0)
    # All time, all police: accept 60, 120, 400, 30 -> median 90, mean 152.5
    everything = {(r.tier, r.category): r for r in build_report(seeded(), "all")}
    assert everything[("grid", "police")].incidents == 3
    assert sum(r.closed for r in everything.values()) == 4


def test_report_from_the_database_and_as_csv(engine: sqlalchemy.Engine, tmp_path: Path) -> None:
    history = seeded()
    db.write_steps(engine, [db.Write(i, ()) for i in history])
    stored = list(db.iter_reported(engine, DAY, DAY + 2 * 86400))
    assert sorted(i.id for i in stored) == [1, 2, 3, 4, 5, 6]
    assert build_report(stored) == build_report(history)
    text = report_csv(build_report(stored))
    lines = text.strip().splitlines()
    assert lines[0].startswith("period,tier,category,incidents,closed,closed_share")
    assert lines[1].startswith("2027-01-15,grid,mediation,1,0,,0,0.0,3600.0,3600.0")
    assert len(lines) == 5
