"""Fixtures for incident tests: a migrated SQLite database and a service on it, with a
clock the test moves."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy

from gateway.incidents.categories import default_categories
from gateway.incidents.service import IncidentService
from gateway.incidents.store import IncidentWriter
from gateway.store.db import create_db_engine, migrate
from protocol.org import default_org


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sqlalchemy.Engine]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'x.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_service(engine: sqlalchemy.Engine, journal: Path, clock: Clock) -> IncidentService:
    writer = IncidentWriter(engine, journal_dir=journal)
    service = IncidentService(engine, default_org(), default_categories(), writer, clock=clock)
    service.load()
    return service


def settle(service: IncidentService) -> None:
    """Stop the writer (it writes everything first) — what a test checks is then stored."""
    service.stop()


def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll `predicate` until it holds (a readiness signal, not a latency bound)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.02)
