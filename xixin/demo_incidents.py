"""`xixin up --demo`: a simulated dispatcher keeps incidents flowing through the demo grids.

Every minute or so it reports an incident at a random place in a demo grid, accepts it after a
few seconds, assigns the first suggested officer (the demo terminals answer by themselves:
accepted, en route, on scene, resolved — firmware_sim.responder), closes resolved incidents with
a note, and now and then hands one to the area with a reason. It runs on the gateway's event
loop and goes through the incident service like a dispatcher's console would.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Final

from gateway.incidents.errors import IncidentError
from gateway.incidents.model import Place
from gateway.incidents.service import IncidentService
from protocol.geometry import point_in_ring
from protocol.org import Organisation

log = logging.getLogger(__name__)

ACTOR: Final = "demo-dispatcher"
CASES: Final = (
    ("police", "市场门口有人打架 / a fight at the market gate"),
    ("property", "小区电梯停运 / the compound's lift is out of order"),
    ("safety-hazard", "工地围挡倒塌 / a site fence has fallen onto the road"),
    ("mediation", "邻里噪音纠纷 / neighbours quarrel over noise"),
    ("new-residents", "新居民租房求助 / a new resident needs help with a lease"),
)


def _place(org: Organisation, grid: str, rng: random.Random) -> Place:
    ring = org.grids[grid].polygon
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    for _ in range(100):
        lon, lat = rng.uniform(min(lons), max(lons)), rng.uniform(min(lats), max(lats))
        if point_in_ring(lon, lat, ring):
            return Place(grid, None, lat, lon)
    return Place(grid)


async def run_demo_dispatcher(
    incidents: IncidentService, grids: list[str], seed: int = 11, every_s: float = 60.0
) -> None:
    rng = random.Random(seed)
    org = incidents.org
    while True:
        try:
            step(incidents, org, grids, rng)
        except IncidentError as exc:  # a step the state no longer allows: next round
            log.info("demo dispatcher: %s", exc)
        await asyncio.sleep(rng.uniform(0.5, 1.5) * every_s / 6)


def step(
    incidents: IncidentService, org: Organisation, grids: list[str], rng: random.Random
) -> None:
    """One round: close what is resolved, move what waits, sometimes report a new one."""
    now = incidents.clock()
    for incident in list(incidents.incidents.values()):
        waited = now - incident.updated_at
        if incident.state == "resolved" and waited > 10:
            incidents.step(incident.id, "close", ACTOR, note="处置完毕 / handled on the spot")
        elif incident.state == "reported" and waited > 5:
            incidents.step(incident.id, "accept", ACTOR)
        elif incident.state == "accepted" and waited > 3:
            if incident.tier == "grid" and rng.random() < 0.1:
                incidents.step(incident.id, "escalate", ACTOR, reason="需片区协调 / needs the area")
                continue
            found = incidents.suggest(incident.id, 1)
            if found:
                incidents.step(incident.id, "assign", ACTOR, officers=[found[0].device])
    open_now = sum(i.open for i in incidents.incidents.values())
    # The first at once, so a console opened in the demo's first minute has something to show.
    if (open_now == 0 or rng.random() < 1 / 6) and open_now < 4:
        category, text = rng.choice(CASES)
        grid = rng.choice(grids)
        incidents.report(category, text, source="dispatcher", reporter=ACTOR,
                         place=_place(org, grid, rng))  # fmt: skip
