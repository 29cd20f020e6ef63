"""Broker accounts: generated files, and the real mosquitto enforcing them (docs/protocol.md §8)."""

from __future__ import annotations

import os
import queue
import re
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.broker import ManagedBroker
from gateway.broker_auth import (
    GATEWAY_USER,
    device_acl_rules,
    ensure_gateway_credentials,
    sync_broker_auth,
    write_acl_file,
    write_password_file,
)
from gateway.credentials import hash_secret, verify_secret
from gateway.errors import ConfigError
from gateway.store.db import create_db_engine, default_db_url, migrate
from gateway.store.registry import Device, DeviceRegistry
from protocol.org import Organisation, default_org, parse_org

ROOT = "xixin/v1"
TIMEOUT = 3.0
NOT_AUTHORIZED = 135
BAD_USER_OR_PASSWORD = 134
# mosquitto 2.0.11 (Debian 12) answers a wrong password with 135 Not authorized; later releases
# and the protocol text say 134 Bad user name or password. Either is a refusal.
REFUSED = {BAD_USER_OR_PASSWORD, NOT_AUTHORIZED}


@pytest.fixture(scope="module")
def org() -> Organisation:
    return default_org()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sqlalchemy.Engine]:
    engine = create_db_engine(default_db_url(tmp_path / "data"))
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def registry(engine: sqlalchemy.Engine, org: Organisation) -> DeviceRegistry:
    return DeviceRegistry(engine, org)


# ---- files --------------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_gateway_credentials_are_generated_once(tmp_path: Path) -> None:
    user, password = ensure_gateway_credentials(tmp_path / "data")
    assert user == GATEWAY_USER == "xixin-gateway"
    assert len(password) >= 32
    secret_file = tmp_path / "data" / "gateway.secret"
    assert _mode(secret_file) == 0o600
    assert ensure_gateway_credentials(tmp_path / "data") == (user, password)


def test_gateway_secret_permissions_are_tightened(tmp_path: Path) -> None:
    _, password = ensure_gateway_credentials(tmp_path)
    (tmp_path / "gateway.secret").chmod(0o644)
    assert ensure_gateway_credentials(tmp_path)[1] == password
    assert _mode(tmp_path / "gateway.secret") == 0o600


def test_empty_gateway_secret_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "gateway.secret").write_text("\n")
    with pytest.raises(ConfigError, match="delete it"):
        ensure_gateway_credentials(tmp_path)


def test_password_file_lines_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "auth" / "broker.passwd"
    entries = [(GATEWAY_USER, hash_secret("gw")), ("T001", hash_secret("one"))]
    write_password_file(path, entries)
    assert path.read_text() == "".join(f"{user}:{hashed}\n" for user, hashed in entries)
    assert _mode(path) == 0o600
    first_inode = path.stat().st_ino
    write_password_file(path, entries[:1])
    assert path.read_text().count("\n") == 1
    assert path.stat().st_ino != first_inode  # replaced by rename, never rewritten in place
    assert sorted(p.name for p in path.parent.iterdir()) == ["broker.passwd"]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([("T001", "$7$x"), ("T002", "plain")], "T001"),
        ([("T001", hash_secret("a")), ("T001", hash_secret("b"))], "appears twice"),
        ([("bad:user", hash_secret("a"))], "not a valid broker user"),
        ([("T1\nT2", hash_secret("a"))], "not a valid broker user"),
    ],
)
def test_password_file_refuses_bad_entries(
    tmp_path: Path, entries: list[tuple[str, str]], message: str
) -> None:
    path = tmp_path / "broker.passwd"
    path.write_text("previous\n")
    with pytest.raises(ConfigError, match=message):
        write_password_file(path, entries)
    assert path.read_text() == "previous\n"


def _sections(text: str) -> dict[str, set[str]]:
    sections: dict[str, set[str]] = {}
    current: set[str] | None = None
    for line in text.splitlines():
        if line.startswith("user "):
            current = sections.setdefault(line[5:], set())
        elif line.startswith("topic "):
            assert current is not None, "topic rule before any user line"
            current.add(line)
    return sections


def test_acl_officer_guard_dispatcher(tmp_path: Path, org: Organisation) -> None:
    devices = [
        Device("T001", "T001", "grid-01", "officer", True, 0.0),
        Device("G001", "G001", "grid-01", "guard", False, 0.0),
        Device("D001", "D001", "centre", "dispatcher", True, 0.0),
    ]
    path = tmp_path / "broker.acl"
    write_acl_file(path, devices, org)
    assert _mode(path) == 0o600
    sections = _sections(path.read_text())
    assert set(sections) == {GATEWAY_USER, "T001", "D001"}  # disabled G001 has no rights at all
    assert sections[GATEWAY_USER] == {
        f"topic readwrite {ROOT}/#",
        "topic read owntracks/#",
        "topic read $SYS/#",  # the broker's drop counters
    }
    dev = f"{ROOT}/dev/T001"
    expected = {
        f"topic readwrite {dev}/status",
        f"topic write {dev}/ctrl/up",
        f"topic write {dev}/gps",
        f"topic write {dev}/nmea",
        f"topic write {dev}/call/up",
        f"topic read {dev}/ctrl/down",
        f"topic read {dev}/voice/down",
        f"topic read {ROOT}/gw/+/status",
        "topic readwrite owntracks/T001/#",
    }
    for tg in ("grid-01", "area-renxi", "all"):
        expected |= {
            f"topic write {ROOT}/tg/{tg}/up/T001",
            f"topic read {ROOT}/tg/{tg}/down",
            f"topic read {ROOT}/tg/{tg}/ctrl",
        }
    assert sections["T001"] == expected
    dispatcher = sections["D001"]
    assert f"topic read {ROOT}/dev/+/status" in dispatcher
    for tg in org.talkgroups:
        assert f"topic write {ROOT}/tg/{tg}/up/D001" in dispatcher
        assert f"topic read {ROOT}/tg/{tg}/down" in dispatcher
    # The only wildcards an officer gets: gateway presence, and its own OwnTracks subtree.
    wildcards = sorted(rule for rule in sections["T001"] if "+" in rule or "#" in rule)
    assert wildcards == [f"topic read {ROOT}/gw/+/status", "topic readwrite owntracks/T001/#"]


def test_acl_refuses_a_device_shadowing_the_gateway(tmp_path: Path, org: Organisation) -> None:
    shadow = Device(GATEWAY_USER, "x", "grid-01", "officer", True, 0.0)
    with pytest.raises(ConfigError, match="shadow"):
        write_acl_file(tmp_path / "acl", [shadow], org)


def test_acl_rules_need_a_known_unit(org: Organisation) -> None:
    lost = Device("T001", "T001", "grid-99", "officer", True, 0.0)
    with pytest.raises(ConfigError, match="grid-99"):
        write_acl_file(Path("/nonexistent/acl"), [lost], org)
    assert device_acl_rules(Device("T1", "T1", "grid-02", "guard", True, 0.0), org)


def test_sync_writes_both_files(
    tmp_path: Path, registry: DeviceRegistry, org: Organisation
) -> None:
    _, secret = registry.add("T001", "grid-01", "officer")
    registry.add("T002", "grid-02", "guard")
    registry.disable("T002")
    password_path, acl_path = sync_broker_auth(registry, org, tmp_path / "data")
    assert (password_path, acl_path) == (
        tmp_path / "data" / "broker.passwd",
        tmp_path / "data" / "broker.acl",
    )
    users = dict(line.split(":", 1) for line in password_path.read_text().splitlines())
    assert set(users) == {GATEWAY_USER, "T001"}
    assert verify_secret(secret, users["T001"])
    _, gateway_password = ensure_gateway_credentials(tmp_path / "data")
    assert verify_secret(gateway_password, users[GATEWAY_USER])
    assert set(_sections(acl_path.read_text())) == {GATEWAY_USER, "T001"}


def test_sync_leaves_out_devices_of_units_the_org_lost(
    tmp_path: Path, registry: DeviceRegistry
) -> None:
    registry.add("T001", "grid-01", "officer")
    small = parse_org(
        "centre: {name: C}\n"
        "areas: [{id: area-renxi, name: Renxi}]\n"
        "grids: [{id: grid-02, name: G2, area: area-renxi, "
        "polygon: [[120.1, 30.86], [120.11, 30.86], [120.11, 30.87]]}]\n"
    )
    password_path, acl_path = sync_broker_auth(registry, small, tmp_path)
    assert "T001" not in password_path.read_text()
    assert "T001" not in acl_path.read_text()


# ---- the real broker ----------------------------------------------------------------------------


class AuthBroker(ManagedBroker):
    """ManagedBroker that also runs as root (mosquitto would drop to a user that cannot read 0600
    files); a no-op where broker.py already writes the `user` line."""

    def write_config(self) -> Path:
        path = super().write_config()
        text = path.read_text(encoding="utf-8")
        if os.geteuid() == 0 and not re.search(r"^user ", text, re.MULTILINE):
            path.write_text(text + "user root\n", encoding="utf-8")
        return path


class Mqtt:
    """A paho MQTT 5 client with event-based waits for CONNACK, SUBACK, PUBACK and messages."""

    def __init__(
        self, broker: ManagedBroker, user: str, password: str, *, unix: bool = False
    ) -> None:
        self.user = user
        self.unix = unix
        # No automatic reconnect: a refused or kicked client stays down.
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=user,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
            transport="unix" if unix else "tcp",
        )
        self.client.username_pw_set(user, password)
        self.broker = broker
        self.connack: int | None = None
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._acks: dict[int, list[int]] = {}
        self._acked = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(
        self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: Properties | None
    ) -> None:
        self.connack = rc.value
        self.connected.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, _rc: ReasonCode, _p: Properties | None
    ) -> None:
        self.disconnected.set()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        self.messages.put((message.topic, bytes(message.payload)))

    def _ack(self, mid: int, codes: list[int]) -> None:
        with self._acked:
            self._acks[mid] = codes
            self._acked.notify_all()

    def _on_publish(
        self, _c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, _p: Properties
    ) -> None:
        self._ack(mid, [rc.value])

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, mid: int, rcs: list[ReasonCode], _p: Properties
    ) -> None:
        self._ack(mid, [rc.value for rc in rcs])

    def connect(self) -> int:
        if self.unix:
            path = self.broker.local_address.unix_path
            assert path is not None, "the broker has no Unix socket"
            self.client.connect(path, keepalive=30)
        else:
            self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(TIMEOUT), f"{self.user}: no CONNACK"
        assert self.connack is not None
        return self.connack

    def _wait_ack(self, mid: int) -> list[int]:
        with self._acked:
            assert self._acked.wait_for(lambda: mid in self._acks, TIMEOUT), "no ack"
            return self._acks.pop(mid)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """Publish at QoS 1 and return the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=qos)
        return self._wait_ack(info.mid)[0]

    def subscribe(self, topic: str) -> int:
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        return self._wait_ack(mid)[0]

    def wait_for(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Collect messages until (topic, payload) arrives; return everything before it."""
        seen: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{self.user}: {topic} {payload!r} never arrived; got {seen}"
            try:
                message = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            if message == (topic, payload):
                return seen
            seen.append(message)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Fleet:
    broker: ManagedBroker
    registry: DeviceRegistry
    data_dir: Path
    secrets: dict[str, str]
    clients: list[Mqtt]

    def client(self, user: str, password: str | None = None, *, unix: bool = False) -> Mqtt:
        if password is None:
            password = (
                ensure_gateway_credentials(self.data_dir)[1]
                if user == GATEWAY_USER
                else self.secrets[user]
            )
        client = Mqtt(self.broker, user, password, unix=unix)
        self.clients.append(client)
        return client

    def connected(self, user: str) -> Mqtt:
        client = self.client(user)
        assert client.connect() == 0, f"{user} refused"
        return client

    def resync(self, org: Organisation) -> None:
        sync_broker_auth(self.registry, org, self.data_dir)
        self.broker.reload()


@pytest.fixture
def fleet(tmp_path: Path, registry: DeviceRegistry, org: Organisation) -> Iterator[Fleet]:
    secrets = {}
    for device_id, unit, role in [
        ("T001", "grid-01", "officer"),
        ("T002", "grid-07", "officer"),
        ("G001", "grid-01", "guard"),
        ("D001", "centre", "dispatcher"),
    ]:
        secrets[device_id] = registry.add(device_id, unit, role)[1]
    registry.disable("G001")
    data_dir = tmp_path / "data"
    password_file, acl_file = sync_broker_auth(registry, org, data_dir)
    broker = AuthBroker(
        tmp_path / "broker", password_file=password_file, acl_file=acl_file, local_socket=True
    )
    broker.start()
    result = Fleet(broker, registry, data_dir, secrets, [])
    try:
        yield result
    finally:
        for client in result.clients:
            client.close()
        broker.stop()


def _refused_after_reload(fleet: Fleet, user: str, password: str) -> int:
    """SIGHUP is asynchronous: retry briefly until the broker refuses `password`."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        client = fleet.client(user, password)
        code = client.connect()
        client.close()
        if code != 0 or time.monotonic() > deadline:
            return code
        time.sleep(0.02)


def test_right_secret_connects_wrong_one_is_refused(fleet: Fleet) -> None:
    assert fleet.client("T001").connect() == 0
    assert fleet.client(GATEWAY_USER).connect() == 0
    assert fleet.client("T002", "not-the-secret").connect() in REFUSED
    assert fleet.client("T002", fleet.secrets["T001"]).connect() in REFUSED
    assert fleet.client("T999", "whatever").connect() in REFUSED


def test_the_unix_socket_has_the_same_accounts_and_acl(fleet: Fleet) -> None:
    """The gateway's Unix socket is no back door: same passwords, same ACL as TCP."""
    assert fleet.client("T002", "not-the-secret", unix=True).connect() in REFUSED
    assert fleet.client("G001", unix=True).connect() in REFUSED  # disabled
    gateway = fleet.client(GATEWAY_USER, unix=True)
    assert gateway.connect() == 0
    assert gateway.subscribe(f"{ROOT}/#") == 1
    device = fleet.client("T001", unix=True)
    assert device.connect() == 0
    assert device.publish(f"{ROOT}/dev/T002/ctrl/up", b"forged") == NOT_AUTHORIZED
    assert device.publish(f"{ROOT}/dev/T001/ctrl/up", b"own") == 0
    assert gateway.wait_for(f"{ROOT}/dev/T001/ctrl/up", b"own") == []


def test_disabled_device_is_refused(fleet: Fleet) -> None:
    assert fleet.client("G001").connect() in REFUSED


def test_device_publishes_only_to_its_own_topics(fleet: Fleet) -> None:
    gateway = fleet.connected(GATEWAY_USER)
    assert gateway.subscribe(f"{ROOT}/#") == 1
    device = fleet.connected("T001")
    forbidden = [
        f"{ROOT}/dev/T002/ctrl/up",
        f"{ROOT}/dev/T002/status",
        f"{ROOT}/dev/T002/gps",
        f"{ROOT}/dev/T002/call/up",
        f"{ROOT}/dev/T001/ctrl/down",  # a downlink, even its own, is the gateway's to write
        f"{ROOT}/tg/grid-07/up/T001",  # not a member of grid-07
        f"{ROOT}/tg/grid-01/up/T002",  # member, but posing as another device
        f"{ROOT}/tg/grid-01/down",
        f"{ROOT}/tg/all/ctrl",
        f"{ROOT}/gw/main/status",
        "elsewhere/topic",
    ]
    allowed = [
        f"{ROOT}/dev/T001/status",
        f"{ROOT}/dev/T001/ctrl/up",
        f"{ROOT}/dev/T001/gps",
        f"{ROOT}/dev/T001/call/up",
        f"{ROOT}/tg/grid-01/up/T001",
        f"{ROOT}/tg/area-renxi/up/T001",
        f"{ROOT}/tg/all/up/T001",
    ]
    for topic in forbidden:
        assert device.publish(topic, b"forged") == NOT_AUTHORIZED, topic
    for topic in allowed:
        assert device.publish(topic, topic.encode()) == 0, topic
    received = []
    for topic in allowed:
        received += gateway.wait_for(topic, topic.encode())
    # Ordered delivery: anything forbidden that got through would have arrived before these.
    assert received == []


def test_tracking_topics_nmea_and_owntracks(fleet: Fleet) -> None:
    """§10: NMEA on the device's own topic, the OwnTracks app under owntracks/<device id>/."""
    gateway = fleet.connected(GATEWAY_USER)
    assert gateway.subscribe("owntracks/#") == 1
    assert gateway.subscribe(f"{ROOT}/#") == 1
    device = fleet.connected("T001")
    for topic in (f"{ROOT}/dev/T002/nmea", "owntracks/T002/phone", "owntracks/x/phone"):
        assert device.publish(topic, b"forged") == NOT_AUTHORIZED, topic
    for topic in (f"{ROOT}/dev/T001/nmea", "owntracks/T001/phone"):
        assert device.publish(topic, topic.encode()) == 0, topic
    received = gateway.wait_for(f"{ROOT}/dev/T001/nmea", f"{ROOT}/dev/T001/nmea".encode())
    received += gateway.wait_for("owntracks/T001/phone", b"owntracks/T001/phone")
    assert received == []  # nothing forbidden got through


def test_device_reads_only_its_own_downlinks(fleet: Fleet) -> None:
    gateway = fleet.connected(GATEWAY_USER)
    spy = fleet.connected("T001")
    owner = fleet.connected("T002")
    assert owner.subscribe(f"{ROOT}/dev/T002/ctrl/down") == 1
    # mosquitto 2.0.11 grants these subscriptions and filters every message by the ACL instead;
    # newer versions may refuse them outright. Either way nothing may be delivered.
    for topic in (f"{ROOT}/dev/T002/ctrl/down", f"{ROOT}/tg/grid-07/down", f"{ROOT}/#"):
        assert spy.subscribe(topic) in {1, NOT_AUTHORIZED}
    assert gateway.publish(f"{ROOT}/dev/T002/ctrl/down", b"for T002 only") == 0
    assert gateway.publish(f"{ROOT}/tg/grid-07/down", b"grid-07 voice") == 0
    assert gateway.publish(f"{ROOT}/dev/T001/voice/down", b"sentinel") == 0
    assert owner.wait_for(f"{ROOT}/dev/T002/ctrl/down", b"for T002 only") == []
    assert spy.wait_for(f"{ROOT}/dev/T001/voice/down", b"sentinel") == []


def test_only_dispatchers_read_everyones_status(fleet: Fleet) -> None:
    dispatcher = fleet.connected("D001")
    officer = fleet.connected("T002")
    assert dispatcher.subscribe(f"{ROOT}/dev/+/status") == 1
    assert officer.subscribe(f"{ROOT}/dev/+/status") in {1, NOT_AUTHORIZED}
    t001 = fleet.connected("T001")
    assert t001.publish(f"{ROOT}/dev/T001/status", b'{"v":1,"state":"online"}') == 0
    assert officer.publish(f"{ROOT}/dev/T002/status", b'{"v":1,"state":"online"}') == 0
    assert dispatcher.wait_for(f"{ROOT}/dev/T002/status", b'{"v":1,"state":"online"}') == [
        (f"{ROOT}/dev/T001/status", b'{"v":1,"state":"online"}')
    ]
    assert officer.wait_for(f"{ROOT}/dev/T002/status", b'{"v":1,"state":"online"}') == []


def test_rotated_secret_replaces_the_old_one_after_reload(fleet: Fleet, org: Organisation) -> None:
    old = fleet.secrets["T001"]
    new = fleet.registry.rotate("T001")
    fleet.resync(org)
    assert _refused_after_reload(fleet, "T001", old) in REFUSED
    assert fleet.client("T001", new).connect() == 0


def test_disabling_a_connected_device_disconnects_it(fleet: Fleet, org: Organisation) -> None:
    device = fleet.connected("T001")
    fleet.registry.disable("T001")
    fleet.resync(org)
    assert device.disconnected.wait(TIMEOUT), "broker kept the disabled device connected"
    fleet.registry.enable("T001")
    fleet.resync(org)
    deadline = time.monotonic() + TIMEOUT
    while fleet.client("T001").connect() != 0:
        assert time.monotonic() < deadline, "re-enabled device still refused"
        time.sleep(0.02)
