"""`clickstream import` against the session's Kafka and Redis: a month of history written in a
shuffled order, with broken lines among it, imported and processed by a worker: nothing is
late, and every number is the oracle's over the events in event-time order."""

from __future__ import annotations

import random
import time

import pytest
import redis

from clickstream.import_history import parsed
from clickstream.settings import load
from generator.config import GeneratorConfig
from generator.produce import partition_for
from generator.simulate import simulate
from serving import keys
from tests.rig import (
    Worker,
    clickstream,
    expectation,
    summed_cells,
    wait_processed,
)

pytestmark = pytest.mark.integration

# ~4,000 events over a month: a visit now and then, orders among them, duplicates
HISTORY = GeneratorConfig(
    seed=12, count=4_000, events_per_second=0.0015, duplicate_rate=0.02, out_of_order_rate=0,
    late_rate=0, malformed_rate=0, fraud_rate=0.0,
)  # fmt: skip
BROKEN = [b"{not json", b'{"schema": "click", "version": 99}', b'["a list"]']


def test_shuffled_history_is_imported_sorted_and_counted_like_a_live_run(pipeline_env, tmp_path):
    env = pipeline_env  # no ticks: each partition's watermark is its newest event's time
    settings = load(env, dotenv=None)
    emissions = list(simulate(HISTORY))
    span = emissions[-1].emit_at_ms - emissions[0].emit_at_ms
    assert span > 20 * 86_400_000, "a month of history"
    shuffled = list(emissions)
    random.Random(3).shuffle(shuffled)
    values = [e.value for e in shuffled]
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join([*values[:100], *BROKEN, *values[100:]]) + b"\n")

    checked = clickstream(env, "import", str(path), "--dry-run")
    assert checked.returncode == 0, checked.stderr
    assert "rejected 3" in checked.stdout and "out of event-time order (sorted)" in checked.stdout
    assert "imported" not in checked.stdout

    imported = clickstream(env, "import", str(path))
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert "record timestamps: the import time" in imported.stdout
    assert f"imported {len(emissions)} events" in imported.stdout
    assert (tmp_path / "history.jsonl.rejected.jsonl").read_bytes().count(b"\n") == 3

    # the oracle's input: the events as the import sends them, by event time, stable
    now_ms = round(time.time() * 1000)
    topics = {"clicks": settings.clicks_topic, "orders": settings.orders_topic}
    partitions = list(range(settings.partitions))
    lines = []
    for index, emission in enumerate(shuffled):
        stream, key, time_ms, value = parsed(index, emission.value, None, now_ms)
        lines.append(
            (time_ms, index,
             {"topic": topics[stream], "partition": partition_for(key.encode(), partitions),
              "key": key, "value": value.decode(), "timestamp_ms": now_ms,
              "label": emission.label})
        )  # fmt: skip
    expected = expectation(settings, [line for _, _, line in sorted(lines, key=lambda x: x[:2])])
    assert not expected.late

    worker = Worker(env, tmp_path / "worker.log").start()
    client = redis.Redis.from_url(settings.redis)
    try:
        wait_processed(client, settings, expected, alive=worker.alive)
    finally:
        worker.stop()
    app = settings.app_id
    for stream in ("clicks", "orders"):
        counters = client.hgetall(keys.pipeline(app, stream))
        late = sum(int(v) for k, v in counters.items() if k.endswith(b"|late"))
        assert late == 0, f"{stream}: sorted history has no late event"
    # Redis keeps the panes of the newest day (the retention, by event time)
    newest = max(time_ms for time_ms, _, _ in lines)
    keep_from = newest - 86_400_000 - (newest - 86_400_000) % 60_000
    kept = {w: n for w, n in expected.page_views.items() if w[0] >= keep_from}
    assert kept and summed_cells(client, app, keys.PAGE_VIEWS, 0) == kept
