"""Opening the gateway database and migrating it to the newest schema.

SQLite (the default, one file in the data directory) and PostgreSQL are supported. The Alembic
scripts ship inside this package (``gateway/store/migrations``), so migrating needs no alembic.ini.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import sqlalchemy
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from gateway.store.errors import StoreError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DB_FILE_NAME = "xixin.db"
SQLITE_BUSY_TIMEOUT_MS = 5000


def default_db_url(data_dir: Path) -> str:
    """The SQLite file ``data_dir/xixin.db`` as a SQLAlchemy URL."""
    return f"sqlite:///{(data_dir / DB_FILE_NAME).resolve()}"


def redacted_url(url: str) -> str:
    """A database URL fit to print or log: the password replaced by ***."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return "<unparseable database URL>"


def _is_memory_sqlite(database: str | None) -> bool:
    return not database or database == ":memory:" or database.startswith("file::memory:")


def create_db_engine(url: str, *, echo: bool = False) -> sqlalchemy.Engine:
    """An Engine for `url`; for SQLite: WAL, foreign keys, busy timeout, usable from any thread.

    The parent directory of a SQLite file is created. An in-memory SQLite database uses a
    single shared connection so every thread sees the same data.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {url!r}") from exc
    kwargs: dict[str, Any] = {"echo": echo}
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite:
        kwargs["connect_args"] = {
            "check_same_thread": False,
            "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
        }
        if _is_memory_sqlite(parsed.database):
            kwargs["poolclass"] = StaticPool
        else:
            assert parsed.database is not None
            try:
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the directory for {parsed.database}: {exc}"
                ) from exc
    try:
        engine = sqlalchemy.create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError, SQLAlchemyError) as exc:
        raise StoreError(
            f"cannot use database {parsed.render_as_string(hide_password=True)}: {exc}"
        ) from exc
    if is_sqlite:
        event.listen(engine, "connect", _configure_sqlite)
    return engine


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets the web console read while the control plane writes; foreign keys are off by
        # default in SQLite; the busy timeout turns brief lock contention into waiting.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def alembic_config() -> Config:
    """An Alembic Config pointing at the packaged migration scripts (no ini file)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def migrate(engine_or_url: sqlalchemy.Engine | str, *, revision: str = "head") -> None:
    """Upgrade the database to `revision` (default: the newest schema)."""
    engine = create_db_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    config = alembic_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except SQLAlchemyError as exc:
        raise StoreError(f"migrating the database failed: {exc}") from exc
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()
    log.info(
        "database at %s migrated to %s", engine.url.render_as_string(hide_password=True), revision
    )


def current_revision(engine: sqlalchemy.Engine) -> str | None:
    """The Alembic revision the database is at, or None if it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
