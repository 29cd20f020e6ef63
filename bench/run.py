"""Run every benchmark from one command and print what each measured against its reference.

    .venv/bin/python bench/run.py [--quick] [--only relay,codec,...]

Full runs write the committed results in bench/results/<name>.json. Quick runs (each <= 45 s,
soak <= 2 min) write to bench/results/tmp/ (ignored by git), so a smoke run never replaces a full
result.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = [
    "relay", "codec", "voice", "fleet", "ingest", "replay", "soak", "faults", "incidents",
]  # fmt: skip


def summary(name: str, result: dict[str, object]) -> str:
    """One line with the headline figures of a result file."""
    keys = {
        "relay": [
            "max_fps_added_p99_under_10ms",
            "direct_max_fps_p99_under_10ms",
            "max_fps_ratio",
            "storm_added_p99_ms",
        ],
        "codec": ["encode_ratio", "decode_ratio"],
        "voice": ["targets_met"],
        "fleet": ["max_terminals_per_process"],
        "ingest": [],
        "replay": [],
        "soak": ["lost", "max_backlog", "rss_start_mb", "rss_end_mb", "targets_met"],
        "faults": ["all_meet_targets"],
        "incidents": ["lost", "median_accept_s", "suggest_p95_ms", "board_p95_ms", "met"],
    }[name]
    parts = [f"{key}={result[key]}" for key in keys if key in result]
    rows = result.get("rows")
    if isinstance(rows, list) and rows and not parts:
        parts.append(f"{len(rows)} rows")
    return ", ".join(parts) or "see the JSON"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="every benchmark in <= 45 s (soak <= 2 min)"
    )
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else BENCHMARKS
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    failed = []
    for name in names:
        out = ROOT / "bench" / "results" / ("tmp" if args.quick else "") / f"{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(ROOT / "bench" / f"{name}.py"), "--out", str(out)]
        if args.quick:
            command.append("--quick")
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        began = time.monotonic()
        code = subprocess.run(command, cwd=ROOT).returncode
        elapsed = time.monotonic() - began
        if code != 0:
            failed.append(name)
            print(f"== {name}: FAILED (exit {code}) after {elapsed:.0f} s", flush=True)
            continue
        result = json.loads(out.read_text())
        print(f"== {name}: {summary(name, result)}  ({elapsed:.0f} s, {out})", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
