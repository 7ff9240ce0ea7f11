"""The windowed agents under Faust's test_context with the memory store.

The broker is replaced by an in-memory log (tests/agent/conftest.py) so the changelog,
dead-letter and late-event writes can be read back; Redis is real. The real-Kafka proof is in
tests/integration.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace

import orjson
import redis
import redis.asyncio as aioredis
from faust.types import TP

from agents.clicks import aggregate_clicks
from agents.windowed import EventKind, WindowedConfig, WindowedMetrics, WindowedSink
from engine.commit import KafkaCommitter
from engine.runner import Runner, RunnerConfig
from serving import keys
from serving.projection import RedisProjection
from streams.order_facts import order_facts_value, read_order_facts
from streams.ticks import tick_value
from tables.panes import cell_key
from tables.window_state import Progress, progress_key
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


class StaticConsumer:
    """The consumer as a runner sees it: every partition assigned, time logs read already."""

    def __init__(self, app) -> None:
        self.app = app

    def generation(self):
        return self.app.consumer_generation_id

    def assigned(self, topic):
        return {0, 1, 2, 3}

    def highwater(self, topic, partition):
        return None

    async def ends(self, topic, partitions):
        return {}

    def recovered(self):
        return True


def clicks_runner(
    app, settings, commit_s: float, gap_ms: int | None = 1_800_000, kind: EventKind | None = None
) -> Runner:
    """The clicks processor (or another `kind` on the clicks table), as the worker's fast
    path drives it, committing every `commit_s`."""
    projection = RedisProjection(
        aioredis.Redis.from_url(settings.redis), settings.app_id, "clicks", 3_600_000
    )
    config = WindowedConfig(
        settings.window_spec, settings.limits, settings.topics, settings.app_id,
        settings.clock, gap_ms,
    )  # fmt: skip
    kind = replace(kind or aggregate_clicks(), reads_facts=gap_ms is not None)
    processor = WindowedMetrics(kind, config, WindowedSink(projection, "clicks"))
    committer = KafkaCommitter(app, app.tables["click_windows"])
    return Runner(processor, committer, StaticConsumer(app), RunnerConfig(commit_s))


def record(topic: str, partition: int, offset: int, value: bytes, key: bytes | None = None):
    """A fetched record, as aiokafka hands it over (timestamps in ms)."""
    return SimpleNamespace(
        topic=topic, partition=partition, offset=offset, timestamp=T0, key=key, value=value,
        headers=(),
    )  # fmt: skip


def fetch(topic: str, partition: int, first_offset: int, event_ids: list[str]) -> dict:
    records = [
        record(
            topic,
            partition,
            first_offset + i,
            click_bytes(event_id=event_id, occurred_at_ms=T0 + i),
            b"u-1",
        )
        for i, event_id in enumerate(event_ids)
    ]
    return {TP(topic, partition): records}


async def test_a_tick_closes_the_window_and_its_result_is_emitted(app_and_log):
    app, settings, log = app_and_log
    runner = clicks_runner(app, settings, commit_s=0)
    ticks = settings.topics.clicks_ticks.name
    for i, user in enumerate(["u-1", "u-2", "u-1"]):
        raw = click_bytes(event_id=f"e{i}", user_id=user, occurred_at_ms=T0 + i)
        await runner.deliver(
            {TP(settings.clicks_topic, 2): [record(settings.clicks_topic, 2, i, raw)]}
        )
    tick = record(ticks, 2, 0, tick_value(T0 + 200_000, 2, settings.app_id))
    await runner.deliver({TP(ticks, 2): [tick]})

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


async def test_a_tick_fetched_before_its_place_waits_for_the_clicks_it_follows(app_and_log):
    app, settings, log = app_and_log
    runner = clicks_runner(app, settings, commit_s=0)
    clicks, ticks = settings.clicks_topic, settings.topics.clicks_ticks.name
    late = click_bytes(event_id="late", occurred_at_ms=T0)  # later than the tick's minute
    # the tick follows clicks offset 0; it comes first, the late click (offset 1) after it
    await runner.deliver(
        {TP(ticks, 0): [record(ticks, 0, 0, tick_value(T0 + 200_000, 0, settings.app_id))]}
    )
    early = click_bytes(event_id="early", occurred_at_ms=T0 + 1)
    await runner.deliver({TP(clicks, 0): [record(clicks, 0, 0, early), record(clicks, 0, 1, late)]})
    progress = Progress.decode(app.tables["click_windows"].data[progress_key(0)])
    assert (progress.accepted, progress.late, progress.ticks_offset) == (1, 1, 0)
    ((_, value, _),) = log.topic(settings.topics.late_events.name)
    assert orjson.loads(value)["event_id"] == "late"


async def test_batches_are_committed_once_per_interval_each_key_once_then_acked(app_and_log):
    app, settings, log = app_and_log
    runner = clicks_runner(app, settings, commit_s=0.3)
    acked: list[tuple[int, list[int]]] = []

    async def ack(tp, offsets):
        acked.append((tp.partition, list(offsets)))

    runner.committer.ack = ack  # type: ignore[attr-defined]
    table = app.tables["click_windows"]
    changelog = table.changelog_topic.get_topic_name()
    await runner.deliver(fetch(settings.clicks_topic, 0, 0, ["a", "b"]))
    await runner.deliver(fetch(settings.clicks_topic, 0, 2, ["c"]))
    assert acked == [] and log.topic(changelog) == []  # staged, not yet saved

    await asyncio.sleep(0.35)
    await runner.commit_if_due()
    start = T0 - T0 % 60_000
    assert orjson.loads(table.data[cell_key(0, start, "pageviews|/p/42")])["v"] == [3]
    written = [key for key, _, _ in log.topic(changelog)]
    assert len(written) == len(set(written)) and written[-1] == b"P|0"  # each key once
    assert acked == [(0, [0, 1, 2])]  # only after the save


async def test_a_rebalance_discards_staged_state_and_acks_nothing(app_and_log):
    app, settings, log = app_and_log
    runner = clicks_runner(app, settings, commit_s=60)
    acked: list = []

    async def ack(tp, offsets):
        acked.append(offsets)

    runner.committer.ack = ack  # type: ignore[attr-defined]
    await runner.deliver(fetch(settings.clicks_topic, 0, 0, ["a", "b"]))
    app.consumer_generation_id += 1  # the partition may be someone else's now
    runner.config = RunnerConfig(0)
    await runner.commit_if_due()
    assert (
        acked == []
        and log.topic(app.tables["click_windows"].changelog_topic.get_topic_name()) == []
    )


async def test_accepted_orders_are_forwarded_to_the_same_clicks_partition_and_attributed(
    app_and_log,
):
    app, settings, log = app_and_log
    facts_topic = settings.topics.order_facts.name
    async with app.agents["aggregate_orders"].test_context() as orders:
        raw = orjson.dumps(order_json(event_id="o1", occurred_at_ms=T0 + 5_000))
        await orders.put(raw, key=b"u-1", partition=3, timestamp=T0 / 1000)
        await until(lambda: len(log.records[facts_topic, 3]) == 1)
    ((_, facts, _),) = log.records[facts_topic, 3]
    assert read_order_facts(facts)[2] == settings.app_id
    assert log.topic(settings.clicks_topic) == [] and log.topic(settings.orders_topic) == []

    runner = clicks_runner(app, settings, commit_s=0)
    foreign = order_facts_value([("o9", "u-1", T0 + 6_000, "EUR", 1)], T0 + 300_000, "other")
    ticks = settings.topics.clicks_ticks.name
    click = click_bytes(event_id="c1", occurred_at_ms=T0)  # from search.example
    await runner.deliver(
        {TP(settings.clicks_topic, 3): [record(settings.clicks_topic, 3, 0, click)]}
    )
    await runner.deliver(
        {TP(facts_topic, 3): [record(facts_topic, 3, 0, facts), record(facts_topic, 3, 1, foreign)]}
    )
    await runner.deliver(
        {TP(ticks, 3): [record(ticks, 3, 0, tick_value(T0 + 300_000, 0, settings.app_id))]}
    )
    # the orders side's watermark moves on with its next facts record
    later = order_facts_value([], T0 + 300_000, settings.app_id)
    await runner.deliver({TP(facts_topic, 3): [record(facts_topic, 3, 2, later)]})

    (attributed,) = [
        orjson.loads(v)
        for _, v, _ in log.topic(settings.topics.window_results.name)
        if orjson.loads(v)["stream"] == "attribution"
    ]
    # the foreign app's order o9 is not ours to join: only o1 counts
    assert attributed["attributed"] == {"search.example|EUR": {"orders": 1, "cents": 4990}}
    ((_, _, dead_headers),) = log.topic(settings.topics.dead_letters.name)
    assert ("reason", b"foreign_order_facts") in dead_headers


async def test_forged_and_foreign_control_records_are_dead_letters_and_move_no_time(app_and_log):
    app, settings, log = app_and_log
    runner = clicks_runner(app, settings, commit_s=0)
    clicks, ticks = settings.clicks_topic, settings.topics.clicks_ticks.name
    facts = settings.topics.order_facts.name
    ten_days = 10 * 86_400_000
    await runner.deliver(fetch(clicks, 0, 0, ["c1"]))
    await runner.deliver(
        {
            TP(ticks, 0): [
                record(ticks, 0, 0, tick_value(T0 + ten_days, 0, settings.app_id)),  # forged
                record(ticks, 0, 1, tick_value(T0 + 60_000, 0, "another-app")),
                record(ticks, 0, 2, b"{oops"),
            ],
            TP(facts, 0): [
                record(facts, 0, 0, order_facts_value([], T0 + ten_days, settings.app_id)),
                record(facts, 0, 1, b"{oops"),
            ],
        }
    )
    await runner.deliver(fetch(clicks, 0, 1, ["c2"]))

    reasons = sorted(dict(h)["reason"] for _, _, h in log.topic(settings.topics.dead_letters.name))
    assert reasons == [
        b"bad_order_facts",
        b"bad_order_facts",
        b"bad_tick",
        b"bad_tick",
        b"foreign_tick",
    ]
    progress = Progress.decode(app.tables["click_windows"].data[progress_key(0)])
    assert progress.watermark_ms == T0 and progress.late == 0  # no time moved: c2 is on time
    assert (progress.ticks_offset, progress.facts_offset) == (2, 1)
    results = [orjson.loads(v) for _, v, _ in log.topic(settings.topics.window_results.name)]
    assert {r["kind"] for r in results} == {"progress"}  # no window closed
