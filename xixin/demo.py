"""The demo's devices provisioned through the gateway's registry (`xixin up --demo`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Final

from firmware_sim.demo_fleet import DEMO_DEVICES
from gateway.store.errors import UnknownDeviceError
from gateway.store.registry import DeviceRegistry

SECRETS_FILE: Final = "demo-secrets.json"


def provision_demo_devices(registry: DeviceRegistry, data_dir: Path) -> dict[str, str]:
    """Make sure the demo devices exist; return their secrets (kept in a 0600 file)."""
    path = data_dir / SECRETS_FILE
    secrets: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    for device_id, unit, role, name in DEMO_DEVICES:
        try:
            registry.get(device_id)
            if device_id not in secrets:
                secrets[device_id] = registry.rotate(device_id)
        except UnknownDeviceError:
            _, secrets[device_id] = registry.add(device_id, unit, role, name)
    path.write_text(json.dumps(secrets, indent=1))
    os.chmod(path, 0o600)
    return secrets
