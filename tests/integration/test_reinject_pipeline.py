"""Dead letters re-injected end to end, on real Kafka and Redis with a real worker.

- A producer whose clock ran an hour ahead wrote clicks that are dead letters (bad_timestamp).
  Re-injected as they are, they are judged at their original record timestamps and rejected
  again. Once the workers allow the skew (the fix), re-injected they are counted once, in their
  own window; re-injected again, they are duplicates. The page views in Redis equal the
  oracle's.
- Schema evolution: orders of a version the app does not know are dead letters; a release
  with the upcaster starts; re-injected (twice), each is counted and scored once.

Nothing is written to an input topic."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
import redis
from aiokafka import AIOKafkaProducer

from serving import keys
from tests.builders import click_bytes, order_json
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


def counters(client: redis.Redis, app: str, stream: str = "clicks") -> Counter:
    """The stream's pipeline counters, summed over its partitions."""
    out: Counter = Counter()
    for name, value in client.hgetall(keys.pipeline(app, stream)).items():
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


RELEASE_V3 = Path(__file__).parent / "release_v3"  # its sitecustomize ships the upcaster
ORDERS, UNKNOWN = 12, 5  # orders, and those in a version the first worker does not know


def test_orders_of_an_unknown_version_reinjected_after_the_upcaster_ships_count_and_score_once(
    pipeline_env, settings, redis_server, tmp_path
):
    """The schema-evolution story: OrderCreated v3 orders are dead letters
    (unknown_schema_version); a release that knows v3 starts; `reinject --reason
    unknown_schema_version` brings them in: each counted and scored once, and again once
    after a second re-injection."""
    env = {**pipeline_env, "CLICKSTREAM_PARTITIONS": "1", "CLICKSTREAM_IDLE_SECONDS": "1"}
    app, orders = settings.app_id, settings.topics.orders.name
    client = redis.Redis.from_url(redis_server.url)
    now = round(time.time() * 1000) - 60_000
    bodies = [
        order_json(event_id=f"o{i}", order_id=100 + i, user_id=f"u{i}", occurred_at_ms=now + i)
        for i in range(ORDERS)
    ]
    for body in bodies[:UNKNOWN]:
        body["version"] = 3
    worker = Worker(env, tmp_path / "worker-0.log").start()
    wait_until(lambda: client.exists(keys.workers(app)) == 1, 120, "the worker reports")
    records = [(b["user_id"].encode(), orjson.dumps(b), now) for b in bodies]
    produce(settings.bootstrap, orders, records)

    def orders_counted() -> Counter:
        return counters(client, app, "orders")

    def scored() -> Counter:
        records = read_to_end(settings.bootstrap, settings.topics.scored_orders.name)
        return Counter(orjson.loads(r.value)["event_id"] for r in records)

    wait_until(lambda: orders_counted()["dead_letters"] == UNKNOWN, 120, "letters", worker.alive)
    wait_until(lambda: len(scored()) == ORDERS - UNKNOWN, 120, "v2 scored", worker.alive)
    worker.stop()

    release = {**env, "PYTHONPATH": str(RELEASE_V3)}
    worker = Worker(release, tmp_path / "worker-1.log").start()
    for _ in range(2):
        done = clickstream(env, "dead-letters", "reinject", "--reason", "unknown_schema_version")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"re-injected {UNKNOWN} originals"), done.stdout
    wait_until(lambda: orders_counted()["retried"] == 2 * UNKNOWN, 120, "copies", worker.alive)
    wait_until(lambda: len(scored()) == ORDERS, 120, "all scored", worker.alive)
    final = orders_counted()
    worker.stop()
    assert (final["accepted"], final["duplicates"], final["dead_letters"]) == (
        ORDERS,
        UNKNOWN,
        UNKNOWN,
    )
    assert set(scored()) == {b["event_id"] for b in bodies}
    assert all(n == 1 for n in scored().values()), "each order scored once"
    assert len(read_to_end(settings.bootstrap, orders)) == ORDERS, "the input as it was"
