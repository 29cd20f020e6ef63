"""Log a problem the first time it is seen for a key, then only count it (the caller does)."""

from __future__ import annotations

import logging
from collections.abc import Hashable

MAX_KEYS = 10_000


class LogOnce:
    """Remembers the keys already logged, up to `max_keys`; past that, one line says that new
    keys are no longer logged either, so a flood of distinct bad inputs cannot flood the log."""

    def __init__(self, log: logging.Logger, max_keys: int = MAX_KEYS) -> None:
        self.log = log
        self.max_keys = max_keys
        self._seen: set[Hashable] = set()
        self._full = False

    def warning(self, key: Hashable, msg: str, *args: object) -> None:
        self.log_once(logging.WARNING, key, msg, *args)

    def log_once(
        self,
        level: int,
        key: Hashable,
        msg: str,
        *args: object,
        exc_info: BaseException | None = None,
    ) -> None:
        if key in self._seen:
            return
        if len(self._seen) >= self.max_keys:
            if not self._full:
                self._full = True
                self.log.warning(
                    "%d distinct problems logged; new ones are only counted from now on",
                    self.max_keys,
                )
            return
        self._seen.add(key)
        self.log.log(level, msg, *args, exc_info=exc_info)
