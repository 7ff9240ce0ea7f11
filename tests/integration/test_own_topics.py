"""The app writes only the topics it owns, and its time log makes a second version exact.

A live worker with ticks and attribution on reads traffic produced in two bursts with a pause
between: its partitions go idle, get ticks and close windows, so the second burst's first
events are judged against watermarks that ticks moved. Then a second app id reads the same
inputs, following the first one's time log (CLICKSTREAM_CLOCK_APP_ID). The input topics end
exactly where the producer left them, and the second version computes the same window
results (by id and content), the same late verdicts and the same session summaries.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import orjson
import pytest
import redis
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from clickstream.settings import load
from tests.rig import (
    FAULTY_TRAFFIC,
    Worker,
    final_results,
    processed,
    produce_lines,
    read_to_end,
    session_summaries,
    wait_until,
)

pytestmark = pytest.mark.integration

BURST = replace(FAULTY_TRAFFIC, seed=31, count=2_500, events_per_second=100, late_rate=0.0)


def end_offsets(bootstrap: str, topics: list[str], partitions: int) -> dict[tuple[str, int], int]:
    async def ends() -> dict[tuple[str, int], int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
            return {
                (tp.topic, tp.partition): o for tp, o in (await consumer.end_offsets(tps)).items()
            }
        finally:
            await consumer.stop()

    return asyncio.run(ends())


def both(client: redis.Redis, app_id: str) -> int:
    return processed(client, app_id, "clicks") + processed(client, app_id, "orders")


def late_verdicts(settings) -> dict[str, dict]:
    verdicts: dict[str, dict] = {}
    for record in read_to_end(settings.bootstrap, settings.topics.late_events.name):
        late = orjson.loads(record.value)
        assert verdicts.setdefault(late["id"], late) == late, f"{late['id']} changed"
    return verdicts


def test_inputs_stay_untouched_and_a_second_version_on_the_time_log_agrees(
    pipeline_env, redis_server, tmp_path
):
    env = {
        **pipeline_env,
        "CLICKSTREAM_IDLE_SECONDS": "1",
        "CLICKSTREAM_WINDOW_SECONDS": "10",
        "CLICKSTREAM_HOP_SECONDS": "30",
        "CLICKSTREAM_GRACE_SECONDS": "5",
        "CLICKSTREAM_SESSION_GAP_SECONDS": "20",
    }
    live = load(env, dotenv=None)
    inputs = [live.clicks_topic, live.orders_topic]
    client = redis.Redis.from_url(redis_server.url)
    first = produce_lines(live, BURST, tmp_path / "first.jsonl")
    worker = Worker(env, tmp_path / "live.log").start()
    try:
        sent = len(first)
        wait_until(
            lambda: both(client, live.app_id) >= sent,
            within=120, why="the first burst processed", alive=worker.alive,
        )  # fmt: skip
        time.sleep(8)  # idle: ticks move event time on and close windows
        after = max(line["timestamp_ms"] for line in first)
        second = produce_lines(
            live, replace(BURST, seed=32, start_ms=after - 3_000), tmp_path / "second.jsonl"
        )
        sent += len(second)
        wait_until(
            lambda: both(client, live.app_id) >= sent,
            within=120, why="the second burst processed", alive=worker.alive,
        )  # fmt: skip
        time.sleep(10)  # ticks close what is left
    finally:
        worker.stop()
    left = end_offsets(live.bootstrap, inputs, live.partitions)
    assert sum(left.values()) == sent  # exactly the producer's records: nothing of ours
    ticks = read_to_end(live.bootstrap, live.topics.clicks_ticks.name)
    assert ticks, "the live worker wrote ticks"

    shadow_env = {
        **env,
        "CLICKSTREAM_APP_ID": f"{live.app_id}-shadow",
        "CLICKSTREAM_CLOCK_APP_ID": live.app_id,
        "CLICKSTREAM_VAR_DIR": str(tmp_path / "shadow-var"),
    }
    shadow = load(shadow_env, dotenv=None)
    replay = Worker(shadow_env, tmp_path / "shadow.log").start()
    try:
        wait_until(
            lambda: both(client, shadow.app_id) >= sent,
            within=120, why="the shadow caught up", alive=replay.alive,
        )  # fmt: skip
        time.sleep(3)  # its last commit
    finally:
        replay.stop()

    assert end_offsets(live.bootstrap, inputs, live.partitions) == left
    assert shadow.topics.clicks_ticks == live.topics.clicks_ticks  # it follows live's ticks
    assert len(read_to_end(live.bootstrap, live.topics.clicks_ticks.name)) == len(ticks)
    live_results = final_results(live.bootstrap, live.topics.window_results.name)
    shadow_results = final_results(shadow.bootstrap, shadow.topics.window_results.name)
    windows = {i: r for i, r in live_results.items() if r["kind"] != "progress"}
    assert windows and windows == {
        i: r for i, r in shadow_results.items() if r["kind"] != "progress"
    }
    live_late = late_verdicts(live)
    assert live_late, "ticks made some of the second burst late"
    assert late_verdicts(shadow) == live_late
    assert session_summaries(shadow) == session_summaries(live)
