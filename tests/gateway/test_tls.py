"""`--broker mqtts://…`: the gateway talks to an external broker over TLS and verifies it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.broker import BrokerUnavailableError, find_mosquitto, free_port
from gateway.runner import GatewayRunner, GatewaySettings
from tests.gateway.conftest import make_directory
from tests.gateway.harness import GatewayThread
from transport.address import BrokerAddress

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing")


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem")
    )
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        "/CN=xixin test CA",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=localhost",
    )
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return ca, cert, key


def test_gateway_connects_over_tls_and_refuses_an_unknown_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, cert, key = _certificates(tmp_path)
    port = free_port()
    conf = tmp_path / "tls.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n"
        f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
    )
    broker = subprocess.Popen([find_mosquitto(), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        settings = GatewaySettings(broker=BrokerAddress.parse(f"mqtts://127.0.0.1:{port}"))
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        asyncio.run(GatewayRunner(settings, make_directory()).check_broker(timeout=5))
        thread = GatewayThread(GatewayRunner(settings, make_directory())).start()
        try:
            assert thread.call(lambda: thread.runner.client.is_connected)
        finally:
            thread.stop()
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "nothing.pem"))
        with pytest.raises(
            BrokerUnavailableError,
            match=rf"^TLS verification of the broker at mqtts://127\.0\.0\.1:{port} failed: ",
        ):
            asyncio.run(GatewayRunner(settings, make_directory()).check_broker(timeout=5))
        refused = GatewayThread(GatewayRunner(settings, make_directory()))
        with pytest.raises(RuntimeError, match=r"TLS verification of 127\.0\.0\.1"):
            refused.start(timeout=10)
        refused.stop()
    finally:
        broker.terminate()
        broker.wait(5)
