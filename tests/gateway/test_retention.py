"""Recording retention: the pure choice (age, then disk cap, oldest first) and a sweep on a real
database and recordings directory, with every deletion audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.auth.audit import AuditQuery, find_audit
from gateway.retention import Retention, RetentionPolicy, Stored, choose
from gateway.service import GatewayService, ServiceConfig
from gateway.store.recordings import RecordingFilter, find_recordings, recordings

DAY = 86400.0
NOW = 1_800_000_000.0


def test_choose_deletes_past_the_age_then_oldest_over_the_cap() -> None:
    rows = [
        Stored(1, NOW - 10 * DAY, 100),
        Stored(2, NOW - 2 * DAY, 300),
        Stored(3, NOW - 1 * DAY, 300),
        Stored(4, NOW - 60, 300),
    ]
    assert choose(rows, NOW, RetentionPolicy()) == []
    assert choose(rows, NOW, RetentionPolicy(keep_days=7)) == [(rows[0], "age")]
    chosen = choose(rows, NOW, RetentionPolicy(keep_days=7, max_bytes=650))
    assert chosen == [(rows[0], "age"), (rows[1], "disk")]
    assert choose(rows, NOW, RetentionPolicy(max_bytes=300)) == [
        (rows[0], "disk"), (rows[1], "disk"), (rows[2], "disk"),
    ]  # fmt: skip
    with pytest.raises(ValueError):
        RetentionPolicy(keep_days=0)
    with pytest.raises(ValueError):
        RetentionPolicy(max_bytes=-1)


def _recording(service: GatewayService, ident: int, started: float, size: int) -> Path:
    relative = f"2020-01-0{ident}/grid-07/r{ident}.opus"
    path = service.recordings_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    with service.engine.begin() as conn:
        conn.execute(
            recordings.insert().values(
                id=ident, floor_key="grid-07", talker=f"T00{ident}", burst=ident,
                started_at=started, ended_at=started + 1, duration_ms=1000, frames=50,
                lost_frames=0, path=relative,
            )
        )  # fmt: skip
    return path


def test_a_sweep_deletes_rows_and_files_and_audits_each(tmp_path: Path) -> None:
    policy = RetentionPolicy(keep_days=7, max_bytes=1500)
    service = GatewayService(ServiceConfig(data_dir=tmp_path, retention=policy))
    try:
        service.migrate()
        service.audit.start()
        old = _recording(service, 1, NOW - 8 * DAY, 1000)
        middle = _recording(service, 2, NOW - 3 * DAY, 1000)
        new = _recording(service, 3, NOW - 60, 1000)
        retention = Retention(
            service.engine, service.recordings_dir, policy, service.audit, lambda: NOW
        )
        assert retention.sweep() == 2
        assert not old.exists() and not middle.exists() and new.exists()
        assert not old.parent.exists()  # a past day's emptied folders go too
        with service.engine.connect() as conn:
            left = find_recordings(conn, RecordingFilter(), 10)
        assert [row["id"] for row in left] == [3]
        assert retention.sweep() == 0
        service.audit.stop()
        entries = find_audit(service.engine, AuditQuery(action="recording_delete"))
        reasons = sorted((e["target"], e["detail"]["reason"], e["result"]) for e in entries)
        assert reasons == [("1", "age", "ok"), ("2", "disk", "ok")]
        assert all(e["actor"] == "system" and e["detail"]["bytes"] == 1000 for e in entries)
    finally:
        service.close()
