"""The bench's machinery: throwaway Kafka and Redis on loopback, the data produced once, and one
bounded, observed run of one contender as a subprocess (killed afterwards, whatever happens),
whose page views, once it has stopped, are checked against what the data gives."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from tqdm import tqdm

from bench.contenders import CONTENDERS, ROOT, Contender, ContenderUnavailable, Launch, Target
from bench.page_view_oracle import check, window_counts
from bench.report import RunResult, run_result
from clickstream.local.kafka import LocalKafka
from clickstream.local.process import free_port
from clickstream.local.redis import LocalRedis
from clickstream.settings import load
from generator.config import GeneratorConfig
from generator.produce import ProduceReport, produce

JARS = ROOT / "var" / "kafka" / "jars"
POLL_S = 0.1  # how often a run's progress is observed
STOP_GRACE_S = 10.0  # SIGTERM, then SIGKILL after this long
EVENTS_PER_SECOND = 250.0  # simulated traffic rate, raised so the data spans at most:
MAX_SPAN_S = 1800.0  # keeps every record inside the naive table's 1 h wall-clock expiry
SPAN_MARGIN_MS = 120_000  # the last record is this far before now
NAME_WIDTH = max(len(name) for name in CONTENDERS)  # progress bars line up


@contextlib.contextmanager
def local_services(home: Path) -> Iterator[tuple[LocalKafka, LocalRedis]]:
    """Kafka and Redis on free loopback ports under `home`, stopped at the end (even Ctrl-C)."""
    kafka = LocalKafka(home / "kafka", free_port(), jars=JARS)
    redis_server = LocalRedis(home / "redis", free_port())
    try:
        kafka.start()
        redis_server.start()
        yield kafka, redis_server
    finally:
        redis_server.stop()
        kafka.stop()


def produce_data(
    bootstrap: str, clicks_topic: str, orders_topic: str, partitions: int, events: int, seed: int
) -> ProduceReport:
    """`events` generator emissions (default faults), all timestamped in the recent past."""
    settings = load(
        {
            "CLICKSTREAM_KAFKA_BOOTSTRAP": bootstrap,
            "CLICKSTREAM_CLICKS_TOPIC": clicks_topic,
            "CLICKSTREAM_ORDERS_TOPIC": orders_topic,
            "CLICKSTREAM_PARTITIONS": str(partitions),
        },
        dotenv=None,
    )
    rate = max(EVENTS_PER_SECOND, events / MAX_SPAN_S)
    span_ms = math.ceil(events / rate * 1000)
    start_ms = round(time.time() * 1000) - span_ms - SPAN_MARGIN_MS
    config = GeneratorConfig(seed=seed, count=events, events_per_second=rate, start_ms=start_ms)
    return asyncio.run(produce(settings, config, None, pace=False, progress=True))


def warm_up_broker(bootstrap: str, topic: str) -> None:
    """Join and commit once as a throwaway group, so the broker creates its offsets topic now
    and not during the first contender's startup."""

    async def join() -> None:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id="bench-warm-up",
            auto_offset_reset="earliest", enable_auto_commit=False,
        )  # fmt: skip
        await consumer.start()
        try:
            await consumer.getmany(timeout_ms=5000, max_records=1)
            await consumer.commit()
        finally:
            await consumer.stop()

    asyncio.run(join())


def run_once(
    contender: Contender,
    target: Target,
    round: int,
    rounds: int,
    folder: Path,
    log: Path,
    timeout: float,
) -> RunResult:
    """Start the contender, watch it until it has processed all of target.expected (or fails or
    times out), stop it. Its data goes under `folder`, its output to `log`."""
    run_id = f"bench-{contender.name}-{round}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    try:
        launch = contender.launch(target, folder, run_id)
    except ContenderUnavailable as exc:
        return run_result(contender.name, round, target.expected, 0.0, None, None, str(exc))
    bar = tqdm(
        total=target.expected,
        desc=f"round {round}/{rounds} {contender.name:<{NAME_WIDTH}}",
        unit="msg",
        unit_scale=True,
        mininterval=0.5,
        file=sys.stderr,
    )
    first: tuple[int, float] | None = None
    done_at: float | None = None
    error: str | None = None
    with log.open("wb") as out:
        spawned_at = time.monotonic()
        process = subprocess.Popen(
            launch.argv, env=launch.env, cwd=launch.cwd, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        while done_at is None:
            if process.poll() is not None:
                error = f"exited with code {process.returncode}; see {log}"
                break
            if time.monotonic() - spawned_at > timeout:
                error = f"timed out after {timeout:.0f}s; see {log}"
                break
            seen = launch.observe()
            if seen is not None:
                count, at = seen
                first = first or seen
                bar.update(min(count, target.expected) - bar.n)
                if count >= target.expected:
                    done_at = at
            time.sleep(POLL_S)
    finally:
        stop(process)
        launch.close()
        bar.close()
    result = run_result(contender.name, round, target.expected, spawned_at, first, done_at, error)
    if done_at is not None:  # it processed everything (too fast to time is still checked)
        result = replace(result, output=check_output(launch, target))
    return result


def check_output(launch: Launch, target: Target) -> str | None:
    """The verdict on the page views the stopped contender left; None: it computes others."""
    if launch.counts is None or target.page_views is None:
        return None
    try:
        rows = launch.counts()
    except (OSError, ValueError, KeyError, TypeError, KafkaError) as exc:  # absent, or garbled
        return f"WRONG: its output could not be read ({type(exc).__name__}: {exc})"
    return check(target.page_views, window_counts(rows))


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group, SIGKILL if it is still there after STOP_GRACE_S."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
