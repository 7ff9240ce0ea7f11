"""Agent tests' rig: the real Faust app under test_context, with an in-memory log for a broker."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from types import SimpleNamespace

import pytest

from clickstream.app import create_app
from clickstream.settings import load


class InMemoryLog:
    """Stands in for the broker: sends append and ack at once with the (base) offset; a batch
    holds at most BATCH records, so batch splitting is exercised too."""

    BATCH = 3

    def __init__(self) -> None:
        self.records: dict[tuple[str, int], list[tuple[bytes, bytes, object]]] = defaultdict(list)

    async def send(self, topic, key, value, partition, timestamp, headers, **_):
        return self._append(topic, partition or 0, [(key, value, headers)])

    def create_batch(self):
        batch: list = []

        class Builder:
            def append(self, *, timestamp, key, value, headers=()):
                if len(batch) >= InMemoryLog.BATCH:
                    return None
                batch.append((key, value, list(headers)))
                return True

        builder = Builder()
        builder.records = batch  # type: ignore[attr-defined]
        return builder

    async def send_batch(self, batch, topic, *, partition):
        return self._append(topic, partition, batch.records)

    def _append(self, topic, partition, records):
        log = self.records[topic, partition]
        base = len(log)
        log.extend(records)
        ack = asyncio.get_running_loop().create_future()
        ack.set_result(SimpleNamespace(offset=base))
        return ack

    def topic(self, name: str) -> list[tuple[bytes, bytes, object]]:
        return [r for (topic, _), log in self.records.items() if topic == name for r in log]


@pytest.fixture
def app_and_log(redis_server, app_id, monkeypatch):
    settings = load(
        {
            "CLICKSTREAM_APP_ID": app_id,
            "CLICKSTREAM_STORE": "memory://",
            "CLICKSTREAM_REDIS_URL": redis_server.url,
            "CLICKSTREAM_BATCH_SECONDS": "0.05",
            "CLICKSTREAM_GRACE_SECONDS": "10",
        },
        dotenv=None,
    )
    app = create_app(settings)
    app.finalize()
    app.flow_control.resume()
    log = InMemoryLog()
    monkeypatch.setattr(app.producer, "send", log.send)
    monkeypatch.setattr(app.producer, "_ensure_producer", lambda: log)
    return app, settings, log


async def until(condition, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
