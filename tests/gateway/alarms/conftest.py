"""Both databases for the alarm and command stores (fixtures of tests/gateway/tracking)."""

from tests.gateway.tracking.conftest import engine, pg_engine, sqlite_engine

__all__ = ["engine", "pg_engine", "sqlite_engine"]
