"""A worker's start and stop, as real processes on real Kafka: its log has no ERROR line and no
offset table; another app id on the same worker port starts cleanly (a state folder per app
id); a state folder kept across a Kafka wipe is discarded and the tables rebuilt (one line); a
fatal error in the fetch path ends the worker with one line naming it and a nonzero exit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from clickstream.local.kafka import LocalKafka, jar_cache
from clickstream.local.process import free_port
from clickstream.settings import Settings, load
from clickstream.state_dir import state_folder
from generator.config import GeneratorConfig
from tests.oracle import Expected
from tests.rig import ROOT, Worker, processed, produce_and_expect, tumbling_results, wait_until

pytestmark = pytest.mark.integration

SMALL = GeneratorConfig(seed=5, count=3_000)
LEVELS = ("[WARNING]", "[ERROR]", "[CRITICAL]")


def produced(settings: Settings, config: GeneratorConfig, folder: Path) -> Expected:
    """Send `config`'s records; what the oracle says they give."""
    folder.mkdir()
    return produce_and_expect(settings, config, folder)


def worker_env(env: dict[str, str], app_id: str) -> dict[str, str]:
    return {
        **env,
        "CLICKSTREAM_APP_ID": app_id,
        "CLICKSTREAM_CLICKS_TOPIC": f"{app_id}-clicks",
        "CLICKSTREAM_ORDERS_TOPIC": f"{app_id}-orders",
        "CLICKSTREAM_LOG_LEVEL": "info",
        "CLICKSTREAM_STORE": "rocksdb://",
    }


def notable(log: Path) -> list[str]:
    """Lines above INFO, and tracebacks."""
    return [
        line
        for line in log.read_text().splitlines()
        if any(level in line for level in LEVELS) or line.startswith("Traceback")
    ]


def offset_tables(log: Path) -> list[str]:
    return [
        line
        for line in log.read_text().splitlines()
        if "Highwater - " in line or "Reading Starts At - " in line
    ]


def run_until_processed(worker: Worker, client: redis.Redis, app: str, total: int) -> None:
    worker.start()
    wait_until(
        lambda: processed(client, app, "clicks") + processed(client, app, "orders") == total,
        within=120,
        why=f"{total} processed",
        alive=worker.alive,
    )
    worker.stop()
    assert worker.process is not None and worker.process.returncode == 0


def test_another_app_id_on_the_same_worker_port_starts_cleanly(
    pipeline_env, redis_server, app_id, tmp_path
):
    client = redis.Redis.from_url(redis_server.url)
    first_env = worker_env(pipeline_env, app_id)
    first = Worker(first_env, tmp_path / "first.log")
    other_id = f"{app_id}o"
    other = Worker(worker_env(pipeline_env, other_id), tmp_path / "other.log")
    other.env["CLICKSTREAM_WORKER_PORT"] = first.env["CLICKSTREAM_WORKER_PORT"]
    for worker, config in ((first, SMALL), (other, replace(SMALL, seed=6, count=1_000))):
        settings = load(worker.env, dotenv=None)
        expected = produced(settings, config, tmp_path / settings.app_id)
        run_until_processed(worker, client, settings.app_id, sum(expected.messages.values()))
        assert tumbling_results(settings) == expected.final_results
    assert notable(other.log) == []
    folders = {state_folder(load(w.env, dotenv=None)) for w in (first, other)}
    assert len(folders) == 2 and all(folder.is_dir() for folder in folders)


def test_state_folder_kept_across_a_kafka_wipe_is_discarded_and_rebuilt(redis_server, tmp_path):
    kafka = LocalKafka(tmp_path / "kafka", free_port(), jars=jar_cache())
    kafka.start()
    try:
        app_id = f"w{uuid.uuid4().hex[:10]}"
        env = worker_env(
            {
                "CLICKSTREAM_KAFKA_BOOTSTRAP": kafka.bootstrap,
                "CLICKSTREAM_REDIS_URL": redis_server.url,
                "CLICKSTREAM_VAR_DIR": str(tmp_path / "var"),
                "CLICKSTREAM_SESSION_TIMEOUT_SECONDS": "8",
                "CLICKSTREAM_IDLE_SECONDS": "0",
            },
            app_id,
        )
        settings = load(env, dotenv=None)
        client = redis.Redis.from_url(redis_server.url)
        worker = Worker(env, tmp_path / "before.log")  # one worker port, so one state folder
        before = produced(settings, SMALL, tmp_path / "before")
        run_until_processed(worker, client, app_id, sum(before.messages.values()))
        # a first start on a fresh cluster: the group coordinator is still loading
        assert notable(worker.log) == []
        assert offset_tables(worker.log) == []
        changelog_partitions = len(settings.topics.changelogs) * settings.partitions
        assert f"from {changelog_partitions} changelog partitions" in worker.log.read_text()

        kafka.stop()
        shutil.rmtree(kafka.data)  # the cluster is new; the worker's state folder is kept
        kafka.start()
        client.delete(*client.scan_iter(f"{app_id}:*"))  # counts from before would add up
        after = produced(settings, replace(SMALL, seed=7, count=2_000), tmp_path / "after")
        worker.log = tmp_path / "after.log"
        run_until_processed(worker, client, app_id, sum(after.messages.values()))
        assert tumbling_results(settings) == after.final_results  # nothing of before in them
        (line,) = notable(worker.log)
        assert "[WARNING] state folder " in line and "does not match Kafka" in line
        assert "rebuilt from their changelogs" in line
    finally:
        kafka.stop()


# Run by the test in its own process: the worker with its fetch path failing as a full disk
# would make it fail, from the third fetched batch on.
FAILING_FETCH = """
import sys
import engine.runner as runner
from clickstream.cli import main

deliver = runner.Runner.deliver
calls = []

async def failing(self, fetched, gate=True):
    calls.append(1)
    if len(calls) > 2:
        raise OSError(28, "No space left on device")
    return await deliver(self, fetched, gate)

runner.Runner.deliver = failing
sys.argv = ["clickstream", "worker"]
main()
"""


def test_fatal_error_in_the_fetch_path_ends_the_worker_with_one_line(
    pipeline_env, app_id, tmp_path
):
    env = worker_env(pipeline_env, app_id)
    env["CLICKSTREAM_WORKER_PORT"] = str(free_port())
    env["CLICKSTREAM_BATCH_SIZE"] = "100"  # many batches from the few records
    produced(load(env, dotenv=None), SMALL, tmp_path / "events")
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        done = subprocess.run(
            [sys.executable, "-c", FAILING_FETCH],
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=False,
        )
    assert done.returncode != 0
    lines = notable(log)
    assert len(lines) == 1, "\n".join(lines)
    assert (
        lines[0]
        .rstrip()
        .endswith("[ERROR] worker stopped: OSError: [Errno 28] No space left on device")
    )
    assert "NoneType: None" not in log.read_text()
