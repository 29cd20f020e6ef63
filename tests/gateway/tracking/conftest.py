"""Tracking fixtures: migrated SQLite and PostgreSQL databases (cluster: tests/conftest.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from gateway.store.db import create_db_engine, migrate
from xixin.pgcluster import PostgresCluster

_names = itertools.count(1)


@pytest.fixture
def pg_engine(pg_cluster: PostgresCluster) -> Iterator[sqlalchemy.Engine]:
    url = pg_cluster.create_database(f"xixin_test_{next(_names)}")
    engine = create_db_engine(url)
    migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sqlalchemy.Engine]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'xixin.db'}")
    migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> sqlalchemy.Engine:
    """Both databases: every storage test runs on SQLite and on a real PostgreSQL."""
    name = "sqlite_engine" if request.param == "sqlite" else "pg_engine"
    result: sqlalchemy.Engine = request.getfixturevalue(name)
    return result
