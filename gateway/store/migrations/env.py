"""Alembic environment: migrations run on the connection gateway.store.db.migrate hands over.

Also usable from the alembic CLI with ``-x url=sqlite:///var/xixin.db`` for authoring revisions.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from gateway.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables when a revision needs it.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    from gateway.store.db import create_db_engine

    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError(
            "no database: pass -x url=<sqlalchemy url> or use gateway.store.db.migrate"
        )
    engine = create_db_engine(url)
    try:
        with engine.begin() as new_connection:
            _run(new_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; run them online")
_run_online()
