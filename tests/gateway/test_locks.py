"""Directory locks: held by one process, gone with it however it ends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.locks import LockedError, release_lock, take_lock
from gateway.service import GatewayService, ServiceConfig

_HOLDER = """
import sys
from pathlib import Path
from gateway.locks import take_lock
take_lock(Path(sys.argv[1]), "busy")
print("held", flush=True)
sys.stdin.read()
"""


def test_a_lock_excludes_other_processes_until_its_holder_dies(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match="someone has it"):
            take_lock(path, "someone has it")
    finally:
        holder.kill()  # no cleanup runs: the lock still goes with the process
        holder.wait()
    release_lock(take_lock(path, "busy"))


def test_a_second_service_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    first = GatewayService(ServiceConfig(data_dir=tmp_path, record=False))
    try:
        with pytest.raises(LockedError, match=f"another gateway is running on {tmp_path}"):
            GatewayService(ServiceConfig(data_dir=tmp_path, record=False))
    finally:
        first.close()
    GatewayService(ServiceConfig(data_dir=tmp_path, record=False)).close()
