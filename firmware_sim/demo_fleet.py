"""A few simulated terminals for `xixin up --demo`: they patrol two talkgroups and take turns
talking, so a newcomer sees grants and relayed frames within seconds.

(The full firmware simulator — GPS, battery, scenarios, impairment — lives elsewhere in
firmware_sim; this is the small fleet the main job starts.)
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from codec.frame import VoiceFrame
from devices.client import ClientError, ReceivedFrame, TerminalClient
from gateway.store.errors import UnknownDeviceError
from gateway.store.registry import DeviceRegistry

log = logging.getLogger(__name__)

# (id, unit, role, name): two grid talkgroups with officers and a guard, and a centre dispatcher.
DEMO_DEVICES = [
    ("T001", "grid-01", "officer", "民警 陈 (Chen)"),
    ("T002", "grid-01", "officer", "民警 沈 (Shen)"),
    ("T003", "grid-01", "guard", "溪心卫士 王 (Wang)"),
    ("T101", "grid-07", "officer", "民警 李 (Li)"),
    ("T102", "grid-07", "guard", "溪心卫士 张 (Zhang)"),
    ("D001", "centre", "dispatcher", "中心调度 (Centre dispatch)"),
]
SECRETS_FILE = "demo-secrets.json"
FRAME_MS = 20


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


def _voice_packet(index: int) -> bytes:
    # An Opus 20 ms CELT packet of digital silence (TOC 0xF8 + payload): valid for any decoder.
    # The firmware simulator sends real speech; the demo only needs well-formed frames.
    del index
    return b"\xf8\xff\xfe"


@dataclass(slots=True)
class DemoStats:
    grants: int = 0
    denials: int = 0
    frames_sent: int = 0
    frames_heard: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class DemoTerminal(threading.Thread):
    def __init__(
        self,
        client: TerminalClient,
        talkgroup: str,
        stats: DemoStats,
        stop: threading.Event,
        rng: random.Random,
    ) -> None:
        super().__init__(name=f"demo-{client.device_id}", daemon=True)
        self.client = client
        self.talkgroup = talkgroup
        self.stats = stats
        self.stop_event = stop
        self.rng = rng

    def run(self) -> None:
        try:
            self.client.connect()
            self.client.affiliate([self.talkgroup, "all"])
            while not self.stop_event.wait(self.rng.uniform(0.5, 4.0)):
                self._talk_once()
        except ClientError as exc:
            if not self.stop_event.is_set():
                log.warning("demo terminal %s stopped: %s", self.client.device_id, exc)
        finally:
            try:
                self.client.disconnect()
            except Exception:  # shutting down anyway
                self.client.drop()

    def _talk_once(self) -> None:
        reply = self.client.request_floor(tg=self.talkgroup)
        if reply.get("type") != "floor_granted":
            with self.stats.lock:
                self.stats.denials += 1
            if reply.get("type") == "floor_queued":
                self.client.release_floor(tg=self.talkgroup)  # the demo does not wait in line
            return
        with self.stats.lock:
            self.stats.grants += 1
        burst = int(reply["burst"])
        frames = int(self.rng.uniform(1.5, 4.0) * 1000 / FRAME_MS)
        start = time.monotonic()
        for seq in range(frames):
            if self.stop_event.is_set():
                break
            frame = VoiceFrame(
                burst=burst,
                seq=seq,
                timestamp=seq * 960,
                frame_ms=FRAME_MS,
                packets=(_voice_packet(seq),),
                start=seq == 0,
                end=seq == frames - 1,
            )
            self.client.send_frame(frame, tg=self.talkgroup)
            with self.stats.lock:
                self.stats.frames_sent += 1
            delay = start + (seq + 1) * FRAME_MS / 1000 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self.client.release_floor(tg=self.talkgroup)


class DemoFleet:
    def __init__(self, host: str, port: int, secrets: dict[str, str], seed: int = 7) -> None:
        self.stats = DemoStats()
        self._stop = threading.Event()
        rng = random.Random(seed)
        self.terminals: list[DemoTerminal] = []
        for device_id, unit, _role, _name in DEMO_DEVICES:
            talkgroup = unit if unit.startswith("grid-") else "grid-01"
            client = TerminalClient(
                device_id, secrets[device_id], host, port, on_frame=self._heard(device_id)
            )
            self.terminals.append(
                DemoTerminal(client, talkgroup, self.stats, self._stop, random.Random(rng.random()))
            )

    def _heard(self, device_id: str) -> Callable[[ReceivedFrame], None]:
        def on_frame(received: ReceivedFrame) -> None:
            with self.stats.lock:
                self.stats.frames_heard += 1

        return on_frame

    def start(self) -> None:
        for terminal in self.terminals:
            terminal.start()

    def stop(self) -> None:
        self._stop.set()
        for terminal in self.terminals:
            terminal.join(10)
