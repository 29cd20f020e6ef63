"""The demo's devices provisioned through the gateway's registry (`xixin up --demo`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Final

from firmware_sim.demo_fleet import DEMO_DEVICES
from gateway.auth.errors import UnknownAccountError
from gateway.auth.store import AccountStore
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


#: One account per tier for `xixin up --demo` (name, role).
DEMO_ACCOUNTS: Final = (
    ("centre", "centre"),
    ("renxi", "area:area-renxi"),
    ("grid01", "grid:grid-01"),
)


def provision_demo_accounts(accounts: AccountStore) -> dict[str, str]:
    """Make sure the demo accounts exist, each with a fresh password; name -> password."""
    passwords: dict[str, str] = {}
    for name, role in DEMO_ACCOUNTS:
        try:
            accounts.get(name)
            accounts.set_enabled(name, True)
            passwords[name] = accounts.reset_password(name)
        except UnknownAccountError:
            _, passwords[name] = accounts.add(name, role)
    return passwords
