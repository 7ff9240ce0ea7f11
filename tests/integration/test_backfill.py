"""On real Kafka and Redis (issue 10, section 4): a backfill of sparse history, a month of event
time with a few thousand events, produced in event-time order before a worker with ticks on
starts. Black box: the generator's events go into the input topics, and only derived topics
(window results, window totals, late events) and Redis's processed counters are read.

- Every non-empty window (tumbling and hopping, clicks and orders) has exactly the oracle's
  result from each source partition with data in it and exactly one total, equal to the
  oracle's; every window with a total has its funnel, within the sketch's bound; no window
  without data gets anything; nothing is late.
- The window results number the non-empty (window, partition) pairs, plus progress records
  that do not grow with the elapsed event time (a month of 10 s windows, ~260,000).
- Once the worker has consumed the backfill, each window's results and total are out within
  the event time from its stream's last event to the window's end + grace, plus idle + two
  tick rounds + a commit per processor + a margin (tables/event_clock.py's bound), when the
  input's end left it open (ticks close it); a window the backfill's own events closed must
  only come out. A funnel needs both streams: input has stopped, so the same bound runs from
  the input's last event, whichever stream had it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from itertools import pairwise

import orjson
import pytest
import redis
from aiokafka import AIOKafkaConsumer

from agents.window_results import RESULT_FIELDS
from clickstream.settings import Settings
from generator.config import GeneratorConfig
from streams.eventtime import parse_timestamp
from tests.oracle import hopping, hopping_users, totals
from tests.rig import (
    expectation,
    hopping_results,
    processed,
    produce_lines,
    read_to_end,
    tumbling_results,
    wait_until,
    within_sketch_error,
)

pytestmark = pytest.mark.integration

DAYS = 30
IDLE_S, GRACE_S, WINDOW_S, HOP_S, GAP_S, COMMIT_S = 1, 5, 10, 20, 10, 1.0
ROUND_S = max(IDLE_S / 2, 0.25)  # engine/topology.py's tick timer
MARGIN_S = 4.0  # the combiner catching up on the backfill's parts, and this test's polling
# each processor sends in its commit step: one commit for the parts, one for the totals
SLACK_S = IDLE_S + 2 * ROUND_S + 2 * COMMIT_S + MARGIN_S  # beyond the event time still to run
# a shared machine can stall the worker for seconds (CI saw a window 0.4 s past SLACK_S); a
# clock ticking slower than the wall still overruns this on the last session's window (~29 s)
STALL_S = SLACK_S
# ~5,500 records over 30.5 days (a visit every ~40 minutes of event time) in event-time order:
# nothing sent late or out of order, nothing malformed; duplicates (the same bytes again, up
# to 5 s later), legacy orders and fraud visits kept, as a real history has them
SPARSE_MONTH = GeneratorConfig(
    seed=10,
    duration_s=(DAYS + 0.5) * 86_400,
    events_per_second=0.002,
    duplicate_rate=0.01,
    out_of_order_rate=0,
    late_rate=0,
    malformed_rate=0,
)


@pytest.fixture(autouse=True)
def backfill_env(pipeline_env):
    pipeline_env.update(
        CLICKSTREAM_IDLE_SECONDS=str(IDLE_S),
        CLICKSTREAM_GRACE_SECONDS=str(GRACE_S),
        CLICKSTREAM_WINDOW_SECONDS=str(WINDOW_S),
        CLICKSTREAM_HOP_SECONDS=str(HOP_S),
        CLICKSTREAM_SESSION_GAP_SECONDS=str(GAP_S),
        CLICKSTREAM_COMMIT_SECONDS=str(COMMIT_S),
    )


class Tail:
    """Every record of some topics from their start, by id, with the wall time (monotonic) it
    was first seen; read by a thread of its own while the test waits."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.bootstrap, self.topics = bootstrap, topics
        self.seen: dict[str, tuple[float, dict]] = {}  # id -> (first seen at, record)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._read()), daemon=True)

    def __enter__(self) -> Tail:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _read(self) -> None:
        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            metadata_max_age_ms=1_000,
        )
        await consumer.start()
        try:
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=100)
                now = time.monotonic()
                for messages in batch.values():
                    for message in messages:
                        record = orjson.loads(message.value)
                        self.seen.setdefault(record["id"], (now, record))
        finally:
            await consumer.stop()


def event_times(settings: Settings, lines: list[dict]) -> dict[str, list[int]]:
    """stream -> the event times of its records in produce order (copies sent again left out)."""
    topics = {settings.clicks_topic: "clicks", settings.orders_topic: "orders"}
    times: dict[str, list[int]] = {"clicks": [], "orders": []}
    for line in lines:
        if line["label"]["fault"] != "duplicate":
            times[topics[line["topic"]]].append(line["label"]["occurred_at_ms"])
    return times


def test_a_sparse_month_backfilled_gives_each_window_once_exactly_and_closes_the_last_in_time(
    settings, start_worker, redis_server, tmp_path
):
    lines = produce_lines(settings, SPARSE_MONTH, tmp_path / "events.jsonl")
    expected = expectation(settings, lines)
    size_ms, hop_ms, grace_ms = settings.window_ms, settings.hop_seconds * 1000, settings.grace_ms
    times = event_times(settings, lines)
    first_ms = min(min(ts) for ts in times.values())
    last_ms = {stream: max(ts) for stream, ts in times.items()}  # each stream's last event
    input_ends_ms = max(last_ms.values())
    span_windows = (input_ends_ms - first_ms) // size_ms
    assert (input_ends_ms - first_ms) / 86_400_000 >= DAYS
    assert all(a <= b for ts in times.values() for a, b in pairwise(ts))  # event-time order
    assert not expected.late and not expected.dead_letters and expected.duplicates

    hops = hopping(expected.windows, size_ms, hop_ms)
    parts = {"tumbling": expected.windows, "hopping": hops}  # (stream, start, partition) -> ..
    want = {kind: totals(windows) for kind, windows in parts.items()}  # (stream, start) -> ..
    assert len(want["tumbling"]) * 20 < span_windows  # sparse: under 5% of the windows used
    users = {"tumbling": expected.users, "hopping": hopping_users(expected.users, size_ms, hop_ms)}
    length_ms = {"tumbling": size_ms, "hopping": hop_ms}

    def due(kind: str, start: int, from_ms: int) -> float:
        """Seconds after the input is consumed by which a window must be out: its end + grace
        in event time after `from_ms`, plus the slack."""
        return max(0, start + length_ms[kind] + grace_ms - from_ms) / 1000 + SLACK_S

    # id -> seconds after the input is consumed by which that record must be out
    due_parts = {
        f"{stream}/{kind}/{start}/p{partition}": due(kind, start, last_ms[stream])
        for kind, windows in parts.items()
        for stream, start, partition in windows
    }
    due_totals = {
        f"{stream}/{kind}/{start}": due(kind, start, last_ms[stream])
        for kind, windows in want.items()
        for stream, start in windows
    }
    due_funnels = {
        f"funnel/{kind}/{start}": due(kind, start, input_ends_ms)
        for kind, windows in want.items()
        for _, start in windows
    }
    due_all = {**due_parts, **due_totals, **due_funnels}

    client = redis.Redis.from_url(redis_server.url)
    app, messages = settings.app_id, sum(expected.messages.values())
    results_topic, totals_topic = (
        settings.topics.window_results.name,
        settings.topics.window_totals.name,
    )
    started_at = time.monotonic()
    worker = start_worker()
    wait_until(
        lambda: processed(client, app, "clicks") + processed(client, app, "orders") == messages,
        within=90,
        why="the backfill consumed",
        alive=worker.alive,
    )
    done_at = time.monotonic()  # at or after the worker consumed the last input
    with Tail(settings.bootstrap, [results_topic, totals_topic]) as tail:
        deadline = done_at + max(due_all.values()) + STALL_S
        while not due_all.keys() <= tail.seen.keys() and time.monotonic() < deadline:
            assert worker.alive(), "the worker died"
            time.sleep(0.25)
        seen = dict(tail.seen)

    # every non-empty window's result from each partition with data in it, exactly, once
    assert tumbling_results(settings) == expected.windows
    assert hopping_results(settings) == hops
    results = [orjson.loads(r.value) for r in read_to_end(settings.bootstrap, results_topic)]
    kinds = Counter(r["kind"] for r in results)
    assert kinds["tumbling"] + kinds["hopping"] == len(due_parts) + len(expected.attributed)
    # progress: one per batch or tick round that passed a close, to each results partition;
    # bounded by the data and the wall time ticked, never one per window of the month that
    # passed without data (~260,000 windows per source partition)
    assert kinds["progress"] <= len(due_parts), kinds
    assert kinds["progress"] * 100 < span_windows * settings.partitions, kinds
    assert read_to_end(settings.bootstrap, settings.topics.late_events.name) == []
    # one total per non-empty window, equal to the oracle's, each sent once, and no other
    total_records = read_to_end(settings.bootstrap, totals_topic)
    assert len(total_records) == len({r.key for r in total_records})
    got = {
        (t["kind"], t["stream"], parse_timestamp(t["start"])): t
        for t in (orjson.loads(r.value) for r in total_records)
        if t["stream"] != "funnel" and t.keys() - RESULT_FIELDS
    }
    assert got.keys() == {(kind, *window) for kind, windows in want.items() for window in windows}
    for (kind, stream, start), total in got.items():
        counts = want[kind][stream, start]
        assert {m: total[m] for m in counts} == counts, (kind, stream, start)
    # each funnel that came counts the oracle's users per step, within the sketch's bound
    for funnel in (orjson.loads(r.value) for r in total_records):
        if funnel["stream"] == "funnel":
            start = parse_timestamp(funnel["start"])
            for step in funnel["steps"]:
                exact = len(users[funnel["kind"]].get((start, step["step"]), ()))
                assert within_sketch_error(step["users"], exact), (funnel["id"], step)

    def out_after(record_id: str) -> float:
        return round(seen[record_id][0] - done_at, 1)

    last_session_ms = max(s[2] for s in expected.sessions) + GAP_S * 1000  # it counts there
    last_session = f"clicks/tumbling/{last_session_ms - last_session_ms % size_ms}"
    last_order = f"orders/tumbling/{last_ms['orders'] - last_ms['orders'] % size_ms}"
    figures = {
        "events": dict(expected.messages),
        "days": round((input_ends_ms - first_ms) / 86_400_000, 1),
        "last order before the input's end (s)": (input_ends_ms - last_ms["orders"]) / 1000,
        "non-empty windows": {k: Counter(stream for stream, _ in w) for k, w in want.items()},
        "window results": dict(kinds),
        "totals and funnels": len(total_records),
        "consumed after start (s)": round(done_at - started_at, 1),
        "last session window: total out after, due by (s)": (
            out_after(last_session) if last_session in seen else None,
            due_totals[last_session],
        ),
        "last order window: total out after, due by (s)": (
            out_after(last_order) if last_order in seen else None,
            due_totals[last_order],
        ),
    }
    print(figures)
    # every window closed, and in time: its result, its total, its funnel
    missing = sorted(due_all.keys() - seen.keys())
    # timed: the windows left open by the input's end, closed by ticks (the clock's bound); the
    # others the backfill's own events closed, and when those come out is the combiner's
    # throughput on a shared machine, not a rule: they must only all come
    timed = {i for i, due_s in due_all.items() if due_s > SLACK_S}
    assert len(timed) >= 2, "the last order's and the last session's windows are timed"
    late = {i: (out_after(i), round(due_all[i], 1)) for i in timed & seen.keys()}
    late = {i: when for i, when in late.items() if when[0] > when[1] + STALL_S}
    worst = sorted(late.items(), key=lambda item: item[1][1] - item[1][0])[:3]
    by_record = Counter(
        "result" if i in due_parts else "funnel" if i in due_funnels else "total" for i in late
    )
    assert not missing and not late, (
        f"{len(missing)} not out {deadline - done_at:.0f} s after the backfill was consumed "
        f"(first: {missing[:3]}); out later than due: {dict(by_record)} (worst, as id: (s out "
        f"after, s due): {worst}); {figures}"
    )
