"""Dynamic regrouping with the real mosquitto ACL: assigning officers makes an incident
talkgroup of them and the dispatcher; the assigned terminal is moved into it by command and
can talk there, a non-member can neither listen nor talk; closing the incident ends it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from devices.client import TerminalClient
from gateway.broker_auth import GATEWAY_USER, ensure_gateway_credentials
from gateway.service import GatewayService
from protocol import topics
from tests.gateway.incidents.conftest import wait_until
from tests.gateway.test_broker_auth import Mqtt
from tests.gateway.test_recorder import opus_frames

GRANTED_QOS1, NOT_AUTHORIZED = 1, 135


def test_an_incident_talkgroup_by_acl(api: tuple[TestClient, GatewayService]) -> None:
    http, service = api
    assert service.broker is not None
    data_dir = service.config.data_dir
    secrets = {
        device: http.post(
            "/api/devices", json={"id": device, "unit": unit, "role": "officer"}
        ).json()["secret"]
        for device, unit in (("T001", "grid-01"), ("T003", "grid-01"), ("T004", "grid-02"))
    }
    wait_until(lambda: "T003" in service.incidents.officers.officers)
    officer = TerminalClient("T001", secrets["T001"], service.broker.host, service.broker.port)
    officer.connect()
    # mosquitto reloads its password file after the API answered: a device provisioned a
    # moment ago may be refused once, so each waits until the broker accepts it.
    member = _accepted(service, "T003", secrets["T003"])
    stranger = _accepted(service, "T004", secrets["T004"])
    try:
        officer.affiliate(["grid-01"])
        n = http.post("/api/incidents", json={"category": "police", "text": "x", "grid": "grid-01"}
                      ).json()["id"]  # fmt: skip
        tg = f"inc-{n}"
        down = topics.tg_down(tg)
        up = topics.tg_up(tg, "T003")
        assert member.publish(up, b"x") == NOT_AUTHORIZED  # not a member yet
        done = http.post(f"/api/incidents/{n}/assign", json={"officers": ["T001", "T003"]})
        assert done.json()["talkgroup"] == tg
        command = officer.wait_control("command", cmd="regroup")
        assert (command["tg"], command["incident"], command["active"]) == (tg, n, True)
        officer.ack(command["id"])
        assert officer.affiliate(["grid-01", tg])["tgs"] == ["grid-01", tg]
        wait_until(lambda: member.publish(up, b"x") == 0)  # a member now (nothing relayed)
        assert member.subscribe(down) == GRANTED_QOS1
        assert stranger.publish(topics.tg_up(tg, "T004"), b"x") == NOT_AUTHORIZED
        # mosquitto grants a subscription and filters delivery by the ACL (or refuses it).
        assert stranger.subscribe(down) in {GRANTED_QOS1, NOT_AUTHORIZED}
        assert stranger.subscribe(topics.voice_down("T004")) == GRANTED_QOS1
        # The regrouped officer talks in the incident talkgroup; the member hears it.
        burst = officer.request_floor(tg=tg)["burst"]
        wires = opus_frames(5, burst=burst)
        for wire in wires:
            officer.publish_raw(topics.tg_up(tg, "T001"), wire)
        member.wait_for(down, wires[-1])
        officer.release_floor(tg=tg)
        gateway = Mqtt(service.broker, GATEWAY_USER, ensure_gateway_credentials(data_dir)[1])
        gateway.connect()
        assert gateway.publish(topics.voice_down("T004"), b"sentinel") == 0
        assert stranger.wait_for(topics.voice_down("T004"), b"sentinel") == []  # heard nothing
        gateway.client.loop_stop()
        gateway.client.disconnect()
        assert service.incidents.is_assigned("T001")  # no left_grid alarm meanwhile
        # Closing ends the talkgroup: the officer is moved out, the member loses access.
        http.post(f"/api/incidents/{n}/resolve", json={})
        http.post(f"/api/incidents/{n}/close", json={"note": "done"})
        back = officer.wait_control("command", cmd="regroup", active=False)
        assert back["tg"] == tg
        wait_until(lambda: member.publish(up, b"x") == NOT_AUTHORIZED)
        assert not service.incidents.is_assigned("T001")
    finally:
        officer.disconnect()
        for client in (member, stranger):
            client.close()


def _accepted(service: GatewayService, device: str, secret: str) -> Mqtt:
    """A connected client of `device`, once the broker accepts its credentials."""
    assert service.broker is not None
    clients: list[Mqtt] = []

    def attempt() -> bool:
        client = Mqtt(service.broker, device, secret)
        if client.connect() == 0:
            clients.append(client)
            return True
        client.close()
        return False

    wait_until(attempt)
    return clients[0]
