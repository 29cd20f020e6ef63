"""What the composition root treats as an error raised on purpose: one line, exit 2."""

from __future__ import annotations

from typing import Final

from devices.errors import DevicesError
from gateway.errors import GatewayError
from protocol.errors import ProtocolError
from transport.errors import TransportError


class UsageError(Exception):
    """A command line that cannot be carried out (a missing or unreadable setting)."""


# Every package's base error: each carries its explanation, so the CLI prints it, not a traceback.
EXPECTED_ERRORS: Final[tuple[type[Exception], ...]] = (
    GatewayError,
    DevicesError,
    ProtocolError,
    TransportError,
    UsageError,
)
# The same, and what the operating system refuses (a file, a port, a missing program).
EXPECTED_OR_OS_ERRORS: Final[tuple[type[Exception], ...]] = (*EXPECTED_ERRORS, OSError)


def one_line(exc: BaseException) -> str:
    """An error as one line for the terminal: a database driver's text spans several (the
    server's hint, SQLAlchemy's "Background on this error" link) and may carry the SQL."""
    lines = [line.strip() for line in str(exc).splitlines()]
    kept = [line for line in lines if line and not line.startswith(("(Background on", "[SQL:"))]
    return " ".join(kept) if kept else type(exc).__name__
