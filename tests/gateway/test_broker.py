"""The managed broker starts, serves MQTT on loopback and stops by PID."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mqtt5
import pytest

from gateway.broker import (
    BrokerError,
    BrokerNotInstalledError,
    ManagedBroker,
    free_port,
    process_running,
)
from gateway.locks import LockedError
from transport.address import BrokerAddress
from transport.client import MqttClient


def test_start_listen_stop(tmp_path: Path) -> None:
    broker = ManagedBroker(tmp_path)
    broker.start()
    pid = broker.pid
    assert pid is not None
    with socket.create_connection((broker.host, broker.port), timeout=1):
        pass
    broker.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_broker_has_its_own_process_group(tmp_path: Path) -> None:
    """A terminal's Ctrl-C goes to the gateway's group; the gateway stops the broker last."""
    broker = ManagedBroker(tmp_path)
    broker.start()
    try:
        assert broker.pid is not None
        assert os.getpgid(broker.pid) == broker.pid != os.getpgid(0)
    finally:
        broker.stop()


_OWNER = """
import sys
import time
from pathlib import Path
from gateway.broker import ManagedBroker
broker = ManagedBroker(Path(sys.argv[1]), port=int(sys.argv[2]) if len(sys.argv) > 2 else None)
broker.start()
print(broker.pid, flush=True)
sys.stdin.read()
"""


def test_a_broker_left_by_a_killed_gateway_is_stopped_at_the_next_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    left = int(owner.stdout.readline())
    owner.kill()  # the gateway dies without its cleanup; its broker keeps running
    owner.wait()
    assert process_running(left)
    second = ManagedBroker(tmp_path)
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.broker"):
            second.start()
        assert not process_running(left)
        assert f"stopping mosquitto pid {left} left running" in caplog.text
        assert int(second.pid_path.read_text()) == second.pid
        with socket.create_connection((second.host, second.port), timeout=1):
            pass
    finally:
        second.stop()
        if process_running(left):
            os.kill(left, signal.SIGKILL)


def test_a_second_gateway_on_the_same_workdir_is_refused(tmp_path: Path) -> None:
    first = ManagedBroker(tmp_path)
    first.start()
    try:
        with pytest.raises(LockedError, match="another running gateway owns the broker"):
            ManagedBroker(tmp_path).start()
        assert first.pid is not None and process_running(first.pid)
    finally:
        first.stop()
    again = ManagedBroker(tmp_path)  # the lock went with the first one's stop
    again.start()
    again.stop()


def test_a_pid_file_naming_another_program_is_left_alone(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "30"])
    try:
        broker = ManagedBroker(tmp_path)
        broker.pid_path.parent.mkdir(parents=True, exist_ok=True)
        broker.pid_path.write_text(f"{other.pid}\n")  # a pid reused since the last run
        broker.start()
        broker.stop()
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_local_socket_serves_mqtt_and_is_removed_on_stop(tmp_path: Path) -> None:
    broker = ManagedBroker(tmp_path, local_socket=True)
    broker.socket_path.write_text("left by a broker that crashed")  # must not fail the bind
    broker.start()
    try:
        address = broker.local_address
        assert address.unix_path == str(tmp_path / "mosquitto.sock")
        assert (address.host, address.port) == (broker.host, broker.port)
        assert address.where == f"unix:{address.unix_path}"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(address.unix_path)
            sock.sendall(mqtt5.ConnectPacket("probe").write())
            connack = mqtt5.read(sock.recv(64))[0]
            assert isinstance(connack, mqtt5.ConnAckPacket)
            assert connack.reason_code == mqtt5.ConnAckReasonCode.SUCCESS
        assert broker.address.unix_path is None  # terminals get the TCP listener
    finally:
        broker.stop()
    assert not broker.socket_path.exists()


def test_too_long_socket_path_moves_to_a_private_directory(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    broker = ManagedBroker(deep, local_socket=True)
    broker.start()
    try:
        path = broker.socket_path
        assert len(str(path)) <= 107 and path.exists()
        assert path.parent.stat().st_mode & 0o777 == 0o700
        assert broker.local_address.unix_path == str(path)
        assert ManagedBroker(deep, local_socket=True).socket_path == path  # found again
    finally:
        broker.stop()
    assert not path.exists()


def test_missing_mosquitto_names_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("gateway.broker.os.access", lambda *_: False)
    with pytest.raises(BrokerNotInstalledError, match="apt-get install -y mosquitto"):
        ManagedBroker(tmp_path).start()


def test_a_killed_broker_is_restarted_on_the_same_port(tmp_path: Path) -> None:
    broker = ManagedBroker(tmp_path, local_socket=True)
    broker.start()
    try:
        assert broker.restart_if_dead() is False  # alive: nothing to do
        first = broker.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        while broker.running:  # the kill is asynchronous
            time.sleep(0.01)
        assert broker.restart_if_dead() is True
        assert broker.pid != first and broker.running
        assert broker.restarts == 1 and broker.last_exit == "exit status -9"
        with socket.create_connection((broker.host, broker.port), timeout=2):
            pass
        assert broker.socket_path.exists()
    finally:
        broker.stop()


def test_a_healthy_broker_left_by_a_killed_gateway_is_taken_over_with_its_queue(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(tmp_path), str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    left = int(owner.stdout.readline())
    address = BrokerAddress("127.0.0.1", port)

    async def subscribe_and_leave() -> None:
        options = dataclasses.replace(
            address.client_options("keeper", subscriptions=[("q/#", 1)]),
            clean_start=False,
            session_expiry_s=300,
        )
        async with MqttClient(options, lambda *_: None):
            pass

    async def publish(payload: bytes) -> None:
        async with MqttClient(address.client_options("pub"), lambda *_: None) as client:
            await client.publish("q/x", payload, qos=1)

    asyncio.run(subscribe_and_leave())
    owner.kill()  # the gateway dies; its broker goes on queueing for the absent session
    owner.wait()
    asyncio.run(publish(b"while the gateway was down"))
    second = ManagedBroker(tmp_path, port=port)
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.broker"):
            second.start()
        assert second.pid == left and process_running(left)
        assert f"taking over mosquitto pid {left}" in caplog.text

        async def resume() -> bytes:
            got: asyncio.Queue[bytes] = asyncio.Queue()
            options = dataclasses.replace(
                address.client_options("keeper", subscriptions=[("q/#", 1)]),
                clean_start=False,
                session_expiry_s=300,
            )
            async with MqttClient(options, lambda t, p, q: got.put_nowait(p)):
                return await asyncio.wait_for(got.get(), 10)

        assert asyncio.run(resume()) == b"while the gateway was down"
    finally:
        second.stop()
    assert not process_running(left)  # stopped like a broker of our own


def test_a_terminal_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = ManagedBroker(tmp_path, port=port)
        with pytest.raises(
            BrokerError, match=f"cannot listen for terminals on mqtt://127.0.0.1:{port}"
        ):
            broker.start()
    assert broker.pid is None
