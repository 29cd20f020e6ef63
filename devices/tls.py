"""TLS for terminals: trust the site's CA (`xixin certs init` writes `ca.pem`), optionally show
a client certificate. The server's name is checked against the host the terminal dials."""

from __future__ import annotations

import ssl
from pathlib import Path

from devices.errors import DevicesError


class TlsSetupError(DevicesError):
    """A CA file or client certificate that cannot be used."""


def client_tls_context(
    cafile: str | Path | None = None,
    certfile: str | Path | None = None,
    keyfile: str | Path | None = None,
) -> ssl.SSLContext:
    """A TLS 1.2+ client context; `cafile` None trusts the system's CA store."""
    try:
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if certfile is not None:
            context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    except (OSError, ssl.SSLError) as exc:
        raise TlsSetupError(f"cannot set up TLS: {exc}") from exc
    return context
