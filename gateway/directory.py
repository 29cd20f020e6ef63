"""Who is who: the in-memory view of provisioned devices and talkgroups the control plane uses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from gateway.floor import Priority
from protocol.org import Organisation

ROLES = ("officer", "guard", "dispatcher")


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    id: str
    unit: str
    role: str
    enabled: bool
    talkgroups: frozenset[str]
    default_affiliation: tuple[str, ...] = ()

    @property
    def priority(self) -> Priority:
        return Priority.DISPATCHER if self.role == "dispatcher" else Priority.NORMAL


@dataclass(slots=True)
class Directory:
    devices: dict[str, DeviceInfo] = field(default_factory=dict)
    talkgroups: dict[str, str] = field(default_factory=dict)  # id -> display name

    @classmethod
    def build(cls, devices: Iterable[DeviceInfo], talkgroups: dict[str, str]) -> Directory:
        return cls({d.id: d for d in devices}, dict(talkgroups))

    def get(self, device: str) -> DeviceInfo | None:
        return self.devices.get(device)

    def members(self, talkgroup: str) -> list[str]:
        return sorted(d.id for d in self.devices.values() if talkgroup in d.talkgroups)


def device_info(
    org: Organisation, device_id: str, unit: str, role: str, enabled: bool = True
) -> DeviceInfo:
    """A directory entry for a device placed at `unit` with `role`, by the org's rules."""
    return DeviceInfo(
        id=device_id,
        unit=unit,
        role=role,
        enabled=enabled,
        talkgroups=org.member_talkgroups(unit, role),
        default_affiliation=org.default_affiliation(unit, role),
    )


def build_directory(
    org: Organisation,
    devices: Iterable[tuple[str, str, str, bool]],
    extra: Mapping[str, Iterable[str]] | None = None,
    extra_names: Mapping[str, str] | None = None,
) -> Directory:
    """From (id, unit, role, enabled) rows and the organisation; `extra`: device -> dynamic
    talkgroups it is a member of besides its unit's (incident talkgroups), named in
    `extra_names`."""
    infos = [device_info(org, *row) for row in devices]
    if extra:
        infos = [
            replace(i, talkgroups=i.talkgroups | frozenset(extra[i.id])) if i.id in extra else i
            for i in infos
        ]
    names = {tg.id: tg.name for tg in org.talkgroups.values()}
    names.update(extra_names or {})
    return Directory.build(infos, names)
