"""Pipeline rig: workers as real subprocesses against the session's Kafka and Redis, and readers
of what they produced (Redis sums, topics). Its fixtures are exported by tests/conftest.py."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from base64 import b64decode
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import redis
from aiokafka import AIOKafkaConsumer

from agents.window_results import RESULT_FIELDS
from clickstream.local.process import free_port
from clickstream.settings import Settings, load
from generator.config import GeneratorConfig
from generator.produce import produce, read_jsonl
from serving import keys
from streams.eventtime import parse_timestamp
from tables import sketch
from tests.oracle import Expected, recompute

ROOT = Path(__file__).resolve().parents[1]


class Worker:
    """One `clickstream worker` process with its own web port and data folder."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = {**env, "CLICKSTREAM_WORKER_PORT": str(free_port())}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "clickstream", "worker"],
                env={**os.environ, **self.env},
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def clickstream(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m clickstream ARGS` with `env` over this process's environment; its output."""
    return subprocess.run(
        [sys.executable, "-m", "clickstream", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def pipeline_env(kafka, redis_server, app_id, tmp_path) -> dict[str, str]:
    return {
        "CLICKSTREAM_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "CLICKSTREAM_REDIS_URL": redis_server.url,
        "CLICKSTREAM_APP_ID": app_id,
        "CLICKSTREAM_CLICKS_TOPIC": f"{app_id}-clicks",
        "CLICKSTREAM_ORDERS_TOPIC": f"{app_id}-orders",
        "CLICKSTREAM_VAR_DIR": str(tmp_path / "var"),
        "CLICKSTREAM_LOG_LEVEL": "warn",
        "CLICKSTREAM_SESSION_TIMEOUT_SECONDS": "8",
        # no ticks unless a test asks: a tick mid-stream (while the producer pauses) would make
        # the oracle, which reads the JSONL rather than the topic, disagree on lateness
        "CLICKSTREAM_IDLE_SECONDS": "0",
    }


@pytest.fixture
def settings(pipeline_env) -> Settings:
    return load(pipeline_env, dotenv=None)


@pytest.fixture
def start_worker(pipeline_env, tmp_path) -> Iterator[Callable[[], Worker]]:
    workers: list[Worker] = []

    def start() -> Worker:
        worker = Worker(pipeline_env, tmp_path / f"worker-{len(workers)}.log").start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def processed(client: redis.Redis, app: str, stream: str) -> int:
    """Messages a stream's partitions have fully applied, whatever their fate."""
    counters = ("accepted", "duplicates", "late", "dead_letters")
    total = 0
    for name, value in client.hgetall(keys.pipeline(app, stream)).items():
        if keys.split_field(name.decode())[1][0] in counters:
            total += int(value)
    return total


def wait_processed(
    client: redis.Redis,
    settings: Settings,
    expected: Expected,
    alive: Callable[[], bool] = lambda: True,
    within: float = 180,
) -> None:
    """Until clicks and orders have applied every message the oracle counted on their topics."""
    for stream, topic in (("clicks", settings.clicks_topic), ("orders", settings.orders_topic)):
        wait_until(
            lambda s=stream, t=topic: processed(client, settings.app_id, s) == expected.messages[t],
            within=within, why=f"{stream} processed", alive=alive,
        )  # fmt: skip


def wait_until(
    condition: Callable[[], bool], within: float, why: str, alive: Callable[[], bool] = lambda: True
) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert alive(), f"worker died while waiting for: {why}"
        assert time.monotonic() < deadline, f"timed out after {within}s waiting for: {why}"
        time.sleep(0.25)


# A paced run's settings: short windows that close as it goes, ticks after 1 s of quiet, and a
# session long enough to outlast a 20 s broker stall without a rebalance
PACED = {
    "CLICKSTREAM_IDLE_SECONDS": "1",
    "CLICKSTREAM_WINDOW_SECONDS": "10",
    "CLICKSTREAM_HOP_SECONDS": "10",
    "CLICKSTREAM_GRACE_SECONDS": "5",
    "CLICKSTREAM_SESSION_TIMEOUT_SECONDS": "30",
}


def paced_generator(
    env: dict[str, str], jsonl: Path, count: int, rate: int, faults: bool = False
) -> subprocess.Popen[bytes]:
    """`clickstream generate --pace` into the topics of `env`, what it sent in `jsonl`;
    without faults, nothing is late in truth (what a fault test then checks)."""
    command = [sys.executable, "-m", "clickstream", "generate", "--pace", "--count", str(count),
               "--rate", str(rate), "--no-progress", "--jsonl", str(jsonl)]  # fmt: skip
    if not faults:
        command += ["--duplicates", "0", "--out-of-order", "0", "--late", "0", "--malformed", "0"]
    return subprocess.Popen(command, env={**os.environ, **env}, cwd=ROOT)


def late_events(client: redis.Redis, app: str, stream: str) -> int:
    counters = client.hgetall(keys.pipeline(app, stream))
    return sum(int(v) for k, v in counters.items() if k.endswith(b"|late"))


def recovered(fault: str, since: float) -> None:
    """Say how long a recovery took (`pytest -s` shows it; the README's reliability table)."""
    print(f"RECOVERY {fault}: {time.monotonic() - since:.1f} s")


def summed_cells(client: redis.Redis, app: str, metric: str, part: int) -> Counter:
    """(window start, dimension) -> sum over partitions of the `part`-th count."""
    totals: Counter = Counter()
    names = keys.COUNT_NAMES.get(metric)
    for start in client.zrange(keys.windows(app, metric), 0, -1):
        fields = client.hgetall(keys.window(app, metric, int(start)))
        for name, value in fields.items():
            _, parts = keys.split_field(name.decode())
            if names is None:
                totals[int(start), parts[0]] += int(value)
            elif parts[-1] == names[part]:
                totals[int(start), keys.SEP.join(parts[:-1])] += int(value)
    return totals


def merged_uniques(client: redis.Redis, app: str) -> dict[tuple[int, str], int]:
    """(window start, sketch name) -> estimate of the sketches merged over partitions."""
    merged: dict[tuple[int, str], list[bytes]] = defaultdict(list)
    for start in client.zrange(keys.windows(app, keys.UNIQUES), 0, -1):
        for name, registers in client.hgetall(keys.window(app, keys.UNIQUES, int(start))).items():
            merged[int(start), keys.split_field(name.decode())[1][0]].append(b64decode(registers))
    return {k: sketch.estimate(sketch.union(v)) for k, v in merged.items()}


def within_sketch_error(estimate: int, exact: int) -> bool:
    """Within 4 standard errors (or 2 for tiny counts): the bound tests/unit/test_sketch.py
    proves for the sketch itself."""
    return abs(estimate - exact) <= max(4 * sketch.STANDARD_ERROR * exact, 2)


def read_to_end(bootstrap: str, topic: str) -> list:
    """Every record of `topic` up to its current end."""

    async def consume() -> list:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        records: list = []
        try:
            while not consumer.assignment():  # without a group, every partition is assigned
                batch = await consumer.getmany(timeout_ms=200)
                records.extend(m for messages in batch.values() for m in messages)
            ends = await consumer.end_offsets(list(consumer.assignment()))
            while any([await consumer.position(tp) < end for tp, end in ends.items()]):
                batch = await consumer.getmany(timeout_ms=500)
                records.extend(m for messages in batch.values() for m in messages)
        finally:
            await consumer.stop()
        return records

    return asyncio.run(consume())


def final_results(bootstrap: str, topic: str) -> dict[str, dict]:
    """Window results by id; a result sent again (after a crash) must say exactly the same."""
    results: dict[str, dict] = {}
    for record in read_to_end(bootstrap, topic):
        result = orjson.loads(record.value)
        assert results.setdefault(result["id"], result) == result, f"{result['id']} changed"
    return results


def tumbling_results(settings: Settings) -> dict[tuple[str, int, int], dict]:
    """(stream, window start, partition) -> counted metrics of each tumbling window result:
    the shape of tests.oracle.Expected.windows and .final_results."""
    return _results(settings, "tumbling")


def hopping_results(settings: Settings) -> dict[tuple[str, int, int], dict]:
    """The same for hopping window results (tests.oracle.hopping)."""
    return _results(settings, "hopping")


def _results(settings: Settings, kind: str) -> dict[tuple[str, int, int], dict]:
    names = ("pageviews", "clicktypes", "referrers", "orders", "sessions")
    return {
        (r["stream"], parse_timestamp(r["start"]), r["partition"]): {
            metric: r[metric] for metric in names if metric in r
        }
        for r in final_results(settings.bootstrap, settings.topics.window_results.name).values()
        if r["kind"] == kind and r["stream"] in ("clicks", "orders")
    }


def window_totals(settings: Settings, kind: str = "tumbling") -> dict[tuple[str, int], dict]:
    """(stream, window start) -> each WindowTotal with something counted in it; one sent
    again must say exactly the same."""
    totals = final_results(settings.bootstrap, settings.topics.window_totals.name)
    return {
        (t["stream"], parse_timestamp(t["start"])): t
        for t in totals.values()
        if t["kind"] == kind and t.keys() - RESULT_FIELDS
    }


def attribution_results(settings: Settings) -> dict[tuple[int, int], dict]:
    """(window start, partition) -> its attribution result's counts: the shape of
    tests.oracle.Expected.attributed."""
    return {
        (parse_timestamp(r["start"]), r["partition"]): r[keys.ATTRIBUTED]
        for r in final_results(settings.bootstrap, settings.topics.window_results.name).values()
        if r["stream"] == "attribution"
    }


def session_summaries(settings: Settings) -> set[tuple]:
    """(user, start, end, clicks, page views, entry host or "") of every SessionSummary sent;
    one sent again (after a crash) must say exactly the same: the shape of
    tests.oracle.Expected.sessions."""
    found: dict[str, dict] = {}
    for record in read_to_end(settings.bootstrap, settings.topics.sessions.name):
        summary = orjson.loads(record.value)
        assert found.setdefault(summary["id"], summary) == summary, f"{summary['id']} changed"
    return {
        (
            s["user_id"],
            parse_timestamp(s["start"]),
            parse_timestamp(s["end"]),
            s["clicks"],
            s["page_views"],
            s["entry_referrer"] or "",
        )
        for s in found.values()
    }


def read_topic(bootstrap: str, topic: str, expected: int, within: float = 30) -> list:
    async def consume() -> list:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        records: list = []
        deadline = time.monotonic() + within
        try:
            while len(records) < expected and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    records.extend(messages)
            more = await consumer.getmany(timeout_ms=500)  # nothing beyond what is expected
            records.extend(m for messages in more.values() for m in messages)
        finally:
            await consumer.stop()
        return records

    return asyncio.run(consume())


def produce_lines(settings: Settings, config: GeneratorConfig, jsonl: Path) -> list[dict]:
    """Send the generator's records to the test topics; the records as sent (JSONL lines)."""
    asyncio.run(produce(settings, config, jsonl, pace=False, progress=False))
    return list(read_jsonl(jsonl))


def expectation(settings: Settings, lines: list[dict]) -> Expected:
    """What the oracle says these records give."""
    return recompute(
        lines,
        settings.clicks_topic,
        settings.orders_topic,
        settings.window_ms,
        settings.grace_ms,
        settings.session_gap_seconds * 1000,
    )


def produce_and_expect(settings: Settings, config: GeneratorConfig, tmp_path: Path) -> Expected:
    return expectation(settings, produce_lines(settings, config, tmp_path / "events.jsonl"))


# Windows short enough for ticks to close them soon after the data (hops of three panes)
SMALL_WINDOWS = {
    "CLICKSTREAM_WINDOW_SECONDS": "10",
    "CLICKSTREAM_HOP_SECONDS": "30",
    "CLICKSTREAM_GRACE_SECONDS": "5",
    "CLICKSTREAM_SESSION_GAP_SECONDS": "20",
}


# Traffic with every kind of fault, long enough (in event time) for late copies to arrive.
FAULTY_TRAFFIC = GeneratorConfig(
    seed=99,
    count=60_000,
    events_per_second=100,
    duplicate_rate=0.03,
    out_of_order_rate=0.08,
    late_rate=0.01,
    late_by_ms=(95_000, 200_000),  # > 60 s window + 30 s grace
    malformed_rate=0.01,
    legacy_order_rate=0.3,
)
