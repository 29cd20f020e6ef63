"""A broker outage is one warning and one line when it is back, not a line per attempt."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from gateway.broker import ManagedBroker, free_port
from transport.client import ClientOptions, MqttClient


def test_an_outage_logs_once_and_says_when_the_broker_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens here until the broker starts
    logger = logging.getLogger("test.reconnect")
    options = ClientOptions("127.0.0.1", port, "probe", backoff_initial=0.01, backoff_max=0.05)
    broker = ManagedBroker(tmp_path, port=port)

    def attempts() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "reconnecting in" in r.getMessage()]

    async def main() -> None:
        client = MqttClient(options, lambda *_: None, logger=logger)
        task = asyncio.create_task(client.run())
        try:
            for _ in range(500):  # until several attempts have failed
                if len(attempts()) >= 5:
                    break
                await asyncio.sleep(0.01)
            await asyncio.to_thread(broker.start)
            await client.wait_connected(10)
        finally:
            await client.close()
            task.cancel()

    with caplog.at_level(logging.DEBUG, logger="test.reconnect"):
        try:
            asyncio.run(main())
        finally:
            broker.stop()
    failed = attempts()
    assert len(failed) >= 5
    assert [r.levelno for r in failed] == [logging.WARNING] + [logging.DEBUG] * (len(failed) - 1)
    assert "backing off to 0.05 s" in failed[0].getMessage()
    back = [r for r in caplog.records if "connected after" in r.getMessage()]
    assert len(back) == 1 and back[0].levelno == logging.INFO
    assert f"connected after {len(failed)} failed attempts" in back[0].getMessage()
