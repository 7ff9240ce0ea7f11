"""On real Kafka and Redis: after a burst that spans event time faster than wall time (a backfill),
with every partition then quiet, ticks move each stream's watermarks at wall speed, and the last
window has closed on every partition once wall time has covered the event time from the last
event to the window's end + grace, plus idle + two tick rounds + a commit (+ 2 s of margin)
(tables/event_clock.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import pairwise

import pytest
import redis

from generator.config import GeneratorConfig
from serving import keys
from tests.rig import processed, produce_and_expect, tumbling_results, wait_until

pytestmark = pytest.mark.integration

IDLE_S, GRACE_S, WINDOW_S, COMMIT_S = 2, 5, 10, 1.0
ROUND_S = max(IDLE_S / 2, 0.25)  # engine/topology.py's tick timer
WATCH_S = 24  # wall time watched once everything is processed
# 61 s of event time, sent as fast as the producer goes, with no faults; the last event comes
# early in its window (at 0:01:00.6), so that window closes some 14 s of event time later
BACKFILL = GeneratorConfig(
    seed=5,
    count=3_300,
    events_per_second=100,
    duplicate_rate=0,
    out_of_order_rate=0,
    late_rate=0,
    malformed_rate=0,
    fraud_rate=0,
)


@pytest.fixture(autouse=True)
def quick_ticks(pipeline_env):
    pipeline_env.update(
        CLICKSTREAM_IDLE_SECONDS=str(IDLE_S),
        CLICKSTREAM_GRACE_SECONDS=str(GRACE_S),
        CLICKSTREAM_WINDOW_SECONDS=str(WINDOW_S),
        CLICKSTREAM_HOP_SECONDS=str(WINDOW_S),
        CLICKSTREAM_COMMIT_SECONDS=str(COMMIT_S),
    )


@dataclass(frozen=True)
class Sample:
    at: float  # wall seconds (monotonic)
    lowest_ms: int  # the stream's lowest partition watermark in Redis


def watermarks(client: redis.Redis, app: str, stream: str, partitions: int) -> list[int]:
    """Each partition's watermark in Redis (-1: none yet)."""
    fields = client.hgetall(keys.pipeline(app, stream))
    marks = [fields.get(keys.field(p, "watermark_ms").encode()) for p in range(partitions)]
    return [int(m) if m is not None else -1 for m in marks]


def wall_speed(samples: list[Sample]) -> float:
    """Event time gained per wall second between the first and the last change seen."""
    known = [s for s in samples if s.lowest_ms >= 0]  # every partition has a time
    changes = [b for a, b in pairwise(known) if b.lowest_ms > a.lowest_ms]
    assert len(changes) >= 3, "too few ticks to measure"
    first, last = changes[0], changes[-1]
    return (last.lowest_ms - first.lowest_ms) / 1000 / (last.at - first.at)


def test_after_a_backfill_quiet_partitions_run_at_wall_speed_and_close_the_last_window(
    settings, start_worker, redis_server, tmp_path
):
    expected = produce_and_expect(settings, BACKFILL, tmp_path)
    client = redis.Redis.from_url(redis_server.url)
    app, partitions = settings.app_id, settings.partitions
    worker = start_worker()
    total = sum(expected.messages.values())
    wait_until(
        lambda: processed(client, app, "clicks") + processed(client, app, "orders") == total,
        within=60,
        why="the backfill processed",
        alive=worker.alive,
    )
    done_at = time.monotonic()  # at or after the last event's arrival
    # E: the last clicks event time (no ticks yet: the worker had events until now)
    highest_ms = max(watermarks(client, app, "clicks", partitions))
    last_ms = highest_ms - highest_ms % settings.window_ms  # the last window's start
    closes_at_ms = last_ms + settings.window_ms + settings.grace_ms

    samples: dict[str, list[Sample]] = {"clicks": [], "orders": []}
    closed_at = None
    while time.monotonic() < done_at + WATCH_S:
        assert worker.alive()
        for stream, seen in samples.items():
            lowest = min(watermarks(client, app, stream, partitions))
            seen.append(Sample(time.monotonic(), lowest))
        if closed_at is None and samples["clicks"][-1].lowest_ms >= closes_at_ms:
            closed_at = samples["clicks"][-1].at
        time.sleep(0.05)

    for stream, seen in samples.items():
        assert wall_speed(seen) >= 0.85, stream  # 1.0 by the rule; the old clock ran at ~0.67
    # the last window closed on every partition by its end + grace in event time after E, plus
    # the wait for idleness, the tick rounds and the commit that shows it (and a margin)
    allowed = (closes_at_ms - highest_ms) / 1000 + IDLE_S + 2 * ROUND_S + COMMIT_S + 2
    assert closed_at is not None and closed_at - done_at <= allowed
    results = tumbling_results(settings)  # emitted before the commit that showed the watermark
    last_window = {k: v for k, v in expected.windows.items() if k[:2] == ("clicks", last_ms)}
    assert last_window and {k: results.get(k) for k in last_window} == last_window
