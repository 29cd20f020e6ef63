"""Alembic revisions; the package marker makes setuptools ship them (Alembic skips this file)."""
