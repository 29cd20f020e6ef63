"""Imports every module that adds tables to the shared `metadata`, so it is complete
(Alembic's environment and the schema-drift test rely on this)."""

from gateway.store import recordings as _recordings  # noqa: F401
from gateway.store.schema import metadata
from gateway.tracking import schema as _tracking  # noqa: F401

__all__ = ["metadata"]
