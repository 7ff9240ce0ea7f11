"""End to end on real Kafka and Redis: generator -> worker -> Redis and the window results equal
the oracle (every metric; unique users within the sketch's bound), bad events are dead letters
with reasons, late events are recorded, idle partitions close their last windows by ticks, and
the worker keeps going."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections import Counter
from dataclasses import replace

import orjson
import pytest
import redis

from clickstream.settings import load
from serving import keys, read_model
from tests.oracle import hopping, totals
from tests.rig import (
    FAULTY_TRAFFIC,
    attribution_results,
    hopping_results,
    merged_uniques,
    produce_and_expect,
    read_topic,
    session_summaries,
    summed_cells,
    tumbling_results,
    wait_processed,
    wait_until,
    window_totals,
    within_sketch_error,
)

pytestmark = pytest.mark.integration


# a quarter of the shared faulty traffic, with more late events and fraud in it
FAULTY = replace(
    FAULTY_TRAFFIC,
    seed=20261126,
    count=15_000,
    events_per_second=50,
    late_rate=0.02,
    fraud_rate=0.03,
)


@pytest.fixture
def ticking_env(pipeline_env):
    # all data is produced first, so ticks come last; short windows, so they close soon after
    pipeline_env.update(
        CLICKSTREAM_IDLE_SECONDS="1",
        CLICKSTREAM_WINDOW_SECONDS="10",
        CLICKSTREAM_HOP_SECONDS="30",
        CLICKSTREAM_GRACE_SECONDS="5",
        CLICKSTREAM_SESSION_GAP_SECONDS="20",
    )
    return pipeline_env


def test_worker_results_equal_the_oracle(ticking_env, start_worker, redis_server, tmp_path):
    pipeline_env = ticking_env
    settings = load(pipeline_env, dotenv=None)
    expected = produce_and_expect(settings, FAULTY, tmp_path)
    assert expected.duplicates and expected.late and expected.dead_letters  # faults exercised

    worker = start_worker()
    client = redis.Redis.from_url(redis_server.url)
    app = settings.app_id
    wait_processed(client, settings, expected, alive=worker.alive)

    assert summed_cells(client, app, keys.PAGE_VIEWS, 0) == expected.page_views
    assert summed_cells(client, app, keys.CLICK_TYPES, 0) == expected.click_types
    assert summed_cells(client, app, keys.REFERRERS, 0) == expected.referrers
    assert summed_cells(client, app, keys.ORDERS, 0) == expected.orders
    assert summed_cells(client, app, keys.ORDERS, 1) == expected.revenue
    uniques = merged_uniques(client, app)
    assert uniques.keys() == expected.users.keys()
    for window_sketch, users in expected.users.items():
        assert within_sketch_error(uniques[window_sketch], len(users)), window_sketch

    # idle partitions get ticks, so every window closes and its result is emitted, once per
    # partition, with exactly the oracle's counts
    hops = hopping(expected.windows, settings.window_ms, settings.hop_seconds * 1000)
    wait_until(
        lambda: (
            len(tumbling_results(settings)) >= len(expected.windows)
            and len(hopping_results(settings)) >= len(hops)
        ),
        within=90,
        why="every window closed by ticks",
        alive=worker.alive,
    )
    assert tumbling_results(settings) == expected.windows
    assert hopping_results(settings) == hops  # each the sum of its panes

    # one total per window with data, over all partitions, with the exact top-K pages and
    # referrers, and no other
    summed = totals(expected.windows)
    wait_until(
        lambda: summed.keys() <= window_totals(settings).keys(),
        within=60,
        why="a total for every window",
        alive=worker.alive,
    )
    totals_by_window = window_totals(settings)
    assert {w for w in totals_by_window if w[0] != "funnel"} == summed.keys()
    for (stream, start), total in totals_by_window.items():
        if stream == "funnel":
            continue
        assert {m: total[m] for m in summed[stream, start]} == summed[stream, start]
        views = summed[stream, start].get("pageviews", {})
        ranked = sorted(views.items(), key=lambda item: (-item[1], item[0]))[: settings.top_k]
        assert [(t["name"], t["count"]) for t in total.get("top_pages", [])] == ranked
    assert any(len(t.get("top_pages", [])) == settings.top_k for t in totals_by_window.values())
    # and the funnel of every window with a total, within the sketch's bound
    funnels = {s: t["steps"] for (st, s), t in totals_by_window.items() if st == "funnel"}
    assert funnels.keys() == {start for _, start in summed}
    for start in funnels:
        for step in funnels[start]:
            exact = len(expected.users.get((start, step["step"]), ()))
            assert within_sketch_error(step["users"], exact), (start, step)
    # and every user session is summarised once, as the oracle sessionises the same clicks,
    # and counted in Redis in the window it ended in
    assert session_summaries(settings) == expected.sessions
    ended: Counter = Counter()
    for (_, start, _), result in expected.windows.items():
        ended[start, "ended"] += result.get("sessions", {}).get("ended", {}).get("sessions", 0)
    wait_until(
        lambda: summed_cells(client, app, keys.SESSIONS, 0) == +ended,
        within=10,
        why="sessions in Redis as the oracle counts them",
    )
    assert any(s[3] > 1 for s in expected.sessions) and any(s[3] == 1 for s in expected.sessions)

    # every order counts for the entry referrer of its session once both streams passed its
    # window (ticks move both), as the oracle joins them; in Redis summed over partitions
    wait_until(
        lambda: len(attribution_results(settings)) >= len(expected.attributed),
        within=60,
        why="every order attributed",
        alive=worker.alive,
    )
    assert attribution_results(settings) == expected.attributed
    hosts = {name.split("|")[0] for window in expected.attributed.values() for name in window}
    assert {"(direct)", "(no session)"} < hosts  # and referrer hosts besides
    attributed: Counter = Counter()
    for (start, _), window in expected.attributed.items():
        for name, counts in window.items():
            attributed[start, name] += counts["orders"]
    assert summed_cells(client, app, keys.ATTRIBUTED, 0) == attributed

    dead = read_topic(
        settings.bootstrap, settings.topics.dead_letters.name, sum(expected.dead_letters.values())
    )
    reasons = Counter(dict(record.headers)["reason"].decode() for record in dead)
    assert reasons == expected.dead_letter_reasons
    projected: Counter = Counter()  # and the per-reason counts the read model serves
    for row in read_model.pipeline(client, app):
        projected.update(row.dead_letter_reasons)
    assert projected == expected.dead_letter_reasons
    for record in dead:
        headers = dict(record.headers)
        assert {"detail", "source_topic", "source_partition", "source_offset"} <= headers.keys()

    late = read_topic(
        settings.bootstrap, settings.topics.late_events.name, sum(expected.late.values())
    )
    assert len(late) == sum(expected.late.values())
    assert len({orjson.loads(record.value)["id"] for record in late}) == len(late)
    assert worker.alive(), "bad input must never stop the worker"

    port = worker.env["CLICKSTREAM_WORKER_PORT"]
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    late_clicks = expected.late[settings.clicks_topic]
    assert b"clickstream_partition_events{" in metrics and b"_messages_received_total" in metrics
    assert (
        sum(
            float(line.rsplit(b" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith(b'clickstream_partition_events{fate="late"') and b'"clicks"' in line
        )
        == late_clicks
    )

    shown = subprocess.run(
        [sys.executable, "-m", "clickstream", "dead-letters", "--last", "100000"],
        env={**os.environ, **pipeline_env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"{len(dead)} dead letters in" in shown.stderr
    assert all(reason in shown.stdout for reason in expected.dead_letter_reasons)
