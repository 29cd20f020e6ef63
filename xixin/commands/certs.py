"""`xixin certs …`: TLS certificates for a site without its own PKI (gateway/certs.py)."""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

from gateway.certs import DEFAULT_DAYS, init_pki, issue_client
from protocol.ids import check_device_id
from xixin.options import data_dir_option


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    certs = subparsers.add_parser(
        "certs",
        help="TLS certificates for the broker's TLS listeners (a private CA)",
        description="Make a private CA and the broker's server certificate (init), or a "
        "terminal's client certificate (client). Files go to DATA_DIR/tls (keys 0600).",
    )
    actions = certs.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = actions.add_parser("init", help="make the CA (once) and a server certificate")
    data_dir_option(init)
    init.add_argument(
        "--host",
        action="append",
        metavar="NAME",
        help="a DNS name or IP address terminals use to reach the gateway, repeatable "
        "(default: this machine's name, localhost and 127.0.0.1)",
    )
    init.add_argument(
        "--days", type=int, default=DEFAULT_DAYS, help=f"validity in days (default {DEFAULT_DAYS})"
    )
    init.add_argument("--force", action="store_true", help="make a new CA even if one exists")
    init.set_defaults(handler=cmd_init)
    client = actions.add_parser("client", help="a client certificate for one terminal")
    data_dir_option(client)
    client.add_argument("device", help="the device id (the certificate's common name)")
    client.add_argument(
        "--out", type=Path, help="where to write DEVICE.pem and DEVICE.key (default: DATA_DIR/tls)"
    )
    client.add_argument(
        "--days", type=int, default=DEFAULT_DAYS, help=f"validity in days (default {DEFAULT_DAYS})"
    )
    client.set_defaults(handler=cmd_client)


def cmd_init(args: argparse.Namespace) -> int:
    hosts = args.host or [socket.gethostname(), "localhost", "127.0.0.1"]
    pki = init_pki(args.data_dir / "tls", hosts, days=args.days, force=args.force)
    print(f"xixin certs: server certificate {pki.server_cert} for {', '.join(hosts)}")
    print(f"xixin certs: terminals trust the CA in {pki.ca_cert}")
    print(
        "xixin certs: start the TLS listener with: xixin up --mqtt-tls-listen 0.0.0.0:8883 "
        f"--data-dir {args.data_dir}"
    )
    return 0


def cmd_client(args: argparse.Namespace) -> int:
    device = check_device_id(args.device)
    out = args.out or args.data_dir / "tls"
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    cert, key = issue_client(args.data_dir / "tls", device, out, days=args.days)
    print(f"xixin certs: client certificate {cert} and key {key} for {device}")
    return 0
