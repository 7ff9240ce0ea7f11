"""A hostile producer cannot stop the worker or move its event time: poison orders and a
seeded fuzz corpus on the input topics, forged and foreign control records on the app's own
time log and order facts topics, become dead letters with their reasons, and every result
still equals the oracle's over the valid traffic; a window of many long names still fits
Kafka's messages."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
import redis
from aiokafka import AIOKafkaProducer

from clickstream.kafka_admin import ensure_topics
from serving import keys
from streams.order_facts import order_facts_value
from streams.ticks import tick_value
from streams.validation import InvalidEvent, Limits, parse_click, parse_order
from tables.bounded import OTHER
from tests.builders import T0, click_json, order_json
from tests.rig import (
    FAULTY_TRAFFIC,
    expectation,
    processed,
    produce_lines,
    read_topic,
    summed_cells,
    tumbling_results,
    wait_until,
)

pytestmark = pytest.mark.integration

TRAFFIC = replace(FAULTY_TRAFFIC, seed=7, count=6_000)
TEN_DAYS_MS = 10 * 86_400_000
LONG_NAMES = 700
NASTY = [
    None, True, False, 0, -1, 2**63, 2**64 + 1, 1e308, -1e308, 0.1, "", "x" * 3000, "NaN",
    "Infinity", "1e999", [], {}, [1, 2], {"a": {}}, "\u0000", "\U0001f600" * 10,
]  # fmt: skip


def fuzzed(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """`body` with one field, top level or nested, replaced by a nasty value."""
    body = json.loads(json.dumps(body))
    target = body
    while True:
        name = rng.choice(sorted(target))
        if isinstance(target[name], dict) and rng.random() < 0.5:
            target = target[name]
        elif isinstance(target[name], list) and target[name] and rng.random() < 0.5:
            target = target[name][0]
        else:
            target[name] = rng.choice(NASTY)
            return body


def hostile_records(app_id: str, timestamp_ms: int, limits: Limits) -> list[tuple]:
    """(stream, value, headers, expected reason) of every hostile record."""
    records: list[tuple] = []
    for amount in (1e308, "100000000000000000.00"):
        raw = json.dumps({**order_json(event_id=f"poison-{amount}"), "amount": amount}).encode()
        records.append(("orders", raw, [], "bad_value"))
    ahead, fact = timestamp_ms + TEN_DAYS_MS, ("o", "u", timestamp_ms, "EUR", 1)
    records += [
        ("ticks", tick_value(ahead, 0, app_id), [], "bad_tick"),
        ("ticks", tick_value(timestamp_ms, 0, "another-app"), [], "foreign_tick"),
        ("facts", order_facts_value([], ahead, app_id), [], "bad_order_facts"),
        (
            "facts",
            order_facts_value([fact], timestamp_ms, "another-app"),
            [],
            "foreign_order_facts",
        ),
    ]
    rng = random.Random(20261201)
    while len(records) < 200:
        stream = rng.choice(("clicks", "orders"))
        body = click_json(event_id=f"f{len(records)}") if stream == "clicks" else order_json()
        raw = json.dumps(fuzzed(body, rng)).encode()
        try:
            (parse_click if stream == "clicks" else parse_order)(raw, timestamp_ms, limits)
        except InvalidEvent as exc:  # a mutation that happens to be valid is not hostile
            records.append((stream, raw, [], exc.reason))
    return records


async def send(bootstrap: str, records: list[tuple], topics: dict, timestamp_ms: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i, (stream, value, headers, _) in enumerate(records):
            await producer.send_and_wait(
                topics[stream], value, partition=i % 4, timestamp_ms=timestamp_ms, headers=headers
            )
    finally:
        await producer.stop()


def test_hostile_records_are_dead_letters_and_the_valid_ones_equal_the_oracle(
    settings, start_worker, redis_server, tmp_path
):
    lines = produce_lines(settings, TRAFFIC, tmp_path / "events.jsonl")
    expected = expectation(settings, lines)
    last_ms = max(line["timestamp_ms"] for line in lines)
    hostile = hostile_records(settings.app_id, last_ms, settings.limits)
    topics = {
        "clicks": settings.clicks_topic,
        "orders": settings.orders_topic,
        "ticks": settings.topics.clicks_ticks.name,  # read by the clicks processor
        "facts": settings.topics.order_facts.name,  # likewise
    }
    asyncio.run(ensure_topics(settings.bootstrap, settings.topics.all(), settings.replication))
    asyncio.run(send(settings.bootstrap, hostile, topics, last_ms))
    injected = Counter(stream for stream, *_ in hostile)
    injected["clicks"] += injected["ticks"] + injected["facts"]

    worker = start_worker()
    client = redis.Redis.from_url(redis_server.url)
    for stream in ("clicks", "orders"):
        topic = topics[stream]
        wait_until(
            lambda s=stream, t=topic: (
                processed(client, settings.app_id, s) == expected.messages[t] + injected[s]
            ),
            within=180,
            why=f"{stream} processed",
            alive=worker.alive,
        )
    assert worker.alive(), "no record may stop the worker"

    total = sum(expected.dead_letters.values()) + len(hostile)
    dead = read_topic(settings.bootstrap, settings.topics.dead_letters.name, total)
    reasons = Counter(dict(r.headers)["reason"].decode() for r in dead)
    assert reasons == expected.dead_letter_reasons + Counter(r for *_, r in hostile)
    assert summed_cells(client, settings.app_id, keys.ORDERS, 1) == expected.revenue
    assert summed_cells(client, settings.app_id, keys.PAGE_VIEWS, 0) == expected.page_views
    # no forged time moved a watermark: exactly the windows the valid traffic closed
    assert tumbling_results(settings) == expected.final_results


def test_a_window_of_many_long_names_folds_its_smallest_and_the_worker_stays_up(
    settings, start_worker, redis_server
):
    # 700 distinct 2 KB pages in one minute, each click with a 2 KB event id: the pane's result
    # and the batch's dedup record would each pass Kafka's 1 MiB message limit
    async def produce() -> None:
        await ensure_topics(settings.bootstrap, settings.topics.all(), settings.replication)
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
        await producer.start()
        try:
            for i in range(LONG_NAMES):
                page = f"/{i:04d}" + "x" * 2000
                body = click_json(event_id=f"{i:04d}" + "e" * 2000, url=page, occurred_at_ms=T0)
                await producer.send(settings.clicks_topic, json.dumps(body).encode(), partition=0)
            closer = click_json(event_id="closer", occurred_at_ms=T0 + 600_000)
            await producer.send_and_wait(
                settings.clicks_topic, json.dumps(closer).encode(), partition=0
            )
        finally:
            await producer.stop()

    asyncio.run(produce())
    worker = start_worker()
    client = redis.Redis.from_url(redis_server.url)
    wait_until(
        lambda: processed(client, settings.app_id, "clicks") == LONG_NAMES + 1,
        within=120,
        why="every click processed",
        alive=worker.alive,
    )
    pane = T0 - T0 % settings.window_ms
    wait_until(
        lambda: ("clicks", pane, 0) in tumbling_results(settings),
        within=30,
        why="the pane's result",
        alive=worker.alive,
    )
    views = tumbling_results(settings)["clicks", pane, 0]["pageviews"]
    assert OTHER in views and sum(views.values()) == LONG_NAMES  # nothing lost, only folded
    assert len(views) < LONG_NAMES
    assert worker.alive()
