"""Dead letters re-injected end to end, on real Kafka and Redis with a real worker: a producer
whose clock ran an hour ahead wrote clicks that are dead letters (bad_timestamp). Re-injected
as they are, they are judged at their original record timestamps and rejected again. Once the
workers allow the skew (the fix), re-injected they are counted once, in their own window;
re-injected again, they are duplicates. The page views in Redis equal the oracle's, and nothing
was written to the input topic."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
import redis
from aiokafka import AIOKafkaProducer

from serving import keys
from tests.builders import click_bytes
from tests.rig import Worker, clickstream, read_to_end, summed_cells, wait_until

pytestmark = pytest.mark.integration

GOOD, AHEAD = 40, 6  # clicks, and those an hour ahead of their record timestamps
MIN = 60_000


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, int]]) -> None:
    """(key, value, record timestamp), in order, to partition 0."""

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for key, value, at in records:
                await producer.send_and_wait(topic, value, key=key, partition=0, timestamp_ms=at)
        finally:
            await producer.stop()

    asyncio.run(send())


def counters(client: redis.Redis, app: str) -> Counter:
    out: Counter = Counter()
    for name, value in client.hgetall(keys.pipeline(app, "clicks")).items():
        out[keys.split_field(name.decode())[1][0]] += int(value)
    return out


def test_dead_letters_reinjected_count_once_after_the_fix_and_never_before(
    pipeline_env, settings, redis_server, tmp_path
):
    env = {**pipeline_env, "CLICKSTREAM_PARTITIONS": "1"}
    app, clicks = settings.app_id, settings.topics.clicks.name
    client = redis.Redis.from_url(redis_server.url)
    base = (round(time.time() * 1000) - 2 * 3_600_000) // MIN * MIN  # two hours ago
    good = [(base + i * 3_000, f"g{i}") for i in range(GOOD)]  # two minutes of clicks
    ahead = [(base + 60 * MIN + i * 1_000, f"f{i}") for i in range(AHEAD)]  # stamped at base

    def record(time_ms: int, event_id: str) -> bytes:
        return click_bytes(event_id=event_id, user_id="u1", url="/p/1", occurred_at_ms=time_ms)

    worker = Worker(env, tmp_path / "worker-0.log").start()
    wait_until(lambda: client.exists(keys.workers(app)) == 1, 120, "the worker reports")
    records = [(b"u1", record(t, e), t) for t, e in good[: GOOD // 2]]
    records += [(b"u1", record(t, e), base) for t, e in ahead]
    records += [(b"u1", record(t, e), t) for t, e in good[GOOD // 2 :]]
    produce(settings.bootstrap, clicks, records)
    alive = worker.alive
    wait_until(lambda: counters(client, app)["dead_letters"] == AHEAD, 120, "letters", alive)
    assert counters(client, app)["accepted"] == GOOD

    def reinject() -> None:
        done = clickstream(env, "dead-letters", "reinject", "--reason", "bad_timestamp")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"re-injected {AHEAD} originals"), done.stdout

    reinject()  # judged at their original record timestamps: an hour ahead still
    wait_until(lambda: counters(client, app)["retried"] == AHEAD, 120, "first re-injection", alive)
    wait_until(lambda: counters(client, app)["dead_letters"] == 2 * AHEAD, 60, "letters", alive)
    worker.stop()

    fixed = {**env, "CLICKSTREAM_MAX_FUTURE_SKEW_SECONDS": "7200"}
    worker = Worker(fixed, tmp_path / "worker-1.log").start()
    alive = worker.alive
    reinject()  # each original once, though two letters name it now
    wait_until(lambda: counters(client, app)["accepted"] == GOOD + AHEAD, 120, "taken", alive)
    reinject()
    wait_until(lambda: counters(client, app)["duplicates"] == AHEAD, 120, "again", alive)
    final = counters(client, app)
    worker.stop()

    assert (final["retried"], final["late"], final["dead_letters"]) == (3 * AHEAD, 0, 2 * AHEAD)
    oracle: Counter = Counter()
    for time_ms, _ in good + ahead:
        oracle[time_ms // MIN * MIN, "/p/1"] += 1
    assert summed_cells(client, app, keys.PAGE_VIEWS, 0) == oracle
    assert len(read_to_end(settings.bootstrap, clicks)) == GOOD + AHEAD, "the input as it was"
    copies = read_to_end(settings.bootstrap, settings.topics.clicks_ticks.name)
    assert len([c for c in copies if dict(c.headers).get("retry_of")]) == 3 * AHEAD
