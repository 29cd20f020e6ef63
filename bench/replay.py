"""Replay benchmark: one device's 24 h (17,280 points at 5 s) out of a table of >= 50 M rows.

    python bench/replay.py [--quick] [--db sqlite,postgresql] [--cache /var/tmp/xixin-bench]

The table is generated once (1,000 devices x 3 days at 5 s = 51.84 M rows; --quick: 40 devices x
1 day = 0.69 M rows) inside the database itself and cached outside the repository, then reused.
Each sample picks a random device and a random 24 h window and times the replay query exactly as
the replay API runs it (`PositionReader.track_rows`: time, position, speed, course by a
primary-key range scan; on PostgreSQL an index-only scan of the covering key, 0004), the same
call wrapped into TrackPoints as `load_track` returns them (summaries, exports), and the whole
replay the API's `GET .../replay` runs (query, segments and Douglas-Peucker for zoom 16 on the
rows, TrackPoints only for the points drawn). The second and third reuse the pages the first
read; the first is the cold one.

Samples run twice. First with the replay index evicted from the OS page cache (`cold_*`, as
after a reboot: posix_fadvise DONTNEED on its files only). Then after reading the index once
into the page cache (PostgreSQL: the primary key's files; SQLite: the file), where it stays on
a gateway serving replays with RAM to spare: that steady state is what the `replay_*` figures
report. Writes bench/results/replay.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import percentile  # noqa: E402
from gateway.store.db import create_db_engine, migrate  # noqa: E402
from gateway.tracking.errors import TrackingStoreError  # noqa: E402
from gateway.tracking.history import HistoryConfig  # noqa: E402
from gateway.tracking.queries import replay  # noqa: E402
from gateway.tracking.store import PositionReader  # noqa: E402

STEP_S = 5
DAY_POINTS = 86_400 // STEP_S  # 17,280
T0 = 1_764_000_000.0  # 2025-11-24T16:00:00Z, a fixed start so the cache stays valid
LAT0, LON0 = 30.86, 120.12


def generate_sqlite(url: str, devices: int, days: int) -> None:
    engine = create_db_engine(url)
    migrate(engine)
    points = DAY_POINTS * days
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.execute("CREATE TEMP TABLE seq (i INTEGER PRIMARY KEY)")
        cursor.execute(
            "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < ?) "
            "INSERT INTO seq SELECT i FROM s",
            (points - 1,),
        )
        for d in range(devices):
            # A patrol-like walk: a slow drift plus a bounded zig-zag, different per device.
            cursor.execute(
                "INSERT INTO positions (device, fix_time, server_time, lat, lon, speed, course, "
                "altitude, accuracy, battery, valid, attributes) "
                "SELECT ?, ? + i * 5, ? + i * 5 + 0.4, "
                "? + (i % 720) * 2e-6 + ((i / 720) % 7) * 1e-4, "
                "? + (i % 360) * 3e-6 - ((i / 360) % 5) * 1e-4, "
                "1.2, (i * 7) % 360, 12.0, 5.0, 100 - (i / 600) % 90, 1, NULL FROM seq",
                (f"D{d:04d}", T0, T0, LAT0 + (d % 40) * 1e-3, LON0 + (d // 40) * 1e-3),
            )
            if d % 50 == 49:
                raw.commit()
                print(f"  sqlite: {d + 1}/{devices} devices", flush=True)
        raw.commit()
        cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
        engine.dispose()


def generate_postgresql(url: str, devices: int, days: int) -> None:
    engine = create_db_engine(url)
    migrate(engine)
    points = DAY_POINTS * days
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SET synchronous_commit = off")
        for start in range(0, devices, 50):
            cursor.execute(
                "INSERT INTO positions (device, fix_time, server_time, lat, lon, speed, course, "
                "altitude, accuracy, battery, valid, attributes) "
                "SELECT 'D' || lpad(d::text, 4, '0'), %s + i * 5, %s + i * 5 + 0.4, "
                "%s + (d %% 40) * 1e-3 + (i %% 720) * 2e-6 + ((i / 720) %% 7) * 1e-4, "
                "%s + (d / 40) * 1e-3 + (i %% 360) * 3e-6 - ((i / 360) %% 5) * 1e-4, "
                "1.2, (i * 7) %% 360, 12.0, 5.0, 100 - (i / 600) %% 90, true, NULL "
                "FROM generate_series(%s::int, %s::int) d, generate_series(0, %s::int) i "
                "ORDER BY d, i",
                (T0, T0, LAT0, LON0, start, min(devices, start + 50) - 1, points - 1),
            )
            raw.commit()
            print(f"  postgresql: {min(devices, start + 50)}/{devices} devices", flush=True)
        raw.commit()
    finally:
        raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE positions")
    engine.dispose()


def row_count(url: str) -> int:
    engine = create_db_engine(url)
    try:
        return PositionReader(engine).count()
    except TrackingStoreError:
        return 0
    finally:
        engine.dispose()


def replay_index_files(url: str) -> list[Path]:
    """The files holding the index a replay reads (SQLite: the WITHOUT ROWID table's file)."""
    if url.startswith("sqlite"):
        return [Path(url.removeprefix("sqlite:///"))]
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            data, relative = conn.exec_driver_sql(
                "SELECT current_setting('data_directory'), pg_relation_filepath('pk_positions')"
            ).one()
    finally:
        engine.dispose()
    first = Path(data) / relative
    return [first, *sorted(first.parent.glob(f"{first.name}.*"), key=lambda p: int(p.suffix[1:]))]


def set_page_cache(files: list[Path], *, resident: bool) -> int:
    """Read `files` into the OS page cache, or evict them from it; returns the bytes involved.
    Only these files are touched, never the machine's whole cache."""
    total = 0
    for path in files:
        with path.open("rb", buffering=0) as handle:
            if resident:
                while chunk := handle.read(16 << 20):
                    total += len(chunk)
            else:
                os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                total += path.stat().st_size
    return total


def measure(url: str, devices: int, days: int, samples: int, seed: int) -> dict[str, Any]:
    engine = create_db_engine(url)
    reader = PositionReader(engine)
    rng = random.Random(seed)
    query_ms: list[float] = []
    replay_ms: list[float] = []
    track_ms: list[float] = []
    returned: list[int] = []
    config = HistoryConfig()
    reader.track_rows("D0000", T0, T0 + 60)  # open the pool outside the clock
    for _ in range(samples):
        device = f"D{rng.randrange(devices):04d}"
        start = T0 + rng.randrange(0, max(1, (days - 1) * 86_400 + 1), STEP_S)
        t = time.perf_counter()
        rows = reader.track_rows(device, start, start + 86_400, full=False)
        query_ms.append((time.perf_counter() - t) * 1000)
        returned.append(len(rows))
        t = time.perf_counter()
        reader.track(device, start, start + 86_400, full=False)
        track_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        replay(reader, config, device, start, start + 86_400, 16)  # what GET .../replay runs
        replay_ms.append((time.perf_counter() - t) * 1000)
    engine.dispose()
    return {
        "samples": samples,
        "points_per_replay": round(statistics.mean(returned)),
        "replay_p50_ms": round(percentile(query_ms, 0.50), 2),
        "replay_p95_ms": round(percentile(query_ms, 0.95), 2),
        "replay_max_ms": round(max(query_ms), 2),
        # The same query wrapped into TrackPoints (load_track: summaries, exports).
        "track_p50_ms": round(percentile(track_ms, 0.50), 2),
        "track_p95_ms": round(percentile(track_ms, 0.95), 2),
        "full_replay_p50_ms": round(percentile(replay_ms, 0.50), 2),
        "full_replay_p95_ms": round(percentile(replay_ms, 0.95), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--cache", default="/var/tmp/xixin-bench")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "replay.json"))
    args = parser.parse_args()
    devices, days = (40, 1) if args.quick else (1000, 3)
    samples = args.samples or (40 if args.quick else 200)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    label = f"{devices}x{days}d"
    results: list[dict[str, Any]] = []
    cluster = None
    try:
        for kind in args.db.split(","):
            if kind == "sqlite":
                url = f"sqlite:///{cache / f'replay-{label}.db'}"
            else:
                from xixin.pgcluster import PostgresCluster

                cluster = PostgresCluster(cache / "pg", fsync=True).start()
                url = cluster.create_database(f"replay_{label}")
            expected = devices * days * DAY_POINTS
            generated_s = 0.0
            if row_count(url) != expected:
                print(f"generating {expected:,} rows ({kind}) ...", flush=True)
                t = time.time()
                if kind == "sqlite":
                    Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
                    generate_sqlite(url, devices, days)
                else:
                    generate_postgresql(url, devices, days)
                generated_s = time.time() - t
            # A cached table is brought to the current schema like a deployment's would be
            # (on PostgreSQL, 0004 rebuilds the primary key with the replay columns included).
            migrate(url)
            db_rows = row_count(url)
            index_files = replay_index_files(url)
            set_page_cache(index_files, resident=False)
            cold = measure(url, devices, days, samples, seed=7)
            size = set_page_cache(index_files, resident=True)
            row = {"db": kind, "db_rows": db_rows, **measure(url, devices, days, samples, seed=8)}
            row["replay_index_mib"] = size >> 20
            row.update({f"cold_{key}": value for key, value in cold.items() if "_p" in key})
            if generated_s:
                row["generated_in_s"] = round(generated_s)
            print(json.dumps(row), flush=True)
            results.append(row)
            if cluster is not None:
                cluster.stop()
                cluster = None
    finally:
        if cluster is not None:
            cluster.stop()
    report = {
        "benchmark": "replay",
        "quick": args.quick,
        "query": "one device, 24 h window, ORDER BY fix_time (primary key range scan; "
        "PostgreSQL: index-only scan of the covering key)",
        "target_p95_ms": 50,
        "replay_is": "replay index resident in the OS page cache; cold_*: evicted from it first",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_at_end": os.getloadavg(),
        },
        "rows": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
