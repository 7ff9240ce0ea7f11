"""How each contender is started (a subprocess with its own group, port and data folder) and how
its progress is observed: messages of the clicks topic it has fully processed, and when.

  clickstream            `python -m clickstream worker`, configured only by CLICKSTREAM_*
                         variables; progress = sum of the {partition}|accepted/duplicates/late/
                         dead_letters fields of the Redis hash {app_id}:pipeline:clicks (it also
                         consumes the orders topic); every click metric but `attributed`, whose
                         order facts would land in the clicks topic the contenders share
  clickstream-pageviews  the same with CLICKSTREAM_METRICS=pageviews (click metrics: page views)
  clickstream-with-fraud the first with fraud scoring on (CLICKSTREAM_FRAUD=on; the others run
                         with it off, like their peers): progress is still the click metrics',
                         with the fraud processors beside them on the same cores
  faust-naive            bench.naive_faust --metrics pageviews, progress file
  faust-naive-full       bench.naive_faust --metrics full (the worker's click metric set)
  aiokafka-loop          bench.aiokafka_loop (page views), progress file
  quix                   bench.quix_pageviews (Quix Streams, the `bench` extra): the page-view
                         query at least once, progress file
  quix-eos               the same with processing_guarantee="exactly-once"
  bytewax                bench.bytewax_pageviews (Bytewax, the `bench` extra): the same query,
                         nothing durable, progress file

Each also says where its page views per window come out (bench/outputs.py), read once its run
has stopped and checked against the page-view query on the data (bench/page_view_oracle.py).
The naive peers and the loop answer a cheaper question and are checked all the same, so the
table says WRONG for them: they window by record timestamp, count raw URLs (query strings
kept), validate and dedupe nothing, and have no lateness; the naive agent's memory table also
keeps one count per URL for all the partitions its worker holds.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import redis

from bench import outputs
from bench.page_view_oracle import GRACE_S, WINDOW_S, CountRow, Expected
from bench.progress import read_progress
from clickstream.local.process import free_port
from serving import keys

ROOT = Path(__file__).resolve().parents[1]
PROCESSED_COUNTERS = frozenset({"accepted", "duplicates", "late", "dead_letters"})

Observation = tuple[int, float]  # (messages processed, monotonic time of that count)


@dataclass(frozen=True)
class Target:
    """What every contender reads: the same broker, topics and data; Redis for our worker."""

    bootstrap: str
    redis_url: str
    clicks_topic: str
    orders_topic: str
    partitions: int
    expected: int  # messages in the clicks topic
    max_seconds: float  # a contender still running after this stops itself (when it can)
    page_views: Expected | None = None  # what the page-view query gives on the clicks topic


@dataclass
class Launch:
    """One run of one contender: its command, and how to read its progress."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    observe: Callable[[], Observation | None]
    close: Callable[[], None] = lambda: None
    counts: Callable[[], list[CountRow]] | None = None  # its page views, once it has stopped


class ContenderUnavailable(RuntimeError):
    """The contender cannot run here; the message says how to make it run."""


@dataclass(frozen=True)
class Contender:
    name: str
    launch: Callable[[Target, Path, str], Launch]  # (target, run folder, run id)


def _clean_environ() -> dict[str, str]:
    """The bench's environment without any CLICKSTREAM_* setting of the caller's shell, nor a
    Quix__* one (Quix Streams reads those: a Quix Cloud token would send it elsewhere)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("CLICKSTREAM_", "Quix__"))}


FULL_SET = ",".join(m for m in keys.CLICK_METRICS if m != keys.ATTRIBUTED)


def _clickstream(
    target: Target, folder: Path, run_id: str, metrics: str = FULL_SET, fraud: str = "off"
) -> Launch:
    """metrics: CLICKSTREAM_METRICS; fraud: CLICKSTREAM_FRAUD (off: like for like with the
    other contenders, which score nothing)."""
    env = {
        **_clean_environ(),
        "CLICKSTREAM_KAFKA_BOOTSTRAP": target.bootstrap,
        "CLICKSTREAM_REDIS_URL": target.redis_url,
        "CLICKSTREAM_APP_ID": run_id,
        "CLICKSTREAM_CLICKS_TOPIC": target.clicks_topic,
        "CLICKSTREAM_ORDERS_TOPIC": target.orders_topic,
        "CLICKSTREAM_PARTITIONS": str(target.partitions),
        "CLICKSTREAM_VAR_DIR": str(folder / "var"),
        "CLICKSTREAM_WORKER_PORT": str(free_port()),
        "CLICKSTREAM_LOG_LEVEL": "warn",
        "CLICKSTREAM_METRICS": metrics,
        "CLICKSTREAM_FRAUD": fraud,
        "CLICKSTREAM_WINDOW_SECONDS": str(WINDOW_S),  # the window and grace the check uses
        "CLICKSTREAM_GRACE_SECONDS": str(GRACE_S),
    }
    client = redis.Redis.from_url(target.redis_url, socket_timeout=5, decode_responses=True)
    hash_key = keys.pipeline(run_id, "clicks")

    def observe() -> Observation | None:
        total = 0
        for name, value in client.hgetall(hash_key).items():
            if keys.split_field(str(name))[1][0] in PROCESSED_COUNTERS:
                total += int(value)
        return (total, time.monotonic()) if total else None

    # cwd = the run folder, so a developer's .env in the project cannot reach the worker
    return Launch(
        [sys.executable, "-m", "clickstream", "worker"], env, folder, observe, client.close,
        partial(outputs.clickstream_counts, target.bootstrap, run_id),
    )  # fmt: skip


def _faust_naive(target: Target, folder: Path, run_id: str, metrics: str = "pageviews") -> Launch:
    progress = folder / "progress"
    argv = [
        sys.executable, "-m", "bench.naive_faust",
        "--bootstrap", target.bootstrap,
        "--topic", target.clicks_topic,
        "--app-id", run_id,
        "--partitions", str(target.partitions),
        "--datadir", str(folder / "data"),
        "--web-port", str(free_port()),
        "--progress", str(progress),
        "--expected", str(target.expected),
        "--max-seconds", str(target.max_seconds),
        "--metrics", metrics,
    ]  # fmt: skip
    counts = partial(outputs.faust_naive_counts, target.bootstrap, run_id, metrics)
    return Launch(argv, _clean_environ(), ROOT, lambda: read_progress(progress), counts=counts)


def _aiokafka_loop(target: Target, folder: Path, run_id: str) -> Launch:
    progress, counts = folder / "progress", folder / "counts.json"
    argv = [
        sys.executable, "-m", "bench.aiokafka_loop",
        "--bootstrap", target.bootstrap,
        "--topic", target.clicks_topic,
        "--group", run_id,
        "--progress", str(progress),
        "--expected", str(target.expected),
        "--max-seconds", str(target.max_seconds),
        "--output", str(counts),
    ]  # fmt: skip
    return Launch(
        argv, _clean_environ(), ROOT, lambda: read_progress(progress),
        counts=partial(outputs.loop_counts, counts),
    )  # fmt: skip


def _quix(target: Target, folder: Path, run_id: str, guarantee: str = "at-least-once") -> Launch:
    if importlib.util.find_spec("quixstreams") is None:
        raise ContenderUnavailable("quixstreams is not installed: pip install -e '.[bench]'")
    progress = folder / "progress"
    argv = [
        sys.executable, "-m", "bench.quix_pageviews",
        "--bootstrap", target.bootstrap,
        "--topic", target.clicks_topic,
        "--group", run_id,
        "--state-dir", str(folder / "state"),
        "--progress", str(progress),
        "--expected", str(target.expected),
        "--max-seconds", str(target.max_seconds),
        "--guarantee", guarantee,
    ]  # fmt: skip
    return Launch(
        argv, _clean_environ(), ROOT, lambda: read_progress(progress),
        counts=partial(outputs.pageviews_topic_counts, target.bootstrap, run_id),
    )  # fmt: skip


def _bytewax(target: Target, folder: Path, run_id: str) -> Launch:
    if importlib.util.find_spec("bytewax") is None:
        raise ContenderUnavailable("bytewax is not installed: pip install -e '.[bench]'")
    progress = folder / "progress"
    argv = [
        sys.executable, "-m", "bench.bytewax_pageviews",
        "--bootstrap", target.bootstrap,
        "--topic", target.clicks_topic,
        "--group", run_id,
        "--progress", str(progress),
        "--expected", str(target.expected),
        "--max-seconds", str(target.max_seconds),
    ]  # fmt: skip
    return Launch(
        argv, _clean_environ(), ROOT, lambda: read_progress(progress),
        counts=partial(outputs.pageviews_topic_counts, target.bootstrap, run_id),
    )  # fmt: skip


CONTENDERS: dict[str, Contender] = {
    c.name: c
    for c in (
        Contender("clickstream", _clickstream),
        Contender("clickstream-pageviews", partial(_clickstream, metrics="pageviews")),
        Contender("clickstream-with-fraud", partial(_clickstream, fraud="on")),
        Contender("faust-naive", _faust_naive),
        Contender("faust-naive-full", partial(_faust_naive, metrics="full")),
        Contender("aiokafka-loop", _aiokafka_loop),
        Contender("quix", _quix),
        Contender("quix-eos", partial(_quix, guarantee="exactly-once")),
        Contender("bytewax", _bytewax),
    )
}
