"""A hung Redis holds back no commit (issue 16's third fault). Measured at a602d4a, a SIGSTOPped
Redis made each commit wait out two 5 s timeouts, so offsets and changelog landed only every
~11 s. Now the projection's round trips run beside the commits (serving.sender): during a 20 s
stall in a paced run the committed offsets keep moving about every second, the failed rounds
are counted on /metrics, the dashboard's health answers 503 at once, and once Redis is back the
projection converges to the oracle's numbers with nothing lost or doubled.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
import urllib.request

import pytest
import redis

from clickstream.kafka_admin import admin_client
from clickstream.local.process import free_port
from clickstream.local.redis import LocalRedis
from clickstream.settings import Settings, load
from generator.produce import read_jsonl
from serving import health, keys, read_model
from tests.rig import (
    Worker,
    expectation,
    paced_generator,
    processed,
    recovered,
    summed_cells,
    wait_processed,
    wait_until,
)

pytestmark = pytest.mark.integration

STALL_S = 20


def committed(settings: Settings) -> int:
    """The worker group's committed offsets on the clicks topic, summed."""

    async def ask() -> int:
        admin = await admin_client(settings.bootstrap)
        try:
            offsets = await admin.list_consumer_group_offsets(settings.app_id)
        finally:
            await admin.close()
        return sum(m.offset for tp, m in offsets.items() if tp.topic == settings.clicks_topic)

    return asyncio.run(ask())


def test_a_hung_redis_holds_back_no_commit(pipeline_env, tmp_path):
    server = LocalRedis(tmp_path / "redis", free_port(), persist=False)
    server.start()
    env = {**pipeline_env, "CLICKSTREAM_REDIS_URL": server.url}
    settings = load(env, dotenv=None)
    app = settings.app_id
    client = redis.Redis.from_url(server.url)
    worker = Worker(env, tmp_path / "worker.log").start()
    jsonl = tmp_path / "events.jsonl"
    producer = paced_generator(env, jsonl, count=1500, rate=30, faults=True)
    pid = server.process.pid()
    assert pid is not None
    try:
        wait_until(lambda: processed(client, app, "clicks") > 100, within=120,
                   why="traffic flowing", alive=worker.alive)  # fmt: skip
        os.kill(pid, signal.SIGSTOP)
        try:
            dashboard = read_model.connect(server.url)
            asked = time.monotonic()
            with pytest.raises(read_model.Unavailable):
                read_model.ping(dashboard)
            assert time.monotonic() - asked < 4, "the dashboard's Redis calls fail fast"
            seen = [committed(settings)]
            for _ in range(STALL_S):
                time.sleep(1)
                seen.append(committed(settings))
        finally:
            os.kill(pid, signal.SIGCONT)
        resumed = time.monotonic()
        wait_until(lambda: health.health(dashboard, app, round(time.time() * 1000)).problems == [],
                   within=30, why="health back to ok", alive=worker.alive)  # fmt: skip
        recovered(f"Redis SIGSTOP {STALL_S} s: healthy after SIGCONT", resumed)
        moves = sum(1 for a, b in itertools.pairwise(seen) if b > a)
        # about one commit a second; commits that waited on Redis would move twice at most
        assert moves >= STALL_S // 4, f"committed offsets moved {moves} times: {seen}"
        metrics = (
            urllib.request.urlopen(
                f"http://127.0.0.1:{worker.env['CLICKSTREAM_WORKER_PORT']}/metrics", timeout=10
            )
            .read()
            .decode()
        )
        failures = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith('clickstream_redis_write_failures_total{sink="clicks"}')
        ]
        assert failures and failures[0] > 0, "the failed rounds are counted"

        assert producer.wait(timeout=120) == 0
        expected = expectation(settings, list(read_jsonl(jsonl)))
        wait_processed(client, settings, expected, alive=worker.alive)
        wait_until(
            lambda: summed_cells(client, app, keys.PAGE_VIEWS, 0) == expected.page_views,
            within=30, why="the oracle's page views", alive=worker.alive,
        )  # fmt: skip
        assert summed_cells(client, app, keys.ORDERS, 1) == expected.revenue
        assert summed_cells(client, app, keys.REFERRERS, 0) == expected.referrers
    finally:
        worker.stop()
        if producer.poll() is None:
            producer.kill()
        server.stop()
