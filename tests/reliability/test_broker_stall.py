"""A broker stall moves no event time (issue 16's scenario): the session's Kafka SIGSTOPped for
15 s in the middle of a paced run, the producer holding its records meanwhile. Measured at
a602d4a, ticks queued during a stall reached the log before the held records and made valid
events late. Now a tick is appended and acknowledged under the runner's lock, so a stalled
broker holds the ticks back too: no valid, on-time event turns late, and every number is the
oracle's over what happened (the generator's JSONL), with nothing late in it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from clickstream.settings import load
from generator.produce import read_jsonl
from serving import keys
from tests.rig import ROOT, Worker, expectation, processed, summed_cells, wait_until

pytestmark = pytest.mark.integration

STALL_S = 15


def test_a_broker_stall_makes_no_valid_event_late(kafka, pipeline_env, tmp_path):
    env = {
        **pipeline_env,
        "CLICKSTREAM_IDLE_SECONDS": "1",
        "CLICKSTREAM_WINDOW_SECONDS": "10",
        "CLICKSTREAM_HOP_SECONDS": "10",
        "CLICKSTREAM_GRACE_SECONDS": "5",
        "CLICKSTREAM_SESSION_TIMEOUT_SECONDS": "30",
    }
    settings = load(env, dotenv=None)
    app = settings.app_id
    client = redis.Redis.from_url(settings.redis)
    worker = Worker(env, tmp_path / "worker.log").start()
    jsonl = tmp_path / "events.jsonl"
    generate = [sys.executable, "-m", "clickstream", "generate", "--pace", "--count", "900",
                "--rate", "20", "--duplicates", "0", "--out-of-order", "0", "--late", "0",
                "--malformed", "0", "--no-progress", "--jsonl", str(jsonl)]  # fmt: skip
    producer = subprocess.Popen(generate, env={**os.environ, **env}, cwd=ROOT)
    broker = kafka.process.pid()
    assert broker is not None
    try:
        time.sleep(15)  # traffic flowing, ticks on quiet partitions
        os.kill(broker, signal.SIGSTOP)
        time.sleep(STALL_S)
    finally:
        os.kill(broker, signal.SIGCONT)
    try:
        assert producer.wait(timeout=120) == 0
        lines = list(read_jsonl(jsonl))
        expected = expectation(settings, lines)
        assert not expected.late, "the paced run has no late event in truth"
        for stream, topic in (("clicks", settings.clicks_topic), ("orders", settings.orders_topic)):
            wait_until(
                lambda s=stream, t=topic: processed(client, app, s) == expected.messages[t],
                within=180, why=f"{stream} processed", alive=worker.alive,
            )  # fmt: skip
    finally:
        worker.stop()
        if producer.poll() is None:
            producer.kill()
    for stream in ("clicks", "orders"):
        counters = client.hgetall(keys.pipeline(app, stream))
        late = sum(int(v) for k, v in counters.items() if k.endswith(b"|late"))
        assert late == 0, f"{stream}: {late} valid events made late by the stall"
    assert summed_cells(client, app, keys.PAGE_VIEWS, 0) == expected.page_views
