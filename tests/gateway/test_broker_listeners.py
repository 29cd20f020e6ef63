"""Terminal listeners of the managed broker: TLS with `xixin certs` certificates, and client ids
bound to the account, tested with the real mosquitto command-line clients (protocol §1, §8)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.broker import Listener, TlsFiles
from gateway.broker_auth import GATEWAY_USER, sync_broker_auth
from gateway.certs import init_pki, issue_client
from gateway.store.registry import DeviceRegistry
from protocol import topics
from protocol.org import Organisation
from tests.gateway.test_broker_auth import (  # noqa: F401 (fixtures)
    AuthBroker,
    Fleet,
    engine,
    fleet,
    org,
    registry,
)

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_pub") is None, reason="mosquitto-clients missing"
)


def _pub(
    port: int, user: str, password: str, *extra: str, client_id: str | None = None
) -> subprocess.CompletedProcess[str]:
    """One QoS 1 publish to the device's own status with the real mosquitto_pub."""
    return subprocess.run(
        [
            "mosquitto_pub", "-V", "mqttv5", "-h", "localhost", "-p", str(port),
            "-u", user, "-P", password, "-i", client_id or user, "-q", "1",
            "-t", topics.status(user), "-m", '{"v":1,"state":"online"}', *extra,
        ],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_a_device_cannot_take_over_another_device_or_the_gateway(fleet: Fleet) -> None:  # noqa: F811
    victim = fleet.connected("T002")
    gateway = fleet.client(GATEWAY_USER, unix=True)  # the gateway's own way in
    assert gateway.connect() == 0
    for stolen in ("T002", GATEWAY_USER):
        done = _pub(fleet.broker.port, "T001", fleet.secrets["T001"], client_id=stolen)
        # It connects (as T001: the broker replaces the client id by the user name) ...
        assert done.returncode == 0, done.stderr
    # ... and has disconnected nobody: both sessions still answer a QoS 1 round trip.
    assert not victim.disconnected.is_set()
    assert not gateway.disconnected.is_set()
    # PUBACK below 0x80 is success (0x10: no subscribers).
    assert victim.publish(topics.status("T002"), b'{"v":1,"state":"online"}') < 0x80
    assert gateway.publish(topics.gateway_status("gw1"), b'{"v":1,"state":"online"}') < 0x80


@pytest.fixture
def tls_fleet(
    tmp_path: Path,
    registry: DeviceRegistry,  # noqa: F811
    org: Organisation,  # noqa: F811
) -> Iterator[tuple[Fleet, int, Path]]:
    secrets = {"T001": registry.add("T001", "grid-01", "officer")[1]}
    data_dir = tmp_path / "data"
    password_file, acl_file = sync_broker_auth(registry, org, data_dir)
    pki = init_pki(data_dir / "tls", ["localhost", "127.0.0.1"])
    tls = Listener("127.0.0.1", 0, TlsFiles(pki.server_cert, pki.server_key, pki.ca_cert))
    broker = AuthBroker(
        tmp_path / "broker",
        password_file=password_file,
        acl_file=acl_file,
        listeners=[Listener("127.0.0.1", 0), tls],
    )
    broker.start()
    try:
        yield Fleet(broker, registry, data_dir, secrets, []), broker.listeners[1].port, pki.ca_cert
    finally:
        broker.stop()


def test_a_terminal_connects_over_tls_with_the_site_ca(
    tls_fleet: tuple[Fleet, int, Path], tmp_path: Path
) -> None:
    site, port, ca = tls_fleet
    cert, key = issue_client(ca.parent, "T001", tmp_path / "T001")
    secret = site.secrets["T001"]
    done = _pub(port, "T001", secret, "--cafile", str(ca), "--cert", str(cert), "--key", str(key))
    assert done.returncode == 0, done.stderr
    # Without a client certificate (this listener requires one), or trusting another CA: refused.
    assert _pub(port, "T001", secret, "--cafile", str(ca)).returncode != 0
    other = init_pki(tmp_path / "other-ca", ["localhost"])
    refused = _pub(
        port, "T001", secret, "--cafile", str(other.ca_cert), "--cert", str(cert), "--key", str(key)
    )
    assert refused.returncode != 0


def test_key_files_are_private(tmp_path: Path) -> None:
    pki = init_pki(tmp_path / "tls", ["gw.example", "10.0.0.5"])
    assert pki.server_key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "tls" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700
    text = subprocess.run(
        ["openssl", "x509", "-in", str(pki.server_cert), "-noout", "-text"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "DNS:gw.example" in text and "IP Address:10.0.0.5" in text
