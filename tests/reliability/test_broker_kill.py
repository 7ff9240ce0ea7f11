"""A broker killed and started again, twice, in the middle of a paced run (issue 16's second
fault, the crash beside the stall of test_broker_stall). The broker is the test's own (the
session's serves every other test). The worker and the producer reconnect by themselves; no
valid, on-time event turns late (no tick may run ahead of records a producer still holds), and
every number is the oracle's over what happened (the generator's JSONL). Health says the broker
is down while it is, and the worker's log says so once per outage.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest
import redis

from clickstream.local.kafka import LocalKafka, jar_cache
from clickstream.local.process import free_port
from clickstream.settings import load
from generator.produce import read_jsonl
from serving import health, keys, read_model
from tests.rig import (
    PACED,
    Worker,
    expectation,
    late_events,
    paced_generator,
    processed,
    recovered,
    summed_cells,
    wait_processed,
    wait_until,
)

pytestmark = pytest.mark.integration

DOWN_S = 8
KILLS = 2


def test_a_broker_killed_twice_loses_nothing_and_makes_nothing_late(pipeline_env, tmp_path):
    broker = LocalKafka(tmp_path / "kafka", free_port(), jars=jar_cache())
    broker.start()
    env = {**pipeline_env, **PACED, "CLICKSTREAM_KAFKA_BOOTSTRAP": broker.bootstrap}
    settings = load(env, dotenv=None)
    app = settings.app_id
    client = redis.Redis.from_url(settings.redis)
    dashboard = read_model.connect(settings.redis)

    def problems() -> list[str]:
        return health.health(dashboard, app, round(time.time() * 1000)).problems

    worker = Worker(env, tmp_path / "worker.log").start()
    jsonl = tmp_path / "events.jsonl"
    producer = paced_generator(env, jsonl, count=1400, rate=20)
    try:
        wait_until(lambda: processed(client, app, "clicks") > 100, within=120,
                   why="traffic flowing", alive=worker.alive)  # fmt: skip
        wait_until(lambda: problems() == [], within=60, why="a healthy pipeline",
                   alive=worker.alive)  # fmt: skip
        for _ in range(KILLS):
            pid = broker.process.pid()
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)  # reaped: a zombie would look alive to start()
            wait_until(lambda: any("Kafka unreachable" in p for p in problems()),
                       within=DOWN_S + 10, why="health to say the broker is down")  # fmt: skip
            time.sleep(DOWN_S)
            broker.start()
            started = time.monotonic()
            wait_until(lambda: problems() == [], within=90, why="health back to ok")
            recovered("broker SIGKILL: healthy after its start", started)
        assert producer.wait(timeout=180) == 0
        lines = list(read_jsonl(jsonl))
        expected = expectation(settings, lines)
        assert not expected.late, "the paced run has no late event in truth"
        wait_processed(client, settings, expected, alive=worker.alive)
        wait_until(lambda: problems() == [], within=60, why="health back to ok")
    finally:
        worker.stop()
        if producer.poll() is None:
            producer.kill()
        broker.stop()
    for stream in ("clicks", "orders"):
        late = late_events(client, app, stream)
        assert late == 0, f"{stream}: {late} valid events made late by the outages"
    assert summed_cells(client, app, keys.PAGE_VIEWS, 0) == expected.page_views
    assert summed_cells(client, app, keys.ORDERS, 1) == expected.revenue
    logged = (tmp_path / "worker.log").read_text()
    assert logged.count("does not answer; retrying") == KILLS, "one line per outage"
