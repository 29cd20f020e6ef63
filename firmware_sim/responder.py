"""How a simulated officer answers an incident assignment (pure; `now` is passed in).

On an ``assign`` with an incident: ``accepted`` after a moment, ``en_route`` when it sets off,
then it travels in a straight line toward the incident at `speed_mps` (its GPS follows:
:meth:`position`), ``on_scene`` on arrival, ``resolved`` after handling it; then it walks back
to where it left its patrol and carries on. Without a position it takes `travel_s` instead.
Answers are protocol §5.6 status codes; the firmware sends them as ``status_msg`` with the
incident's number.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Final

Point = tuple[float, float]  # (lon, lat)
M_PER_DEG_LAT: Final = 111_320.0
INF: Final = math.inf


@dataclass(frozen=True, slots=True)
class ResponderConfig:
    enabled: bool = True
    accept_s: tuple[float, float] = (2.0, 8.0)
    depart_s: tuple[float, float] = (3.0, 15.0)
    speed_mps: float = 4.2  # an e-bike through a village
    travel_s: tuple[float, float] = (60.0, 240.0)  # when the incident has no position
    handle_s: tuple[float, float] = (60.0, 300.0)


def _distance_m(a: Point, b: Point) -> float:
    x = (b[0] - a[0]) * M_PER_DEG_LAT * math.cos(math.radians((a[1] + b[1]) / 2))
    return math.hypot(x, (b[1] - a[1]) * M_PER_DEG_LAT)


@dataclass(slots=True)
class Job:
    incident: int
    target: Point | None
    steps: list[tuple[float, str]] = field(default_factory=list)  # (when, code), in order
    start: Point | None = None
    depart_at: float = INF
    arrive_at: float = INF
    resolved_at: float = INF
    back_at: float = INF


class IncidentResponder:
    """One officer's incident: at most one at a time (a new assignment replaces the old)."""

    def __init__(self, config: ResponderConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self.job: Job | None = None
        self.answered: list[tuple[int, str]] = []

    def assign(self, incident: int, target: Point | None, here: Point | None, now: float) -> None:
        if not self.config.enabled:
            return
        cfg, rng = self.config, self.rng
        job = Job(incident, target, start=here)
        accept_at = now + rng.uniform(*cfg.accept_s)
        job.depart_at = accept_at + rng.uniform(*cfg.depart_s)
        if target is not None and here is not None:
            travel = _distance_m(here, target) / cfg.speed_mps
        else:
            travel = rng.uniform(*cfg.travel_s)
        job.arrive_at = job.depart_at + travel
        job.resolved_at = job.arrive_at + rng.uniform(*cfg.handle_s)
        job.back_at = job.resolved_at + travel
        job.steps = [
            (accept_at, "accepted"), (job.depart_at, "en_route"), (job.arrive_at, "on_scene"),
            (job.resolved_at, "resolved"),
        ]  # fmt: skip
        self.job = job

    def next_at(self) -> float:
        job = self.job
        return job.steps[0][0] if job is not None and job.steps else INF

    def due(self, now: float) -> list[tuple[int, str]]:
        """The answers due by `now`, in order."""
        job = self.job
        out: list[tuple[int, str]] = []
        while job is not None and job.steps and job.steps[0][0] <= now:
            out.append((job.incident, job.steps.pop(0)[1]))
        self.answered += out
        if job is not None and not job.steps and now >= job.back_at:
            self.job = None
        return out

    def position(self, now: float) -> Point | None:
        """Where the officer is while away from its patrol (None: on patrol)."""
        job = self.job
        if job is None or job.start is None or job.target is None or now < job.depart_at:
            return None
        if now >= job.back_at:
            self.job = None if not job.steps else job
            return None
        a, b = job.start, job.target
        if now <= job.arrive_at:
            f = (now - job.depart_at) / max(1e-9, job.arrive_at - job.depart_at)
        elif now <= job.resolved_at:
            f = 1.0
        else:
            f = 1.0 - (now - job.resolved_at) / max(1e-9, job.back_at - job.resolved_at)
        return (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f)

    def moving(self, now: float) -> bool:
        job = self.job
        return job is not None and (
            job.depart_at <= now < job.arrive_at or job.resolved_at <= now < job.back_at
        )
