"""What `xixin up` writes is the gateway's user's only, and its database password is never shown."""

from __future__ import annotations

from pathlib import Path

from gateway.service import GatewayService, ServiceConfig
from gateway.store.db import redacted_url


def test_the_data_directory_is_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir(mode=0o755)  # an operator's existing directory is tightened too
    service = GatewayService(ServiceConfig(data_dir=data_dir, record=False))
    try:
        assert data_dir.stat().st_mode & 0o777 == 0o700
        assert (data_dir / "journal").stat().st_mode & 0o777 == 0o700  # outage spill (§10.2)
    finally:
        service.close()


def test_database_urls_are_shown_without_their_password() -> None:
    shown = redacted_url("postgresql+psycopg://xixin:hunter2@db.example:5432/xixin")
    assert "hunter2" not in shown and "db.example" in shown and "xixin" in shown
    assert "hunter2" not in redacted_url("not a url hunter2")
