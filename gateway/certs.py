"""TLS certificates for sites without a PKI: a private CA, the broker's server certificate and,
optionally, client certificates for terminals (`xixin certs …`).

Keys are EC P-256 (small and fast on handhelds); every key file is written 0600. A site with its
own PKI passes its files to `xixin up` instead and never calls this.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.errors import ConfigError

CA_CERT: Final = "ca.pem"
CA_KEY: Final = "ca.key"
SERVER_CERT: Final = "server.pem"
SERVER_KEY: Final = "server.key"
DEFAULT_DAYS: Final = 825  # what current TLS clients accept for a server certificate
CA_DAYS: Final = 3650
# A CA signs certificates (and revocation lists), nothing else.
_CA_KEY_USAGE: Final = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True, slots=True)
class ServerPki:
    """Where `init_pki` wrote the CA certificate (for terminals) and the server's pair."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, mode)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Xixin intercom"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"no usable CA in {directory} (run `xixin certs init`): {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{directory / CA_KEY} is not an EC key made by `xixin certs init`")
    return cert, key


def _issue(
    subject: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    usage: x509.ObjectIdentifier,
    days: int,
    now: datetime.datetime,
    hosts: Sequence[str] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if hosts:
        builder = builder.add_extension(_san(hosts), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def init_pki(
    directory: Path,
    hosts: Sequence[str],
    *,
    days: int = DEFAULT_DAYS,
    now: datetime.datetime | None = None,
    force: bool = False,
) -> ServerPki:
    """Make a CA (kept if one is there) and a server certificate for `hosts` (names or IPs)."""
    if not hosts:
        raise ConfigError("a server certificate needs at least one host name or address")
    now = now or datetime.datetime.now(datetime.UTC)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    if force or not (directory / CA_CERT).exists():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = _name("Xixin intercom private CA")
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_CA_KEY_USAGE, critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        _write(directory / CA_KEY, _key_pem(ca_key), 0o600)
        _write(directory / CA_CERT, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    ca = _load_ca(directory)
    cert, key = _issue(hosts[0], ca, ExtendedKeyUsageOID.SERVER_AUTH, days, now, hosts)
    _write(directory / SERVER_KEY, _key_pem(key), 0o600)
    _write(directory / SERVER_CERT, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return ServerPki(directory / CA_CERT, directory / SERVER_CERT, directory / SERVER_KEY)


def issue_client(
    directory: Path,
    device_id: str,
    out_dir: Path,
    *,
    days: int = DEFAULT_DAYS,
    now: datetime.datetime | None = None,
) -> tuple[Path, Path]:
    """A client certificate for one terminal (CN = its device id), signed by the site's CA."""
    now = now or datetime.datetime.now(datetime.UTC)
    cert, key = _issue(
        device_id, _load_ca(directory), ExtendedKeyUsageOID.CLIENT_AUTH, days, now
    )
    cert_path, key_path = out_dir / f"{device_id}.pem", out_dir / f"{device_id}.key"
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path
