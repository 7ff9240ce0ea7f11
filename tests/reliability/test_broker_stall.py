"""A broker stall moves no event time (issue 16's scenario): the session's Kafka SIGSTOPped for
20 s, twice, in the middle of a paced run, the producer holding its records meanwhile.
Measured at a602d4a, ticks queued during a stall reached the log before the held records and
made valid events late. Now a tick is appended and acknowledged under the runner's lock, and
event time stands still while the broker does not answer (tables.event_clock): no valid,
on-time event turns late, and every number is the oracle's over what happened (the
generator's JSONL), with nothing late in it. Health says the broker does not answer within
seconds, and that it is back; the worker's log says each once per stall, the client's own
errors held back meanwhile.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from clickstream.settings import load
from generator.produce import read_jsonl
from serving import health, keys, read_model
from tests.rig import (
    PACED,
    Worker,
    expectation,
    late_events,
    paced_generator,
    recovered,
    summed_cells,
    wait_processed,
    wait_until,
)

pytestmark = pytest.mark.integration

STALL_S = 20
STALLS = 2


def test_a_broker_stall_makes_no_valid_event_late(kafka, pipeline_env, tmp_path):
    env = {**pipeline_env, **PACED}
    settings = load(env, dotenv=None)
    app = settings.app_id
    client = redis.Redis.from_url(settings.redis)
    worker = Worker(env, tmp_path / "worker.log").start()
    jsonl = tmp_path / "events.jsonl"
    producer = paced_generator(env, jsonl, count=1200, rate=20)
    broker = kafka.process.pid()
    assert broker is not None
    dashboard = read_model.connect(settings.redis)

    def problems() -> list[str]:
        return health.health(dashboard, app, round(time.time() * 1000)).problems

    time.sleep(15)  # traffic flowing, ticks on quiet partitions
    for _ in range(STALLS):
        wait_until(lambda: problems() == [], within=60, why="a healthy pipeline",
                   alive=worker.alive)  # fmt: skip
        try:
            os.kill(broker, signal.SIGSTOP)
            stalled = time.monotonic()
            wait_until(lambda: any("Kafka unreachable" in p for p in problems()),
                       within=STALL_S - 5, why="health to say the broker is down",
                       alive=worker.alive)  # fmt: skip
            time.sleep(max(STALL_S - (time.monotonic() - stalled), 0))
        finally:
            os.kill(broker, signal.SIGCONT)
        resumed = time.monotonic()
        wait_until(lambda: not any("Kafka" in p for p in problems()), within=30,
                   why="health to say the broker is back", alive=worker.alive)  # fmt: skip
        recovered(f"broker SIGSTOP {STALL_S} s: healthy after SIGCONT", resumed)
    try:
        assert producer.wait(timeout=120) == 0
        lines = list(read_jsonl(jsonl))
        expected = expectation(settings, lines)
        assert not expected.late, "the paced run has no late event in truth"
        wait_processed(client, settings, expected, alive=worker.alive)
    finally:
        worker.stop()
        if producer.poll() is None:
            producer.kill()
    for stream in ("clicks", "orders"):
        late = late_events(client, app, stream)
        assert late == 0, f"{stream}: {late} valid events made late by the stalls"
    assert summed_cells(client, app, keys.PAGE_VIEWS, 0) == expected.page_views
    logged = (tmp_path / "worker.log").read_text()
    assert logged.count("does not answer; retrying") == STALLS, "one line as the broker went away"
    assert logged.count("answers again") == STALLS, "one as it came back"
