"""`xixin ingest` as a user runs it: worker processes on a real mosquitto and a real SQLite,
beacons through the shared subscription, Ctrl-C to the parent stops every worker by its PID."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy
from paho.mqtt.enums import CallbackAPIVersion

from gateway.broker import ManagedBroker
from gateway.store.db import create_db_engine, migrate
from gateway.store.registry import DeviceRegistry
from protocol.org import default_org

TIMEOUT = 30.0
LAT, LON = 30.8633, 120.1122  # inside the demo org's grid-01


class Lines:
    """The process's stdout, line by line, read on a thread (no blocking reads in the test)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stream = process.stdout
        threading.Thread(target=lambda: [self._queue.put(x) for x in stream], daemon=True).start()

    def wait_for(self, pattern: str, count: int = 1) -> list[str]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            found = [line for line in self.seen if re.search(pattern, line)]
            if len(found) >= count:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {count} x {pattern!r} in:\n" + "".join(self.seen))
            try:
                self.seen.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                continue


def status(line: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"(received|stored|refused) (\d+)", line)}


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'xixin.db'}"
    engine = create_db_engine(url)
    migrate(engine)
    DeviceRegistry(engine, default_org()).add("T001", "grid-01", "officer")
    engine.dispose()
    yield url


def publish(broker: ManagedBroker, messages: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="field", protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(TIMEOUT)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def beacon(i: int, now_ms: int) -> bytes:
    return json.dumps(
        {"v": 1, "ts": now_ms - (200 - i) * 5000, "lat": LAT + i * 1e-5, "lon": LON, "bat": 80}
    ).encode()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a shell gives a background job


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_ingest_workers_share_the_load_and_stop_on_ctrl_c(
    mosquitto: ManagedBroker, database: str, inherited: str
) -> None:
    process = subprocess.Popen(
        [
            sys.executable, "-m", "xixin.cli", "ingest",
            "--broker", f"mqtt://{mosquitto.host}:{mosquitto.port}", "--db", database,
            "--workers", "2", "--status-every", "0.3",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_ignore_sigint if inherited == "ignored" else None,
    )  # fmt: skip
    try:
        lines = Lines(process)
        first = lines.wait_for(r"worker\(s\), pids")[0]
        pids = [int(p) for p in re.search(r"pids ([\d ]+);", first).group(1).split()]  # type: ignore[union-attr]
        assert len(pids) == 2 and process.pid not in pids
        lines.wait_for(r"worker \d ready", count=2)
        now_ms = int(time.time() * 1000)
        messages = [("xixin/v1/dev/T001/gps", beacon(i, now_ms)) for i in range(120)]
        messages += [("xixin/v1/dev/X999/gps", beacon(i, now_ms)) for i in range(5)]  # unknown
        messages += [("xixin/v1/dev/T001/gps", b"\xff{not json"), ("xixin/v1/dev/T001/gps", b"")]
        publish(mosquitto, messages)
        lines.wait_for(r"running .*stored 120 ")
        for pid in pids:
            os.kill(pid, 0)  # both workers still run
        process.send_signal(signal.SIGINT)
        assert process.wait(TIMEOUT) == 0, process.stderr.read() if process.stderr else ""
        final = lines.wait_for(r"stopped")[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert status(final) == {"received": 127, "stored": 120, "refused": 7}, final
    per_worker = json.loads(final.split("per worker ")[1])
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker), final  # the group split it
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    engine = create_db_engine(database)
    with engine.connect() as conn:
        stored = conn.execute(
            sqlalchemy.text("SELECT device, count(*) FROM positions GROUP BY device")
        ).all()
    engine.dispose()
    assert [tuple(row) for row in stored] == [("T001", 120)]


def test_ingest_refuses_a_bad_broker_url_without_starting_workers(database: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "xixin.cli", "ingest", "--broker", "http://x", "--db", database],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "broker URL must look like mqtt://host:port" in result.stderr
    assert "pids" not in result.stdout
