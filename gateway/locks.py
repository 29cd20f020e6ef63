"""Advisory directory locks: one owner per data directory and per managed broker.

A lock belongs to the open file description of the process that took it (flock), is not
inherited by the programs it starts (O_CLOEXEC), and goes away with that process however it
ends, so a lock that can be taken proves the previous owner is gone.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from gateway.errors import GatewayError


class LockedError(GatewayError):
    """Another running process holds the lock."""


def take_lock(path: Path, busy: str) -> int:
    """Take an exclusive lock on `path` (created 0600) without waiting; returns its fd, to
    pass to release_lock. Raises LockedError(busy) when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise LockedError(busy) from exc
    return fd


def release_lock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)
