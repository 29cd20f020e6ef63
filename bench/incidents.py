"""Incidents benchmark: a simulated shift, nearest-officer suggestions and the board.

    python bench/incidents.py [--quick]

1. Shift: 13 grids, 200 officers, 1,000 incidents over 8 simulated hours (Poisson arrivals;
   categories weighted as a sub-district's mix) through the real incident service, its
   journal-first writer and SQLite. Grid (area, centre) dispatchers accept after a delay drawn
   per incident (a few too late: police incidents then escalate by deadline), assign the first
   suggested officer, officers answer (accepted, en route, on scene after a straight-line trip,
   resolved), dispatchers close with a note; some incidents are escalated by hand. The clock is
   simulated (the service's injected clock); the database writes are real. Afterwards the
   database is read back: `lost` counts incidents whose stored row or transitions differ from
   what the service applied (target 0).
2. `suggest_p95_ms`: suggestions (k = 5) among 10,000 live officers with fixes spread over the
   13 grids, from the cell index; reference: a full scan of all officers in the same run.
3. `board_p95_ms`: the board (every open incident and the 100 most recently closed of the last
   day, in a centre's and in a grid's scope, as the API's view objects encoded as JSON) with
   100,000 incidents stored over 100 days, held in memory as the gateway does; reference: the
   same board read from the database (index on the report time) each time.

Writes bench/results/incidents.json.
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import math
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import percentile  # noqa: E402
from gateway.api.routes.incidents import encode_json  # noqa: E402
from gateway.auth.roles import Role  # noqa: E402
from gateway.auth.scope import Scope, scope_of  # noqa: E402
from gateway.incidents import store as db  # noqa: E402
from gateway.incidents.categories import (  # noqa: E402
    TIERS,
    Tier,
    default_categories,
)
from gateway.incidents.model import Incident, Place  # noqa: E402
from gateway.incidents.officers import (  # noqa: E402
    AVAILABILITIES,
    Availability,
    OfficerIndex,
    distance_m,
)
from gateway.incidents.service import IncidentService  # noqa: E402
from gateway.incidents.store import IncidentWriter  # noqa: E402
from gateway.store.db import create_db_engine, migrate  # noqa: E402
from protocol.geometry import point_in_ring  # noqa: E402
from protocol.org import Organisation, default_org  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "incidents.json"
T0 = 1_800_000_000.0
MIX = {
    "police": 30, "mediation": 12, "property": 15, "safety-hazard": 10, "ecology": 8,
    "new-residents": 8, "enterprise": 6, "anti-fraud": 6, "legal-aid": 3, "other": 2,
}  # fmt: skip


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def random_point(org: Organisation, grid: str, rng: random.Random) -> tuple[float, float]:
    ring = org.grids[grid].polygon
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    while True:
        lon, lat = rng.uniform(min(lons), max(lons)), rng.uniform(min(lats), max(lats))
        if point_in_ring(lon, lat, ring):
            return lat, lon


# ---- 1. the shift ------------------------------------------------------------------------------


class Shift:
    def __init__(self, service: IncidentService, org: Organisation, rng: random.Random) -> None:
        self.service, self.org, self.rng = service, org, rng
        self.clock: Clock = service.clock  # type: ignore[assignment]
        self.queue: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = 0
        self.awaiting: set[int] = set()  # incidents with an acceptance scheduled
        self.homes: dict[str, tuple[float, float]] = {}

    def at(self, when: float, action: Callable[[], None]) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (when, self.seq, action))

    def run(self, until: float) -> None:
        next_tick = self.clock.now
        while self.queue and self.queue[0][0] <= until:
            when, _, action = heapq.heappop(self.queue)
            while next_tick <= when:  # deadlines every 10 simulated seconds
                self.clock.now = next_tick
                self.service.tick()
                self.schedule_accepts()
                next_tick += 10.0
            self.clock.now = when
            action()

    def schedule_accepts(self) -> None:
        for incident in self.service.incidents.values():
            if incident.state == "reported" and incident.id not in self.awaiting:
                self.awaiting.add(incident.id)
                # A lognormal delay: median 50 s at a grid, a few past the 5 min deadline.
                delay = self.rng.lognormvariate(math.log(50.0), 0.9)
                self.at(self.clock.now + delay, partial(self.accept, incident.id))

    def report(self) -> None:
        grid = self.rng.choice(sorted(self.org.grids))
        lat, lon = random_point(self.org, grid, self.rng)
        category = self.rng.choices(list(MIX), weights=list(MIX.values()))[0]
        self.service.report(
            category, f"{category} near {grid}", source="dispatcher", reporter="d",
            place=Place(lat=lat, lon=lon),
        )  # fmt: skip
        self.schedule_accepts()

    def accept(self, n: int) -> None:
        self.awaiting.discard(n)
        incident = self.service.incidents.get(n)
        if incident is None or incident.state != "reported":
            return
        self.service.step(n, "accept", f"d-{incident.unit}")
        if incident.tier == "grid" and self.rng.random() < 0.05:  # a hard case: up by hand
            self.service.step(n, "escalate", f"d-{incident.unit}", reason="needs the area")
            self.schedule_accepts()
            return
        self.at(self.clock.now + self.rng.uniform(10, 60), lambda: self.assign(n))

    def assign(self, n: int) -> None:
        incident = self.service.incidents[n]
        if incident.state != "accepted":
            return
        found = [s for s in self.service.suggest(n, 3) if s.availability != "busy"]
        if not found:
            self.at(self.clock.now + 60, lambda: self.assign(n))
            return
        officer = found[0]
        self.service.step(n, "assign", f"d-{incident.unit}", officers=[officer.device])
        rng, now = self.rng, self.clock.now
        accept = now + rng.uniform(2, 8)
        depart = accept + rng.uniform(3, 15)
        arrive = depart + officer.eta_s
        slow = incident.category in ("mediation", "legal-aid", "enterprise")
        resolved = arrive + rng.uniform(600, 3600) if slow else arrive + rng.uniform(60, 600)
        answers = [(accept, "accepted"), (depart, "en_route"), (arrive, "on_scene"),
                   (resolved, "resolved")]  # fmt: skip
        for when, code in answers:
            self.at(when, lambda c=code, d=officer.device: self.answer(n, d, c))  # type: ignore[misc]
        self.at(resolved + rng.uniform(30, 300), lambda: self.close(n))
        self.at(arrive, lambda: self.move(officer.device, incident.lat, incident.lon))
        self.at(
            resolved + officer.eta_s, lambda: self.move(officer.device, *self.homes[officer.device])
        )

    def answer(self, n: int, device: str, code: str) -> None:
        incident = self.service.incidents[n]
        if incident.open and device in incident.officers:
            self.service.officer_answer(n, device, code, "done" if code == "resolved" else None)  # type: ignore[arg-type]

    def move(self, device: str, lat: float | None, lon: float | None) -> None:
        if lat is not None and lon is not None:
            self.service.officers.position(device, lat, lon, self.clock.now)

    def close(self, n: int) -> None:
        incident = self.service.incidents.get(n)
        if incident is not None and incident.state == "resolved":
            self.service.step(n, "close", f"d-{incident.unit}", note="handled")


def run_shift(
    workdir: Path, incidents: int, officers: int, hours: float, seed: int
) -> dict[str, Any]:
    org = default_org()
    rng = random.Random(seed)
    engine = create_db_engine(f"sqlite:///{workdir / 'shift.db'}")
    migrate(engine)
    clock = Clock(T0)
    writer = IncidentWriter(engine, journal_dir=workdir / "journal")
    service = IncidentService(engine, org, default_categories(), writer, clock=clock)
    service.load()
    grids = sorted(org.grids)
    rows = [(f"P{n:03d}", grids[n % len(grids)], "officer", True) for n in range(officers)]
    service.set_officers(rows)
    shift = Shift(service, org, rng)
    for device, grid, _, _ in rows:
        lat, lon = random_point(org, grid, rng)
        shift.homes[device] = (lat, lon)
        service.officers.position(device, lat, lon, T0)
    when = T0
    rate = incidents / (hours * 3600)
    for _ in range(incidents):
        when += rng.expovariate(rate)
        shift.at(when, shift.report)
    wall = time.perf_counter()
    shift.run(T0 + hours * 3600 * 2)  # the shift, then time for the last ones to close
    wall = time.perf_counter() - wall
    service.stop()  # writes everything
    applied = dict(service.incidents)
    stored = {i.id: i for i in db.find_incidents(engine, db.HistoryQuery(limit=10**9))}
    lost = 0
    for n, incident in applied.items():
        timeline = db.get_transitions(engine, n)
        if stored.get(n) != incident or [t.seq for t in timeline] != list(
            range(1, incident.seq + 1)
        ):
            lost += 1
    everything = list(stored.values())
    accepts = [i.accepted_at - i.reported_at for i in everything if i.accepted_at]
    engine.dispose()
    return {
        "incidents": len(applied),
        "closed": sum(i.state == "closed" for i in everything),
        "lost": lost + (incidents - len(stored)),
        "median_accept_s": round(percentile(accepts, 0.5), 1),
        "escalated": sum(i.escalations > 0 for i in everything),
        "closed_by_tier": {
            t: sum(i.closed_tier == t for i in everything) for t in ("grid", "area", "centre")
        },
        "steps": service.steps,
        "transitions_stored": sum(i.seq for i in everything),
        "simulated_h": round((clock.now - T0) / 3600, 2),
        "wall_s": round(wall, 2),
    }


# ---- 2. suggestions ----------------------------------------------------------------------------


def bench_suggest(officers: int, queries: int, seed: int) -> dict[str, Any]:
    org = default_org()
    rng = random.Random(seed)
    grids = sorted(org.grids)
    index = OfficerIndex()
    index.set_officers((f"L{n:05d}", grids[n % len(grids)]) for n in range(officers))
    for n in range(officers):
        device = f"L{n:05d}"
        lat, lon = random_point(org, grids[n % len(grids)], rng)
        index.position(device, lat, lon, T0)
        choice: Availability = rng.choices(AVAILABILITIES, weights=[5, 3, 2, 1])[0]
        index.set_availability(device, choice)
    places = []
    for _ in range(queries):
        grid = rng.choice(grids)
        places.append((*random_point(org, grid, rng), grid))
    index_ms, scan_ms = [], []
    rank = {"available": 0, "on_duty": 1, "busy": 2}
    for lat, lon, grid in places:
        start = time.perf_counter()
        got = index.suggest(lat, lon, grid, 5)
        index_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        scan = sorted(
            (rank[o.availability], o.grid != grid, distance_m(lat, lon, o.lat, o.lon), o.device)  # type: ignore[arg-type]
            for o in index.officers.values() if o.availability != "off"
        )[:5]  # fmt: skip
        scan_ms.append((time.perf_counter() - start) * 1000)
        assert [s.device for s in got] == [row[3] for row in scan], "index and scan disagree"
    return {
        "officers": officers,
        "queries": queries,
        "suggest_p50_ms": round(percentile(index_ms, 0.5), 3),
        "suggest_p95_ms": round(percentile(index_ms, 0.95), 3),
        "reference_full_scan_p95_ms": round(percentile(scan_ms, 0.95), 3),
        "speedup_vs_scan_p95": round(percentile(scan_ms, 0.95) / percentile(index_ms, 0.95), 1),
    }


# ---- 3. the board ------------------------------------------------------------------------------


def seed_history(engine: Any, total: int, days: int, rng: random.Random, now: float) -> None:
    org = default_org()
    grids = sorted(org.grids)
    cats = list(MIX)
    batch: list[db.Write] = []
    for n in range(1, total + 1):
        grid = rng.choice(grids)
        reported = now - rng.uniform(0, days * 86400)
        age = now - reported
        open_ = (age < 6 * 3600 and rng.random() < 0.5) or rng.random() < 0.002
        tier: Tier = rng.choices(TIERS, weights=[85, 12, 3])[0]
        unit = grid if tier == "grid" else org.parent(grid) if tier == "area" else "centre"
        assert unit is not None
        done = None if open_ else reported + min(age, rng.uniform(600, 7200))
        incident = Incident(
            id=n, category=rng.choice(cats), text="seeded", source="api", reporter="d", grid=grid,
            area=org.parent(grid), tier=tier, unit=unit, reported_at=reported,
            tier_since=reported, state="accepted" if open_ else "closed",
            accepted_at=reported + 60, closed_at=done, closed_tier=None if open_ else tier,
            resolution=None if open_ else "done", seq=1, updated_at=done or reported,
        )  # fmt: skip
        batch.append(db.Write(incident, ()))
        if len(batch) == 5000:
            db.write_steps(engine, batch)
            batch = []
    if batch:
        db.write_steps(engine, batch)


def _sees(scope: Scope, incident: Incident) -> bool:
    return scope.sees_incident(incident.grid, incident.unit)


def bench_board(workdir: Path, stored: int, queries: int, seed: int) -> dict[str, Any]:
    org = default_org()
    rng = random.Random(seed)
    engine = create_db_engine(f"sqlite:///{workdir / 'board.db'}")
    migrate(engine)
    now = time.time()
    seed_history(engine, stored, 100, rng, now)
    service = IncidentService(
        engine, org, default_categories(), IncidentWriter(engine), clock=time.time
    )
    start = time.perf_counter()
    service.load()
    load_s = time.perf_counter() - start
    scopes = {
        "centre": scope_of(Role("centre"), org),
        "grid": scope_of(Role("grid", "grid-01"), org),
    }
    result: dict[str, Any] = {"stored": stored, "in_memory": len(service.incidents),
                              "load_s": round(load_s, 2)}  # fmt: skip
    all_ms: list[float] = []
    for name, scope in scopes.items():
        memory_ms, db_ms = [], []
        for _ in range(queries):
            t = time.perf_counter()
            visible = None if scope.whole else partial(_sees, scope)  # as the API asks
            found = service.board(visible)
            views = [service.view(i) for i in found]
            encode_json(views)  # what the API sends
            memory_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            units = None if scope.whole else scope.units
            rows = db.find_incidents(engine, db.HistoryQuery(since=now - 86400, units=units,
                                                               limit=100_000))  # fmt: skip
            current = [i for i in rows if i.open or (i.closed_at or 0) >= now - 86400]
            closed = sorted((i for i in current if not i.open), key=lambda i: -i.updated_at)
            shown = [service.view(i) for i in [*(i for i in current if i.open), *closed[:100]]]
            encode_json(shown)
            db_ms.append((time.perf_counter() - t) * 1000)
        all_ms += memory_ms
        result[f"board_{name}"] = {
            "incidents_shown": len(views),
            "p50_ms": round(percentile(memory_ms, 0.5), 3),
            "p95_ms": round(percentile(memory_ms, 0.95), 3),
            "reference_db_p95_ms": round(percentile(db_ms, 0.95), 3),
        }
    service.stop()
    engine.dispose()
    result["board_p95_ms"] = round(percentile(all_ms, 0.95), 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run (not for results)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    quick = args.quick
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shift = run_shift(work, 100 if quick else 1000, 200, 1.0 if quick else 8.0, seed=1)
        suggest = bench_suggest(10_000, 200 if quick else 1000, seed=2)
        board = bench_board(work, 10_000 if quick else 100_000, 20 if quick else 200, seed=3)
    result = {
        "benchmark": "incidents",
        "quick": quick,
        "incidents": shift["incidents"],
        "closed": shift["closed"],
        "lost": shift["lost"],
        "median_accept_s": shift["median_accept_s"],
        "suggest_p95_ms": suggest["suggest_p95_ms"],
        "board_p95_ms": board["board_p95_ms"],
        "targets": {"lost": 0, "suggest_p95_ms": 20, "board_p95_ms": 50},
        "met": {
            "lost": shift["lost"] == 0,
            "suggest_p95_ms": suggest["suggest_p95_ms"] <= 20,
            "board_p95_ms": board["board_p95_ms"] <= 50,
        },
        "shift": shift,
        "suggest": suggest,
        "board": board,
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor(),
            "cores": os.cpu_count(),
            "load_avg_at_end": [round(x, 1) for x in os.getloadavg()],
        },
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = args.out
    if quick and out == RESULTS:  # a smoke run never replaces the committed result
        out = RESULTS.parent / "tmp" / RESULTS.name
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    keys = ("incidents", "closed", "lost", "median_accept_s", "suggest_p95_ms", "board_p95_ms")
    print(json.dumps({k: result[k] for k in (*keys, "met")}))


if __name__ == "__main__":
    main()
