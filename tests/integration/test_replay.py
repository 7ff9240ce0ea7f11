"""Replay into a shadow version, diff it against live, promote it, retire it: the real commands
against the session's Kafka and Redis.

1. A live worker with ticks takes faulty traffic (duplicates, out of order, late, malformed)
   and a SIGKILL. While it keeps running, `clickstream replay` recomputes the inputs into a
   shadow (two workers). `clickstream diff` says identical for every metric, live's own
   output has not changed, and the inputs end where the producer left them. Promote and
   retire then switch the served version and leave nothing of the shadow in Kafka or Redis.
2. A replay with a longer grace period differs from live exactly where the oracle says the
   grace changes the result.
3. A month of sparse history imported by live, replayed: identical, every window the oracle's.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import replace

import orjson
import pytest
import redis
from aiokafka.admin import AIOKafkaAdminClient

from clickstream.diff import compare, read_version
from clickstream.replay import version_settings
from clickstream.settings import Settings, load
from serving import keys
from streams.late_events import EVENT_LATE
from tests.integration.test_backfill import SPARSE_MONTH
from tests.integration.test_own_topics import end_offsets
from tests.rig import (
    FAULTY_TRAFFIC,
    SMALL_WINDOWS,
    Worker,
    clickstream,
    expectation,
    final_results,
    processed,
    produce_lines,
    session_summaries,
    tumbling_results,
    wait_until,
)

pytestmark = pytest.mark.integration

TRAFFIC = replace(
    FAULTY_TRAFFIC, seed=41, count=6_000, late_by_ms=(20_000, 40_000), fraud_rate=0.02
)


def both(client: redis.Redis, app_id: str) -> int:
    return processed(client, app_id, "clicks") + processed(client, app_id, "orders")


def outputs(settings: Settings) -> dict[str, dict[str, dict]]:
    """The version's derived records by metric and id (progress records left out)."""
    return read_version(settings)


def settle(settings: Settings, alive, quiet_s: float = 4, within: float = 120) -> None:
    """Until the version's results and sessions have not grown for `quiet_s` (ticks closed
    what they close; progress records go on)."""

    def closed() -> tuple[int, int]:
        results = final_results(settings.bootstrap, settings.topics.window_results.name)
        return sum(r["kind"] != "progress" for r in results.values()), len(
            session_summaries(settings)
        )

    deadline = time.monotonic() + within
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        assert alive(), "the live worker died"
        now = closed()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(1)
    raise AssertionError("live's output never settled")


def run_out(live: Settings, lines: list[dict], worker: Worker) -> None:
    """Until live has processed every line, its ticks have moved event time past every window,
    hopping window and session (hop + grace + gap), and its output has settled."""
    client = redis.Redis.from_url(live.redis)
    wait_until(
        lambda: both(client, live.app_id) >= len(lines),
        within=180, why="all processed", alive=worker.alive,
    )  # fmt: skip
    last_ms = max(line["timestamp_ms"] for line in lines)
    passed = last_ms + (live.hop_seconds + live.grace_seconds + live.session_gap_seconds + 2) * 1000
    wait_until(
        lambda: min(watermarks(client, live.app_id)) >= passed,
        within=120, why="ticks moved event time on", alive=worker.alive,
    )  # fmt: skip
    settle(live, worker.alive)


def watermarks(client: redis.Redis, app_id: str) -> list[int]:
    marks = [
        int(value)
        for stream in ("clicks", "orders")
        for name, value in client.hgetall(keys.pipeline(app_id, stream)).items()
        if name.endswith(b"|watermark_ms")
    ]
    return marks or [0]


def kafka_state(bootstrap: str) -> tuple[set[str], set[str]]:
    """(topics, consumer groups) of the cluster."""

    async def ask() -> tuple[set[str], set[str]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            groups = {group[0] for group in await admin.list_consumer_groups()}
            return set(await admin.list_topics()), groups
        finally:
            await admin.close()

    return asyncio.run(ask())


def test_a_replay_beside_a_running_live_is_identical_then_promoted_and_retired(
    pipeline_env, redis_server, tmp_path
):
    env = {**pipeline_env, **SMALL_WINDOWS, "CLICKSTREAM_IDLE_SECONDS": "1"}
    live = load(env, dotenv=None)
    client = redis.Redis.from_url(redis_server.url)
    lines = produce_lines(live, TRAFFIC, tmp_path / "events.jsonl")
    worker = Worker(env, tmp_path / "live.log").start()
    wait_until(
        lambda: both(client, live.app_id) >= len(lines) // 3,
        within=120, why="a third processed", alive=worker.alive,
    )  # fmt: skip
    worker.stop(signal.SIGKILL)
    worker = Worker(env, tmp_path / "live-again.log").start()
    try:
        run_out(live, lines, worker)
        before = outputs(live)
        inputs = end_offsets(
            live.bootstrap, [live.clicks_topic, live.orders_topic], live.partitions
        )
        assert sum(inputs.values()) == len(lines)

        shadow_id = f"{live.app_id}-v2"
        replayed = clickstream(env, "replay", "--app-id", shadow_id, "--workers", "2")
        assert replayed.returncode == 0, replayed.stderr[-3000:]
        assert f"replayed {len(lines)} records into {shadow_id}" in replayed.stdout

        report_path = tmp_path / "diff.json"
        diffed = clickstream(env, "diff", live.app_id, shadow_id, "--json", str(report_path))
        report = orjson.loads(report_path.read_bytes())
        assert diffed.returncode == 0, diffed.stdout
        assert report["identical"] is True
        metrics = report["metrics"]
        for name in ("results clicks tumbling", "results clicks hopping", "results orders "
                     "tumbling", "results attribution tumbling", "totals clicks tumbling",
                     "sessions", "late events", "dead letters", "scored orders"):  # fmt: skip
            assert metrics[name]["equal"] > 0, name
        assert "identical" in diffed.stdout
        assert outputs(live) == before, "the replay changed live's output"
        assert (
            end_offsets(live.bootstrap, [live.clicks_topic, live.orders_topic], live.partitions)
            == inputs
        )
    finally:
        worker.stop()

    shadow = version_settings(live, shadow_id, live.app_id)
    assert client.exists(keys.meta(shadow_id)) and client.exists(keys.pipeline(shadow_id, "clicks"))
    listed = clickstream(env, "versions")
    assert f"{shadow_id}: replayed" in listed.stdout

    promoted = clickstream(env, "promote", shadow_id)
    assert promoted.returncode == 0, promoted.stderr
    assert client.get(keys.active(live.app_id)) == shadow_id.encode()
    refused = clickstream(env, "retire", shadow_id, "--yes")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "the version the dashboard serves" in refused.stderr
    refused = clickstream(env, "retire", live.app_id, "--yes")
    assert (
        refused.returncode == 2
        and f"{shadow_id} follows {live.app_id}'s time log" in refused.stderr
    )

    assert clickstream(env, "promote", live.app_id).returncode == 0
    retired = clickstream(env, "retire", shadow_id, "--yes")
    assert retired.returncode == 0, retired.stderr
    topics, groups = kafka_state(live.bootstrap)
    assert not {t for t in topics if t.startswith(f"{shadow_id}-")}
    assert shadow_id not in groups and live.app_id in groups
    assert not client.keys(f"{shadow_id}:*")
    assert not list(shadow.var_dir.glob(f"worker-*/{shadow_id}"))
    assert client.exists(keys.meta(live.app_id)), "live's keys stay"
    assert {spec.name for spec in live.topics.owned(live.app_id)} <= topics


def test_a_replay_with_a_longer_grace_differs_where_the_oracle_says(pipeline_env, tmp_path):
    env = {**pipeline_env, **SMALL_WINDOWS}  # no ticks: every window is closed by events
    live = load(env, dotenv=None)
    lines = produce_lines(live, TRAFFIC, tmp_path / "events.jsonl")
    client = redis.Redis.from_url(live.redis)
    worker = Worker(env, tmp_path / "live.log").start()
    try:
        wait_until(
            lambda: both(client, live.app_id) >= len(lines),
            within=180, why="all processed", alive=worker.alive,
        )  # fmt: skip
        time.sleep(3)  # its last commit
    finally:
        worker.stop()

    shadow_id = f"{live.app_id}-grace"
    longer = {**env, "CLICKSTREAM_GRACE_SECONDS": "25"}
    replayed = clickstream(longer, "replay", "--app-id", shadow_id)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    diffed = clickstream(env, "diff", live.app_id, shadow_id)
    assert diffed.returncode == 1, diffed.stdout  # not identical

    versions = [read_version(version_settings(live, v, v)) for v in (live.app_id, shadow_id)]
    for records in versions:  # late events only (order facts after their attribution closed
        late = records.get("late events", {})  # are not the oracle's)
        records["late events"] = {i: v for i, v in late.items() if v["reason"] == EVENT_LATE}
    found = compare(*versions)
    short = expectation(live, lines)
    long = expectation(load(longer, dotenv=None), lines)
    for stream in ("clicks", "orders"):
        windows = short.final_results.keys() | long.final_results.keys()
        changed = {
            w
            for w in windows
            if w[0] == stream and short.final_results.get(w) != long.final_results.get(w)
        }
        m = found[f"results {stream} tumbling"]
        assert changed, f"the grace changes some {stream} window"
        assert m.different + m.only_live + m.only_shadow == len(changed), stream
    late = found["late events"]
    assert late.only_shadow == 0  # a longer grace makes nothing late that was not
    assert late.only_live == sum(short.late.values()) - sum(long.late.values())
    assert late.only_live > 0


def test_a_replay_of_a_sparse_month_is_identical_and_gives_every_window(pipeline_env, tmp_path):
    """Old data: a month of sparse history, produced in event-time order and imported by a live
    worker with ticks, replayed: the same as live, and every non-empty window's result the
    oracle's (event time only: nothing expires by the wall clock)."""
    env = {
        **pipeline_env,
        **SMALL_WINDOWS,
        "CLICKSTREAM_SESSION_GAP_SECONDS": "10",
        "CLICKSTREAM_IDLE_SECONDS": "1",
    }
    live = load(env, dotenv=None)
    lines = produce_lines(live, SPARSE_MONTH, tmp_path / "events.jsonl")
    expected = expectation(live, lines)
    worker = Worker(env, tmp_path / "live.log").start()
    try:
        run_out(live, lines, worker)
        shadow_id = f"{live.app_id}-month"
        replayed = clickstream(env, "replay", "--app-id", shadow_id)
        assert replayed.returncode == 0, replayed.stderr[-3000:]
        diffed = clickstream(env, "diff", live.app_id, shadow_id)
        assert diffed.returncode == 0, diffed.stdout
    finally:
        worker.stop()
    shadow = version_settings(live, shadow_id, live.app_id)
    got = tumbling_results(shadow)
    assert got == {w: r for w, r in expected.windows.items() if w in got}
    assert got.keys() == expected.windows.keys()
