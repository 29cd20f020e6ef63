"""Where a broker is: `mqtt://host:port`, `mqtts://host:port`, and optionally its Unix socket."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from transport.client import ClientOptions, Will
from transport.errors import BrokerUrlError


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    # The same broker's Unix socket, for the gateway's own connections on this machine.
    unix_path: str | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def where(self) -> str:
        """What a client of this address connects to, for logs."""
        return f"unix:{self.unix_path}" if self.unix_path else self.url

    def client_options(
        self,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        will: Will | None = None,
        subscriptions: Sequence[tuple[str, int]] = (),
        tls: ssl.SSLContext | None = None,
    ) -> ClientOptions:
        """How a gateway-side client reaches this address: the Unix socket when there is one,
        else host:port; mqtts:// verifies against `tls`, by default the system's CA store
        (SSL_CERT_FILE applies). Pass one `tls` context to share it between connections."""
        if self.tls and tls is None:
            tls = ssl.create_default_context()
        return ClientOptions(
            host=self.host,
            port=self.port,
            unix_path=self.unix_path,
            client_id=client_id,
            username=username,
            password=password,
            will=will,
            tls=tls if self.tls else None,
            subscriptions=list(subscriptions),
        )

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """Parse `mqtt://host:port` or `mqtts://host:port`; BrokerUrlError on anything else."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise BrokerUrlError(f"broker URL must look like mqtt://host:port, got {url!r}")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise BrokerUrlError(f"bad port in broker URL {url!r}") from exc
        return cls(parts.hostname, port, tls)
