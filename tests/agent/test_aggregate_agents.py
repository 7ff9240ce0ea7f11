"""The windowed agents under Faust's test_context with the memory store.

The broker is replaced by an in-memory log (tests/agent/conftest.py) so the changelog,
dead-letter and late-event writes can be read back; Redis is real. The real-Kafka proof is in
tests/integration.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson
import redis
import redis.asyncio as aioredis
from faust.types import TP

from agents.clicks import aggregate_clicks
from agents.windowed import EventKind, WindowedAggregation
from serving import keys
from serving.projection import RedisProjection
from streams.order_facts import is_order_facts, order_facts_record
from streams.ticks import tick_record
from tables.window_state import Progress, cell_key, progress_key
from tests.agent.conftest import until
from tests.builders import T0, click_bytes, order_json


async def test_clicks_are_counted_deduplicated_and_projected(app_and_log, redis_server):
    app, settings, log = app_and_log
    table = app.tables["click_windows"]
    async with app.agents["aggregate_clicks"].test_context() as agent:
        for i, event_id in enumerate(["a", "b", "a", "c"]):  # "a" twice
            raw = click_bytes(event_id=event_id, occurred_at_ms=T0 + i)
            await agent.put(raw, key=b"u-1", partition=0, timestamp=T0 / 1000, wait=False)
        await agent.put(b"{oops", key=b"u-1", partition=0, timestamp=T0 / 1000, wait=False)
        start = T0 - T0 % 60_000
        await until(
            lambda: (
                table.data.get(cell_key(0, start, "pageviews|/p/42")) is not None
                and len(log.topic(settings.topics.dead_letters.name)) == 1
            )
        )

    assert orjson.loads(table.data[cell_key(0, start, "pageviews|/p/42")])["v"] == [3]
    ((_, value, headers),) = log.topic(settings.topics.dead_letters.name)
    assert value == b"{oops" and ("reason", b"malformed_json") in headers
    changelog = log.topic(table.changelog_topic.get_topic_name())
    assert changelog[-1][0] == b"P|0", "progress is the last changelog write of a batch"
    client = redis.Redis.from_url(redis_server.url)
    assert client.hget(keys.window(settings.app_id, keys.PAGE_VIEWS, start), "0|/p/42") == b"3"
    assert client.hget(keys.pipeline(settings.app_id, "clicks"), "0|duplicates") == b"1"


async def test_late_order_goes_to_late_events_and_not_into_revenue(app_and_log):
    app, settings, log = app_and_log
    table = app.tables["order_windows"]
    on_time = orjson.dumps(order_json(event_id="o1", occurred_at_ms=T0 + 120_000))
    late = orjson.dumps(order_json(event_id="o2", occurred_at_ms=T0))  # window closed by then
    async with app.agents["aggregate_orders"].test_context() as agent:
        for raw in (on_time, late):
            await agent.put(raw, key=b"u-1", partition=1, timestamp=T0 / 1000 + 130, wait=False)
        await until(lambda: len(log.topic(settings.topics.late_events.name)) == 1)

    ((_, value, _),) = log.topic(settings.topics.late_events.name)
    record = orjson.loads(value)
    assert record["event_id"] == "o2" and record["id"].endswith("/1/1")
    start = T0 + 120_000 - (T0 + 120_000) % 60_000
    assert orjson.loads(table.data[cell_key(1, start, "orders|EUR")])["v"] == [1, 4990]
    assert table.data.get(cell_key(1, T0 - T0 % 60_000, "orders|EUR")) is None


async def test_a_tick_closes_the_window_and_its_result_is_emitted(app_and_log):
    app, settings, log = app_and_log
    value, headers = tick_record(T0 + 200_000, settings.app_id)
    async with app.agents["aggregate_clicks"].test_context() as agent:
        for i, user in enumerate(["u-1", "u-2", "u-1"]):
            raw = click_bytes(event_id=f"e{i}", user_id=user, occurred_at_ms=T0 + i)
            await agent.put(raw, key=b"u", partition=2, timestamp=T0 / 1000, wait=False)
        await agent.put(value, key=None, partition=2, timestamp=T0 / 1000, headers=headers)
        await until(lambda: len(log.topic(settings.topics.window_results.name)) >= 4 + 4)

    results = [orjson.loads(v) for _, v, _ in log.topic(settings.topics.window_results.name)]
    start = T0 - T0 % 60_000
    (tumbling,) = [r for r in results if r["kind"] == "tumbling"]  # empty minutes send nothing
    assert tumbling["id"] == f"clicks/tumbling/{start}/p2" and tumbling["partition"] == 2
    # after its results, the partition's progress goes to every results partition
    progress = {
        partition: orjson.loads(log.records[settings.topics.window_results.name, partition][-1][1])
        for partition in range(settings.partitions)
    }
    assert {p["kind"] for p in progress.values()} == {"progress"}
    assert {p["watermark_ms"] for p in progress.values()} == {T0 + 200_000}
    assert tumbling["pageviews"] == {"/p/42": 3}
    assert tumbling["clicktypes"] == {"page_view": 3}
    assert tumbling["uniques"]["users"]["estimate"] == 2
    assert {r["kind"] for r in results} == {"tumbling", "hopping", "progress"}


def fetched_aggregation(
    app, settings, commit_s: float, kind: EventKind | None = None
) -> WindowedAggregation:
    """The clicks aggregation (or another `kind` on the clicks table) as the worker's fast path
    drives it, committing every `commit_s`."""
    projection = RedisProjection(
        aioredis.Redis.from_url(settings.redis), settings.app_id, "clicks", 3_600_000
    )
    return WindowedAggregation(
        app,
        app.tables["click_windows"],
        kind or aggregate_clicks(),
        settings.clicks_topic,
        settings.window_spec,
        settings.limits,
        projection,
        settings.topics,
        idle_s=0,
        commit_s=commit_s,
    )


def fetch(topic: str, partition: int, first_offset: int, event_ids: list[str]) -> dict:
    """A fetched record list, as aiokafka hands it over (timestamps in ms)."""
    records = [
        SimpleNamespace(
            topic=topic,
            partition=partition,
            offset=first_offset + i,
            timestamp=T0,
            key=b"u-1",
            value=click_bytes(event_id=event_id, occurred_at_ms=T0 + i),
            headers=(),
        )
        for i, event_id in enumerate(event_ids)
    ]
    return {TP(topic, partition): records}


async def test_batches_are_committed_once_per_interval_each_key_once_then_acked(app_and_log):
    app, settings, log = app_and_log
    aggregation = fetched_aggregation(app, settings, commit_s=0.3)
    acked: list[tuple[int, list[int]]] = []

    async def ack(tp, offsets):
        acked.append((tp.partition, list(offsets)))

    table = app.tables["click_windows"]
    changelog = table.changelog_topic.get_topic_name()
    await aggregation.apply_fetched(fetch(settings.clicks_topic, 0, 0, ["a", "b"]), ack)
    await aggregation.apply_fetched(fetch(settings.clicks_topic, 0, 2, ["c"]), ack)
    assert acked == [] and log.topic(changelog) == []  # staged, not yet saved

    await asyncio.sleep(0.35)
    await aggregation.commit_if_due()
    start = T0 - T0 % 60_000
    assert orjson.loads(table.data[cell_key(0, start, "pageviews|/p/42")])["v"] == [3]
    written = [key for key, _, _ in log.topic(changelog)]
    assert len(written) == len(set(written)) and written[-1] == b"P|0"  # each key once
    assert acked == [(0, [0, 1]), (0, [2])]  # only after the save


async def test_a_rebalance_discards_staged_state_and_acks_nothing(app_and_log, monkeypatch):
    app, settings, log = app_and_log
    aggregation = fetched_aggregation(app, settings, commit_s=60)
    acked: list = []

    async def ack(tp, offsets):
        acked.append(offsets)

    await aggregation.apply_fetched(fetch(settings.clicks_topic, 0, 0, ["a", "b"]), ack)
    monkeypatch.setattr(app, "consumer", SimpleNamespace(assignment=lambda: set()))
    app.consumer_generation_id += 1  # the partition may be someone else's now
    aggregation.commit_s = 0
    await aggregation.commit_if_due()
    assert (
        acked == []
        and log.topic(app.tables["click_windows"].changelog_topic.get_topic_name()) == []
    )


async def test_accepted_orders_are_forwarded_to_the_same_clicks_partition_and_attributed(
    app_and_log,
):
    app, settings, log = app_and_log
    clicks_topic = settings.topics.clicks.name
    async with app.agents["aggregate_orders"].test_context() as orders:
        raw = orjson.dumps(order_json(event_id="o1", occurred_at_ms=T0 + 5_000))
        await orders.put(raw, key=b"u-1", partition=3, timestamp=T0 / 1000)
        await until(lambda: len(log.records[clicks_topic, 3]) == 1)
    ((_, facts, headers),) = log.records[clicks_topic, 3]
    assert is_order_facts(headers) and orjson.loads(facts)["by"] == settings.app_id

    foreign, _ = order_facts_record([("o9", "u-1", T0 + 6_000, "EUR", 1)], T0 + 300_000, "other")
    tick, tick_headers = tick_record(T0 + 300_000, settings.app_id)
    async with app.agents["aggregate_clicks"].test_context() as clicks:
        click = click_bytes(event_id="c1", occurred_at_ms=T0)  # from search.example
        await clicks.put(click, key=b"u-1", partition=3, timestamp=T0 / 1000)
        await clicks.put(facts, key=None, partition=3, timestamp=T0 / 1000, headers=headers)
        await clicks.put(foreign, key=None, partition=3, timestamp=T0 / 1000, headers=headers)
        await clicks.put(tick, key=None, partition=3, timestamp=T0 / 1000, headers=tick_headers)
        # the orders side's watermark moves on with its next facts record
        later, _ = order_facts_record([], T0 + 300_000, settings.app_id)
        await clicks.put(later, key=None, partition=3, timestamp=T0 / 1000, headers=headers)
        await until(
            lambda: any(
                orjson.loads(v)["stream"] == "attribution"
                for _, v, _ in log.topic(settings.topics.window_results.name)
            )
        )

    (attributed,) = [
        orjson.loads(v)
        for _, v, _ in log.topic(settings.topics.window_results.name)
        if orjson.loads(v)["stream"] == "attribution"
    ]
    # the foreign app's order o9 is not ours to join: only o1 counts
    assert attributed["attributed"] == {"search.example|EUR": {"orders": 1, "cents": 4990}}
    ((_, _, dead_headers),) = log.topic(settings.topics.dead_letters.name)
    assert ("reason", b"foreign_order_facts") in dead_headers


async def test_an_unreadable_order_facts_record_is_a_dead_letter(app_and_log):
    app, settings, log = app_and_log
    _, headers = order_facts_record([], T0, settings.app_id)
    async with app.agents["aggregate_clicks"].test_context() as clicks:
        await clicks.put(b"{oops", key=None, partition=0, timestamp=T0 / 1000, headers=headers)
        await until(lambda: len(log.topic(settings.topics.dead_letters.name)) == 1)
    ((_, value, dead_headers),) = log.topic(settings.topics.dead_letters.name)
    assert value == b"{oops" and ("reason", b"bad_order_facts") in dead_headers


async def test_forged_and_foreign_control_records_are_dead_letters_and_move_no_time(app_and_log):
    app, settings, log = app_and_log
    ten_days = 10 * 86_400_000
    forged_tick = tick_record(T0 + ten_days, settings.app_id)  # far past its record's time
    foreign_tick = tick_record(T0 + 60_000, "another-app")
    forged_facts = order_facts_record([], T0 + ten_days, settings.app_id)
    async with app.agents["aggregate_clicks"].test_context() as clicks:
        await clicks.put(click_bytes(event_id="c1"), key=b"u-1", partition=0, timestamp=T0 / 1000)
        for value, headers in (forged_tick, foreign_tick, forged_facts):
            await clicks.put(value, key=None, partition=0, timestamp=T0 / 1000, headers=headers)
        await clicks.put(
            click_bytes(event_id="c2", occurred_at_ms=T0 + 1_000),
            key=b"u-1",
            partition=0,
            timestamp=T0 / 1000,
        )
        table = app.tables["click_windows"]
        await until(lambda: Progress.decode(table.data.get(progress_key(0))).offset == 4)

    reasons = [dict(h)["reason"] for _, _, h in log.topic(settings.topics.dead_letters.name)]
    assert reasons == [b"bad_tick", b"foreign_tick", b"bad_order_facts"]
    progress = Progress.decode(table.data[progress_key(0)])
    assert progress.watermark_ms == T0 + 1_000 and progress.late == 0  # c2 is on time
    results = [orjson.loads(v) for _, v, _ in log.topic(settings.topics.window_results.name)]
    assert {r["kind"] for r in results} == {"progress"}  # no window closed
