"""A worker restarted at once, after kill -9 or a clean stop, takes back its partitions and
resumes well before its session times out: it rejoins the group as the same static member
(clickstream.membership), so the broker neither waits for the old member to time out nor
rebalances. Dynamic membership made a killed worker's restart wait out the whole session
timeout (31 s measured with 30 s)."""

from __future__ import annotations

import signal
import time
from dataclasses import replace

import pytest
import redis

from clickstream.settings import load
from generator.config import GeneratorConfig
from tests.rig import Worker, processed, produce_and_expect, wait_until

pytestmark = pytest.mark.integration

SESSION_TIMEOUT_SECONDS = 30
RESUME_WITHIN_SECONDS = 20  # start of the new process -> everything since the stop processed
BEFORE = GeneratorConfig(seed=11, count=3_000)
AFTER = replace(BEFORE, seed=12, count=1_000, start_ms=BEFORE.start_ms + 600_000)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "clean-stop"])
def test_restarted_worker_resumes_before_its_session_times_out(
    pipeline_env, redis_server, tmp_path, stop
):
    env = {
        **pipeline_env,
        "CLICKSTREAM_SESSION_TIMEOUT_SECONDS": str(SESSION_TIMEOUT_SECONDS),
        "CLICKSTREAM_LOG_LEVEL": "info",
    }
    settings = load(env, dotenv=None)
    client = redis.Redis.from_url(redis_server.url)
    app = settings.app_id

    def total() -> int:
        return processed(client, app, "clicks") + processed(client, app, "orders")

    worker = Worker(env, tmp_path / "worker.log")  # the same port, so the same member id
    (tmp_path / "before").mkdir()
    before = sum(produce_and_expect(settings, BEFORE, tmp_path / "before").messages.values())
    worker.start()
    wait_until(lambda: total() == before, within=120, why="the first part", alive=worker.alive)
    worker.stop(stop)

    (tmp_path / "after").mkdir()
    after = sum(produce_and_expect(settings, AFTER, tmp_path / "after").messages.values())
    started = time.monotonic()
    worker.start()
    try:
        wait_until(
            lambda: total() == before + after,
            within=RESUME_WITHIN_SECONDS,
            why="the restarted worker caught up",
            alive=worker.alive,
        )
    finally:
        took = time.monotonic() - started
        print(f"{signal.Signals(stop).name}: caught up {took:.1f} s after the restart")
        worker.stop()
    assert "does not match Kafka" not in worker.log.read_text()  # its state folder was kept
