"""The store does not import the parts that define tables on its `metadata`."""

from __future__ import annotations

import subprocess
import sys

from gateway.tables import metadata


def test_the_store_imports_no_tracking_module() -> None:
    code = (
        "import sys, gateway.store.db, gateway.store.recordings, gateway.store.registry, "
        "gateway.store.schema; print(sorted(m for m in sys.modules if 'tracking' in m))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_complete_metadata_has_every_part_s_tables() -> None:
    assert {"devices", "recordings", "positions"} <= set(metadata.tables)
