"""clickstream.health: what a worker reports of itself, and its broker probe."""

from __future__ import annotations

import asyncio
import time

from clickstream import health
from serving.sender import InBackground


class Runner:
    def __init__(self, lag: dict[int, int], applied_at: float | None) -> None:
        self._lag, self.applied_at = lag, applied_at

    def lag(self) -> dict[int, int]:
        return self._lag


class Sink:
    failure = "ConnectionError: refused"

    async def flush(self) -> bool:
        return False  # Redis away

    def size(self) -> int:
        return 12


async def test_a_report_says_partitions_lag_and_the_redis_rounds():
    sink = InBackground(Sink(), "clicks")
    await sink.flush()
    await asyncio.sleep(0.01)  # the first round failed; its retries go on (not awaited)
    watch = health.BrokerWatch()
    watch.probed(False, "k:1")
    applied = time.monotonic() - 5
    streams = {"clicks": Runner({0: 3, 2: 0}, applied), "orders": Runner({}, None)}
    body = health.report(streams, [sink], 1_000, watch)
    assert body["at"] == 1_000
    assert body["broker"] == {"reachable": False, "since_ms": watch.changed_ms}
    clicks = body["streams"]["clicks"]
    assert (clicks["partitions"], clicks["lag"]) == ([0, 2], 3)
    assert abs(clicks["applied_ms"] - (time.time() - 5) * 1000) < 1_000
    assert body["streams"]["orders"] == {"partitions": [], "lag": 0, "applied_ms": None}
    assert body["sinks"] == {"clicks": {"pending": 12, "failing": 1, "landed_ms": None}}


class Client:
    def __init__(self, answer: bool) -> None:
        self.answer = answer

    async def fetch_all_metadata(self) -> None:
        if not self.answer:
            await asyncio.sleep(60)  # a stopped broker: no answer at all


async def test_the_probe_gives_up_on_a_broker_that_does_not_answer(monkeypatch):
    monkeypatch.setattr(health, "PROBE_S", 0.05)
    assert await health.probe(Client(True)) is True
    assert await health.probe(Client(False)) is False
