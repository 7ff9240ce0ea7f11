"""Two workers in one consumer group share the partitions; killing one mid-stream moves its
partitions (and their tables, recovered from the changelog) to the other, and the combined
results still equal the oracle exactly."""

from __future__ import annotations

import asyncio
import re
import signal
import urllib.request
from dataclasses import replace

import pytest
import redis
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from serving import keys
from tests.rig import (
    FAULTY_TRAFFIC,
    Worker,
    attribution_results,
    expectation,
    processed,
    produce_lines,
    summed_cells,
    tumbling_results,
    wait_until,
)

pytestmark = pytest.mark.integration

FIRST_HALF = replace(FAULTY_TRAFFIC, seed=314, count=30_000)
# the traffic that follows: sent only after one worker is gone
SECOND_HALF = replace(FIRST_HALF, seed=315, start_ms=FIRST_HALF.start_ms + 300_000)


def metrics_of(worker: Worker) -> str:
    port = worker.env["CLICKSTREAM_WORKER_PORT"]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return str(answer.read().decode())
    except OSError:
        return ""


def partitions_of(worker: Worker) -> set[str]:
    """The clicks partitions this worker has processed, from its Prometheus metrics."""
    found = re.findall(
        r'clickstream_partition_events\{[^}]*partition="(\d+)"[^}]*stream="clicks"',
        metrics_of(worker),
    )
    return set(found)


def group_state(bootstrap: str, group: str) -> tuple[str, int]:
    """(state, members) of a consumer group, as the broker sees it."""

    async def describe() -> tuple[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            (response,) = await admin.describe_consumer_groups([group])
            _, _, state, _, _, members, *_ = response.groups[0]
            return state, len(members)
        except GroupCoordinatorNotAvailableError:  # the group's coordinator is still starting
            return "Unknown", 0
        finally:
            await admin.close()

    return asyncio.run(describe())


def test_two_workers_share_partitions_and_survive_losing_one(
    settings, start_worker, redis_server, tmp_path
):
    client = redis.Redis.from_url(redis_server.url)
    app = settings.app_id
    # both in the group before any data, else the first could finish it all alone
    first, second = start_worker(), start_worker()
    wait_until(
        lambda: group_state(settings.bootstrap, app) == ("Stable", 2),
        within=120,
        why="both workers in the group",
        alive=lambda: first.alive() and second.alive(),
    )
    lines = produce_lines(settings, FIRST_HALF, tmp_path / "first.jsonl")
    first_total = expectation(settings, lines).messages[settings.clicks_topic]
    wait_until(
        lambda: (
            processed(client, app, "clicks") == first_total
            and partitions_of(first)
            and partitions_of(second)
        ),
        within=240,
        why="both workers processed partitions of their own",
        alive=lambda: first.alive() and second.alive(),
    )
    second.stop(signal.SIGKILL)  # its partitions and their tables move to the first worker
    lines += produce_lines(settings, SECOND_HALF, tmp_path / "second.jsonl")
    expected = expectation(settings, lines)
    wait_until(
        lambda: all(
            processed(client, app, stream) == expected.messages[topic]
            for stream, topic in (
                ("clicks", settings.clicks_topic),
                ("orders", settings.orders_topic),
            )
        ),
        within=300,
        why="the survivor finished every partition",
        alive=first.alive,
    )
    assert len(partitions_of(first)) == settings.partitions
    assert summed_cells(client, app, keys.PAGE_VIEWS, 0) == expected.page_views
    assert tumbling_results(settings) == expected.final_results
    attributed = attribution_results(settings)  # those both streams have passed: the oracle's
    assert attributed and attributed == {k: expected.attributed[k] for k in attributed}
