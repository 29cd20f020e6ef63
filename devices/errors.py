"""The devices package's exception hierarchy."""


class DevicesError(Exception):
    """Base of every error the devices package raises on purpose."""


class ClientError(DevicesError):
    """A terminal client (paho or asyncio) could not do what was asked."""


class ConnectFailedError(ClientError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"connection refused: {reason}")
        self.reason = reason


class ReplyTimeoutError(ClientError):
    """No reply to a request in time (after the retries)."""
