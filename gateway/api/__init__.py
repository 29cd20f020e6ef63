"""The dispatch HTTP API and web console (FastAPI)."""

from gateway.api.app import create_app

__all__ = ["create_app"]
