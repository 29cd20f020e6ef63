"""Where simulated terminals connect: the broker address and per-device credentials.

:class:`Deployment` is what terminals need to log in — broker address and per-device
credentials — and is written to / read from a secrets file, so `--broker URL --secrets FILE`
points the simulator at any deployment. A managed broker + gateway for a simulation is the
composition root's business (xixin.environment).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from firmware_sim.errors import EnvironmentError_, SimError
from firmware_sim.orgs import synthetic_org_yaml
from protocol.org import Organisation, default_org, load_org
from transport.address import BrokerAddress
from transport.errors import BrokerUrlError

log = logging.getLogger(__name__)
T = TypeVar("T")
SECRETS_FILE = "sim-secrets.json"


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    id: str
    unit: str
    role: str
    secret: str | None = None


@dataclass(frozen=True, slots=True)
class Deployment:
    host: str
    port: int
    devices: dict[str, DeviceSpec]
    tls: bool = False  # mqtts://: terminals connect over TLS
    cafile: str | None = None  # the CA they trust (None: the system's store)

    def save(self, path: Path) -> None:
        body: dict[str, object] = {
            "broker": f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}",
            "devices": [asdict(d) for d in self.devices.values()],
        }
        if self.cafile is not None:
            body["cafile"] = self.cafile
        path.write_text(json.dumps(body, indent=1), encoding="utf-8")
        os.chmod(path, 0o600)

    @classmethod
    def load(
        cls, path: Path, broker_url: str | None = None, cafile: str | None = None
    ) -> Deployment:
        """Read a secrets file: {"broker": url, "devices": [{id, unit, role, secret}, …],
        "cafile": optional CA for mqtts://}; `broker_url` and `cafile` override the file's."""
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            devices = {
                d["id"]: DeviceSpec(d["id"], d["unit"], d["role"], d.get("secret"))
                for d in body["devices"]
            }
            address = BrokerAddress.parse(broker_url or body["broker"])
            ca = cafile or body.get("cafile")
        except BrokerUrlError as exc:
            raise EnvironmentError_(str(exc)) from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EnvironmentError_(f"cannot use secrets file {path}: {exc}") from exc
        return cls(address.host, address.port, devices, address.tls, ca)


def resolve_org(source: str, work_dir: Path | None = None) -> tuple[Organisation, Path | None]:
    """`longxi` (the shipped org), `synthetic:N` (N generated grids) or a path to an org YAML."""
    if source in ("longxi", "default"):
        return default_org(), None
    if source.startswith("synthetic:"):
        try:
            grids = int(source.split(":", 1)[1])
        except ValueError as exc:
            raise SimError(f"bad org {source!r}: expected synthetic:<number of grids>") from exc
        directory = work_dir or Path(tempfile.mkdtemp(prefix="xixin-org-"))
        path = directory / f"synthetic-{grids}.yaml"
        path.write_text(synthetic_org_yaml(grids), encoding="utf-8")
        return load_org(path), path
    path = Path(source)
    return load_org(path), path


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard
