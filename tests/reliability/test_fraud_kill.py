"""Fraud scoring on real Kafka: seeded traffic with fraud, duplicates, late and malformed
events; the worker SIGKILLed at random points and restarted; a new policy version published
through the control topic while it runs. Every accepted order is scored, each score, feature
and policy version equal to the oracle's over the logs (tests.fraud_oracle): the orders before
the version's effective time under version 1, those after under version 2. A scored order sent
again after a crash is the same record under the same id."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import replace

import orjson
import pytest
import redis

from fraud.features import FEATURES
from fraud.policy import DEFAULT_POLICY, load_policy
from serving import keys, read_model
from streams.eventtime import format_timestamp, parse_timestamp
from streams.fraud import SCORE_BUCKETS, score_bucket
from tests.fraud_oracle import expected_scores, released
from tests.rig import FAULTY_TRAFFIC, processed, produce_lines, read_to_end, wait_until

pytestmark = pytest.mark.integration

KILLS = 3
EVENT_SECONDS = 60  # of traffic, the policy's effective time 40 s in


@pytest.fixture(autouse=True)
def commit_often_with_ticks(pipeline_env):
    pipeline_env["CLICKSTREAM_COMMIT_SECONDS"] = "0.2"
    pipeline_env["CLICKSTREAM_IDLE_SECONDS"] = "1"  # the last orders are released by ticks


def test_sigkills_and_a_policy_change_while_running_leave_every_score_the_oracles(
    settings, start_worker, pipeline_env, redis_server, tmp_path
):
    effective_ms = round(time.time() * 1000) + 60_000
    traffic = replace(
        FAULTY_TRAFFIC,
        start_ms=effective_ms - 40_000,
        count=None,
        duration_s=EVENT_SECONDS,
        events_per_second=250,
        fraud_rate=0.15,
    )
    lines = produce_lines(settings, traffic, tmp_path / "events.jsonl")
    total = len(lines)
    client = redis.Redis.from_url(redis_server.url)
    app, rng = settings.app_id, random.Random(11)

    def done() -> int:
        return processed(client, app, "clicks") + processed(client, app, "orders")

    version_2 = tmp_path / "v2.toml"
    version_2.write_text(
        DEFAULT_POLICY.read_text()
        .replace("version = 1", "version = 2")
        .replace("bias = -5.0", "bias = -3.0")
    )
    for kill in range(KILLS):
        worker = start_worker()
        target = min(done() + rng.uniform(0.1, 0.25) * total, total)
        wait_until(lambda t=target: done() >= t, within=240, why=f"kill {kill}",
                   alive=worker.alive)  # fmt: skip
        if kill == 0:  # while it runs: every worker reads it from the control topic
            publish = subprocess.run(
                [sys.executable, "-m", "clickstream", "fraud", "policy", "publish",
                 str(version_2), "--effective", format_timestamp(effective_ms)],
                env={**os.environ, **pipeline_env}, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert publish.returncode == 0, publish.stderr
            assert "published policy version 2" in publish.stdout
        time.sleep(rng.uniform(0, 0.2))
        worker.stop(signal.SIGKILL)

    worker = start_worker()
    wait_until(lambda: done() == total, within=300, why="all processed", alive=worker.alive)
    topics = settings.topics
    policy = load_policy(DEFAULT_POLICY, FEATURES)

    def logs() -> dict:
        by: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
        for spec, ticks in (
            (topics.clicks, topics.clicks_ticks),
            (topics.orders, topics.orders_ticks),
            (topics.fraud_policy, topics.fraud_policy_ticks),
        ):
            for name in (spec.name, ticks.name):
                for record in read_to_end(settings.bootstrap, name):
                    by[name][record.partition].append(record)
        parts = range(settings.partitions)
        return {
            spec.name: (
                [sorted(by[spec.name][p], key=lambda r: r.offset) for p in parts],
                [sorted(by[ticks.name][p], key=lambda r: r.offset) for p in parts],
            )
            for spec, ticks in (
                (topics.clicks, topics.clicks_ticks),
                (topics.orders, topics.orders_ticks),
                (topics.fraud_policy, topics.fraud_policy_ticks),
            )
        }

    # the last orders wait for the policy log's ticks (wall clock + 10 s) to pass them
    want: dict = {}
    scored: dict[str, dict] = {}

    def all_scored() -> bool:
        nonlocal want
        want = expected_scores(released(logs(), settings.limits), policy, settings.partitions)
        for record in read_to_end(settings.bootstrap, topics.scored_orders.name):
            body = orjson.loads(record.value)
            assert scored.setdefault(body["event_id"], body) == body, body["event_id"]
        return scored.keys() >= want.keys()

    wait_until(all_scored, within=180, why="every order scored", alive=worker.alive)
    assert scored.keys() == want.keys()
    for event_id, body in scored.items():
        expect = want[event_id]
        assert body["features"] == expect["features"], event_id
        assert (body["score"], body["policy_version"]) == (expect["score"], expect["version"])
        if parse_timestamp(body["occurred_at"]) >= effective_ms:  # earlier: 1 unless late
            assert body["policy_version"] == 2, (event_id, body["occurred_at"])
    versions = Counter(b["policy_version"] for b in scored.values())
    print({"scored": len(scored), "by version": dict(versions), "alerts": sum(
        b["alert"] for b in scored.values())})  # fmt: skip
    assert versions.keys() == {1, 2} and min(versions.values()) > 20
    alerts = {orjson.loads(r.value)["event_id"] for r in
              read_to_end(settings.bootstrap, topics.fraud_alerts.name)}  # fmt: skip
    assert alerts == {i for i, b in scored.items() if b["alert"]} and alerts

    # what Redis serves: each order counted once in its window, each alert kept once
    pane = settings.window_spec.size_ms
    counts: dict[int, list] = defaultdict(lambda: [0, 0, [0] * SCORE_BUCKETS])
    for expect in want.values():
        window = counts[expect["time_ms"] - expect["time_ms"] % pane]
        window[0] += 1
        window[1] += expect["alert"]
        window[2][score_bucket(expect["score"])] += 1
    wanted = {start: (n, a, tuple(b)) for start, (n, a, b) in counts.items()}
    reader = read_model.connect(redis_server.url)

    def served() -> dict:
        summary = read_model.fraud_summary(reader, app, read_model.MAX_WINDOWS)
        return {r.window_start_ms: (r.orders, r.alerts, r.scores) for r in summary.windows}

    wait_until(lambda: served() == wanted, within=30, why="fraud counts in Redis")
    kept = read_model.fraud_alerts(reader, app, keys.FRAUD_ALERTS)
    assert {a["event_id"] for a in kept} == alerts
    some = next(iter(alerts))
    explained = read_model.fraud_order(reader, app, str(scored[some]["order_id"]))
    assert explained == scored[some]
    assert len(read_to_end(settings.bootstrap, topics.orders.name)) == sum(
        1 for line in lines if line["topic"] == topics.orders.name
    )  # the input untouched
