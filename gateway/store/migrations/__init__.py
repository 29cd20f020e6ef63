"""Alembic environment and revisions for the gateway database (run via gateway.store.db.migrate)."""
