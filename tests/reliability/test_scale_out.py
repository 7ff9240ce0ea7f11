"""Two workers in one consumer group share the partitions; killing one mid-stream moves its
partitions (and their tables, recovered from the changelog) to the other, and the combined
results still equal the oracle exactly."""

from __future__ import annotations

import re
import signal
import urllib.request

import pytest
import redis

from generator.config import GeneratorConfig
from serving import keys
from tests.rig import Worker, processed, produce_and_expect, summed_cells, wait_until

pytestmark = pytest.mark.integration

WORKLOAD = GeneratorConfig(
    seed=314,
    count=60_000,
    events_per_second=100,
    duplicate_rate=0.03,
    out_of_order_rate=0.08,
    late_rate=0.01,
    late_by_ms=(95_000, 200_000),
    malformed_rate=0.01,
)


def partitions_of(worker: Worker) -> set[str]:
    """The clicks partitions this worker has processed, from its Prometheus metrics."""
    port = worker.env["CLICKSTREAM_WORKER_PORT"]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return set()
    found = re.findall(
        r'clickstream_partition_events\{[^}]*partition="(\d+)"[^}]*stream="clicks"', text
    )
    return set(found)


def test_two_workers_share_partitions_and_survive_losing_one(
    settings, start_worker, redis_server, tmp_path
):
    expected = produce_and_expect(settings, WORKLOAD, tmp_path)
    total = expected.messages[settings.clicks_topic]
    client = redis.Redis.from_url(redis_server.url)
    app = settings.app_id

    first, second = start_worker(), start_worker()
    wait_until(
        lambda: partitions_of(first) and partitions_of(second),
        within=240,
        why="both workers processing partitions of their own",
        alive=lambda: first.alive() and second.alive(),
    )
    second.stop(signal.SIGKILL)  # its partitions move to the first worker
    wait_until(
        lambda: processed(client, app, "clicks") == total,
        within=300,
        why="the survivor finished every partition",
        alive=first.alive,
    )
    assert len(partitions_of(first)) == settings.partitions
    assert summed_cells(client, app, keys.PAGE_VIEWS, 0) == expected.page_views
