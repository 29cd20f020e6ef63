"""What the gateway's events do to incidents (the incident service's event sink).

- ``status_msg`` with an ``incident`` and an officer code (accepted, en_route, on_scene,
  resolved): the officer's answer to its assignment;
- ``status_msg`` with an availability code (available, on_duty, busy, off_duty);
- ``report`` (protocol §5.6): a new incident from a terminal, at its position's grid (else the
  terminal's grid); with ``voice`` the terminal's next talk burst is linked as its voice note;
- an SOS (``alarm`` ``sos`` active) becomes an incident of the SOS category, once per open SOS;
- ``floor`` ``floor_granted`` to a terminal that announced a voice note links that burst;
- ``presence``: offline officers are not suggested.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, cast

from gateway.events import GatewayEvent
from gateway.incidents.model import OFFICER_STATUSES, OfficerStatus, Place
from gateway.incidents.officers import AVAILABILITY_CODES

if TYPE_CHECKING:
    from gateway.incidents.service import IncidentService

OFFICER_CODES: Final = frozenset(OFFICER_STATUSES)
#: Reports remembered by (device, request id), so a retried report makes one incident.
REPORTS_REMEMBERED: Final = 10_000


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def observe(service: IncidentService, event: GatewayEvent) -> None:
    device, data = event.device, event.data
    if device is None:
        return
    if event.kind == "status_msg":
        code = data.get("code")
        incident = data.get("incident")
        if code in OFFICER_CODES and isinstance(incident, int):
            service.officer_answer(incident, device, cast(OfficerStatus, code), data.get("text"))
        elif code in AVAILABILITY_CODES:
            service.officers.set_availability(device, AVAILABILITY_CODES[code])
    elif event.kind == "report":
        _report(service, device, data)
    elif event.kind == "sos" and data.get("active"):  # the control plane's SOS event (§5.1)
        _sos(service, device, _number(data.get("lat")), _number(data.get("lon")))
    elif event.kind == "floor" and data.get("event") == "floor_granted":
        incident = service.pending_voice.pop(device, None)
        if incident is not None:
            service.link(incident, device, voice=f"{data.get('floor')}#{data.get('burst')}")
    elif event.kind == "presence":
        service.officers.set_online(device, data.get("state") == "online")


def _report(service: IncidentService, device: str, data: dict[str, Any]) -> None:
    key = (device, str(data.get("id")))
    if key in service.reports_seen:
        return  # a retry of a report already taken (protocol §5.5: same id, up to 3 tries)
    incident = service.report(
        str(data.get("category")), str(data.get("text") or ""), source="terminal",
        reporter=device, place=Place(lat=_number(data.get("lat")), lon=_number(data.get("lon"))),
        reporter_unit=service.units.get(device),
    )  # fmt: skip
    service.reports_seen[key] = incident.id
    while len(service.reports_seen) > REPORTS_REMEMBERED:
        del service.reports_seen[next(iter(service.reports_seen))]
    if data.get("voice"):
        service.pending_voice[device] = incident.id


def _sos(service: IncidentService, device: str, lat: float | None, lon: float | None) -> None:
    for incident in service.incidents.values():
        if incident.open and incident.source == "sos" and incident.reporter == device:
            return  # one incident per SOS until it is closed
    officer = service.officers.officers.get(device)
    if (lat is None or lon is None) and officer is not None:  # the terminal sent no position
        lat, lon = officer.lat, officer.lon
    service.report(
        service.sos_category, f"SOS from {device}", source="sos", reporter=device,
        place=Place(lat=lat, lon=lon), reporter_unit=service.units.get(device),
    )  # fmt: skip
