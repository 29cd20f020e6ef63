"""The gateway database: engine settings, Alembic migrations, and the device registry on SQLite."""

from __future__ import annotations

import importlib.resources
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select

from gateway.credentials import hash_secret, verify_secret
from gateway.errors import GatewayError
from gateway.store.db import create_db_engine, current_revision, default_db_url, migrate
from gateway.store.errors import (
    DeviceExistsError,
    InvalidDeviceError,
    StoreError,
    UnknownDeviceError,
)
from gateway.store.registry import Device, DeviceRegistry, NewDevice
from gateway.store.schema import devices, floor_events, metadata, presence_events
from gateway.tables import metadata as _all_tables  # noqa: F401  (every table joins metadata)
from protocol.org import Organisation, default_org
from xixin.pgcluster import PostgresCluster

HEAD = "0007_alarms_commands"  # the newest revision


class FakeClock:
    def __init__(self, now: float = 1_764_300_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sqlalchemy.Engine]:
    engine = create_db_engine(default_db_url(tmp_path / "data"))
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def org() -> Organisation:
    return default_org()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(engine: sqlalchemy.Engine, org: Organisation, clock: FakeClock) -> DeviceRegistry:
    return DeviceRegistry(engine, org, clock=clock)


# ---- engine and migrations ----------------------------------------------------------------------


def test_default_url_is_a_file_in_the_data_dir(tmp_path: Path) -> None:
    url = default_db_url(tmp_path / "nested" / "data")
    assert url == f"sqlite:///{tmp_path / 'nested' / 'data' / 'xixin.db'}"
    engine = create_db_engine(url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    assert (tmp_path / "nested" / "data" / "xixin.db").is_file()


def test_sqlite_pragmas(engine: sqlalchemy.Engine) -> None:
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


def test_engine_is_usable_from_other_threads() -> None:
    """In-memory SQLite shares one connection, which sqlite3 refuses across threads by default."""
    engine = create_db_engine("sqlite://")
    migrate(engine)
    results: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with engine.connect() as conn:
                results.append(conn.exec_driver_sql("SELECT count(*) FROM devices").scalar_one())
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=work) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
    finally:
        engine.dispose()
    assert errors == []
    assert results == [0, 0, 0]


def test_migration_creates_the_tables_at_0001(engine: sqlalchemy.Engine) -> None:
    assert current_revision(engine) == HEAD
    tables = set(inspect(engine).get_table_names())
    assert {"devices", "presence_events", "floor_events", "alembic_version"} <= tables
    index_names = {ix["name"] for ix in inspect(engine).get_indexes("floor_events")}
    assert {"ix_floor_events_floor_key_ts", "ix_floor_events_device_ts"} <= index_names


def test_migrations_match_the_metadata(engine: sqlalchemy.Engine) -> None:
    """Every table or column added to `metadata` needs an Alembic revision, and vice versa."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_migrate_is_idempotent_and_accepts_a_url(tmp_path: Path) -> None:
    url = default_db_url(tmp_path)
    migrate(url)
    migrate(url)
    engine = create_db_engine(url)
    try:
        assert current_revision(engine) == HEAD
    finally:
        engine.dispose()


def test_migration_scripts_ship_inside_the_package() -> None:
    versions = importlib.resources.files("gateway.store.migrations").joinpath("versions")
    assert versions.joinpath("0001_initial.py").is_file()
    assert importlib.resources.files("gateway.store.migrations").joinpath("env.py").is_file()


def test_event_tables_accept_rows(engine: sqlalchemy.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(presence_events).values(device="T001", state="online", ts=1.5))
        conn.execute(
            insert(floor_events).values(
                ts=2.0,
                floor_key="tg:grid-01",
                event="granted",
                device="T001",
                burst=7,
                priority="normal",
            )
        )
    with engine.connect() as conn:
        assert conn.execute(select(presence_events.c.state)).scalar_one() == "online"
        assert conn.execute(select(floor_events.c.burst)).scalar_one() == 7


def test_bad_urls_are_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a database URL"):
        create_db_engine("not a url")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the directory"):
        create_db_engine(f"sqlite:///{blocker}/sub/xixin.db")
    assert issubclass(StoreError, GatewayError)


# ---- registry -----------------------------------------------------------------------------------


def test_add_returns_device_and_one_time_secret(registry: DeviceRegistry, clock: FakeClock) -> None:
    device, secret = registry.add("T001", "grid-01", "officer", name="张警官")
    assert device == Device("T001", "张警官", "grid-01", "officer", True, clock.now)
    assert registry.get("T001") == device
    assert registry.verify("T001", secret)
    assert not registry.verify("T001", secret[:-1])
    with registry.engine.connect() as conn:
        stored = conn.execute(select(devices.c.secret_hash)).scalar_one()
    assert secret not in stored and stored.startswith("$7$")
    assert verify_secret(secret, stored)


def test_add_many_is_all_or_nothing(registry: DeviceRegistry) -> None:
    registry.add("T002", "grid-01", "officer")
    batch = [NewDevice("T010", "grid-01", "officer", "张伟"), NewDevice("t002", "grid-02", "guard")]
    with pytest.raises(DeviceExistsError, match="T002"):
        registry.add_many(batch)
    with pytest.raises(InvalidDeviceError, match="repeat"):
        registry.add_many(
            [NewDevice("T011", "grid-01", "officer"), NewDevice("t011", "centre", "dispatcher")]
        )
    with pytest.raises(InvalidDeviceError, match="grid-99"):
        registry.add_many(
            [NewDevice("T012", "grid-01", "officer"), NewDevice("T013", "grid-99", "guard")]
        )
    assert [d.id for d in registry.list()] == ["T002"]
    created = registry.add_many([batch[0], NewDevice("G010", "area-renxi", "guard")])
    assert [(d.id, d.name, d.unit) for d, _ in created] == [
        ("T010", "张伟", "grid-01"),
        ("G010", "G010", "area-renxi"),
    ]
    assert all(registry.verify(d.id, secret) for d, secret in created)
    assert registry.existing_ids(["t010", "G010", "T999"]) == {"t010": "T010", "g010": "G010"}


def test_name_defaults_to_id_and_list_is_sorted(registry: DeviceRegistry) -> None:
    registry.add("T002", "grid-02", "guard")
    registry.add("D001", "centre", "dispatcher")
    registry.add("T001", "area-renxi", "officer")
    assert [d.id for d in registry.list()] == ["D001", "T001", "T002"]
    assert registry.get("T002").name == "T002"


def test_registry_survives_reopening(tmp_path: Path, org: Organisation) -> None:
    url = default_db_url(tmp_path)
    first = create_db_engine(url)
    migrate(first)
    _, secret = DeviceRegistry(first, org).add("T009", "grid-09", "guard")
    first.dispose()
    second = create_db_engine(url)
    try:
        migrate(second)
        assert DeviceRegistry(second, org).verify("T009", secret)
    finally:
        second.dispose()


def test_disable_enable_and_password_entries(registry: DeviceRegistry) -> None:
    _, secret1 = registry.add("T001", "grid-01", "officer")
    registry.add("T002", "grid-02", "officer")
    registry.disable("T001")
    registry.disable("T001")  # idempotent
    assert registry.get("T001").enabled is False
    assert not registry.verify("T001", secret1)
    assert [user for user, _ in registry.password_entries()] == ["T002"]
    registry.enable("T001")
    assert registry.verify("T001", secret1)
    entries = dict(registry.password_entries())
    assert set(entries) == {"T001", "T002"}
    assert verify_secret(secret1, entries["T001"])


def test_rotate_replaces_the_secret(registry: DeviceRegistry, clock: FakeClock) -> None:
    _, old = registry.add("T001", "grid-01", "officer")
    clock.now += 60
    new = registry.rotate("T001")
    assert new != old
    assert registry.verify("T001", new)
    assert not registry.verify("T001", old)
    with registry.engine.connect() as conn:
        row = conn.execute(select(devices.c.created_at, devices.c.updated_at)).one()
    assert row.updated_at == row.created_at + 60


def test_verify_unknown_device_is_false(registry: DeviceRegistry) -> None:
    assert registry.verify("nobody", "secret") is False


def test_corrupt_stored_hash_is_reported(registry: DeviceRegistry) -> None:
    registry.add("T001", "grid-01", "officer")
    with registry.engine.begin() as conn:
        conn.execute(sqlalchemy.update(devices).values(secret_hash="garbage"))
    with pytest.raises(StoreError, match="corrupt stored secret"):
        registry.verify("T001", "whatever")


def test_duplicates_are_refused(registry: DeviceRegistry) -> None:
    registry.add("T001", "grid-01", "officer")
    with pytest.raises(DeviceExistsError, match="'T001' already exists"):
        registry.add("T001", "grid-02", "guard")
    with pytest.raises(DeviceExistsError, match="differ only in case"):
        registry.add("t001", "grid-02", "guard")
    assert len(registry.list()) == 1


@pytest.mark.parametrize(
    ("device_id", "unit", "role", "name", "message"),
    [
        ("T 1", "grid-01", "officer", None, "1-32 characters"),
        ("", "grid-01", "officer", None, "1-32 characters"),
        ("T1", "grid-99", "officer", None, "unknown unit 'grid-99'"),
        ("T1", "grid-01", "captain", None, "unknown role 'captain'"),
        ("T1", "grid-01", "officer", "x" * 65, "device name"),
        ("T1", "grid-01", "officer", "  ", "device name"),
        ("T1", "grid-01", "officer", "bad\nname", "device name"),
        ("xixin-gateway", "centre", "dispatcher", None, "reserved"),
        ("XIXIN-console", "centre", "dispatcher", None, "reserved"),
    ],
)
def test_invalid_devices_are_refused(
    registry: DeviceRegistry, device_id: str, unit: str, role: str, name: str | None, message: str
) -> None:
    with pytest.raises(InvalidDeviceError, match=message):
        registry.add(device_id, unit, role, name=name)
    assert registry.list() == []


@pytest.mark.parametrize("action", ["get", "disable", "enable", "rotate"])
def test_unknown_device(registry: DeviceRegistry, action: str) -> None:
    with pytest.raises(UnknownDeviceError, match="no device 'ghost'"):
        getattr(registry, action)("ghost")


def test_database_constraint_rejects_unknown_roles(engine: sqlalchemy.Engine) -> None:
    """The CHECK constraint guards the table even against writers that bypass the registry."""
    with pytest.raises(sqlalchemy.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            insert(devices).values(
                id="X",
                name="X",
                unit="grid-01",
                role="admin",
                secret_hash=hash_secret("x"),
                enabled=True,
                created_at=0.0,
                updated_at=0.0,
            )
        )


def test_store_errors_wrap_database_failures(registry: DeviceRegistry) -> None:
    with registry.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE devices")
    with pytest.raises(StoreError, match="listing devices failed"):
        registry.list()
    with pytest.raises(StoreError, match="adding device"):
        registry.add("T001", "grid-01", "officer")


# ---- PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_url(pg_cluster: PostgresCluster) -> str:
    """A database of its own in the session's private PostgreSQL cluster."""
    return pg_cluster.create_database("xixin_store_test")


def test_postgresql_migrations_and_registry(postgres_url: str, org: Organisation) -> None:
    engine = create_db_engine(postgres_url)
    try:
        migrate(engine)
        migrate(engine)
        assert current_revision(engine) == HEAD
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
        registry = DeviceRegistry(engine, org)
        _, secret = registry.add("T001", "grid-01", "officer")
        with pytest.raises(DeviceExistsError, match="differ only in case"):
            registry.add("t001", "grid-02", "guard")
        registry.disable("T001")
        assert registry.password_entries() == []
        registry.enable("T001")
        assert registry.verify("T001", secret)
    finally:
        engine.dispose()
