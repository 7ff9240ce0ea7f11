"""Send simulated emissions to Kafka and record each one, as sent, in a JSONL file.

Each record goes to the partition Kafka's own default partitioner picks for its key (murmur2),
chosen explicitly so the JSONL can say where it went; its record timestamp is emit_at_ms.
JSONL line: {"topic", "partition", "key", "value" (exact payload text), "timestamp_ms", "label"}.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TextIO

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from tqdm import tqdm

from clickstream.kafka_admin import ensure_topics
from clickstream.settings import Settings
from generator.config import GeneratorConfig
from generator.emission import Emission
from generator.simulate import simulate

MAX_FUTURE_MS = 60 * 60 * 1000  # Kafka 4 rejects record timestamps further ahead than this
UNACKED_LIMIT = 10_000  # wait for acks after this many sends, to bound memory
PROGRESS_LINE_SECONDS = 30.0  # off a terminal, one plain progress line at most this often
_partitioner = DefaultPartitioner()


class ProduceError(RuntimeError):
    """A one-line reason the run cannot go on, with the fix."""


@dataclass
class ProduceReport:
    """How many records were sent, per stream, per fault ("none": clean) and per scenario."""

    by_stream: Counter[str] = field(default_factory=Counter)
    by_fault: Counter[str] = field(default_factory=Counter)
    by_scenario: Counter[str] = field(default_factory=Counter)
    first_timestamp_ms: int | None = None
    last_timestamp_ms: int | None = None

    @property
    def total(self) -> int:
        return sum(self.by_stream.values())

    def count(self, emission: Emission) -> None:
        self.by_stream[emission.stream] += 1
        self.by_fault[emission.label["fault"] or "none"] += 1
        if emission.label["scenario"] is not None:
            self.by_scenario[emission.label["scenario"]] += 1
        if self.first_timestamp_ms is None:
            self.first_timestamp_ms = emission.emit_at_ms
        self.last_timestamp_ms = emission.emit_at_ms

    def summary(self) -> str:
        def listed(counts: Counter[str]) -> str:
            return ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "none"

        return (
            f"sent {self.total} records ({listed(self.by_stream)}); "
            f"faults: {listed(self.by_fault)}; fraud: {listed(self.by_scenario)}"
        )


async def produce(
    settings: Settings,
    config: GeneratorConfig,
    jsonl_path: Path | None,
    pace: bool,
    progress: bool,
) -> ProduceReport:
    """Send simulate(config) to the clicks and orders topics; with `pace`, each at its emit time."""
    topics = {"clicks": settings.topics.clicks.name, "orders": settings.topics.orders.name}
    specs = (settings.topics.clicks, settings.topics.orders)
    await ensure_topics(settings.bootstrap, specs, settings.replication)
    producer = input_producer(settings.bootstrap, 2 * config.max_event_bytes)
    await producer.start()
    report = ProduceReport()
    try:
        partitions = {t: sorted(await producer.partitions_for(t)) for t in topics.values()}
        sink = _open_jsonl(jsonl_path) if jsonl_path is not None else nullcontext(None)
        bar = progress_meter(config.count, progress, sys.stderr)
        with sink as jsonl, bar:
            unacked: list[asyncio.Future[Any]] = []
            for emission in simulate(config):
                await _wait_until_due(emission.emit_at_ms, pace)
                topic = topics[emission.stream]
                partition = partition_for(emission.key, partitions[topic])
                unacked.append(
                    await producer.send(
                        topic,
                        emission.value,
                        key=emission.key,
                        partition=partition,
                        timestamp_ms=emission.emit_at_ms,
                    )
                )
                if jsonl is not None:
                    jsonl.write(jsonl_line(emission, topic, partition))
                report.count(emission)
                bar.update()
                if len(unacked) >= UNACKED_LIMIT:
                    await _acknowledged(unacked)
            await _acknowledged(unacked)
    finally:
        await producer.stop()
    return report


def progress_meter(
    total: int | None, progress: bool, stream: TextIO, doing: str = "generate: sent"
) -> Any:
    """A tqdm bar on a terminal; into a log file or a pipe, ProgressLines (a bar there would be
    a heap of carriage-return frames)."""
    if progress and stream.isatty():
        return tqdm(total=total, unit="rec", file=stream, desc=doing)
    return ProgressLines(total, stream if progress else None, doing=doing)


class ProgressLines:
    """`generate: sent N of M records` (`doing`: what comes before N) once every `every_s`
    seconds of wall time, none sooner."""

    def __init__(
        self,
        total: int | None,
        stream: TextIO | None,
        every_s: float = PROGRESS_LINE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        doing: str = "generate: sent",
    ) -> None:
        self.total, self.stream, self.every_s, self.clock = total, stream, every_s, clock
        self.doing = doing
        self.sent = 0
        self.due = clock() + every_s

    def update(self, n: int = 1) -> None:
        self.sent += n
        if self.stream is not None and self.clock() >= self.due:
            of = f" of {self.total}" if self.total is not None else ""
            print(f"{self.doing} {self.sent}{of} records", file=self.stream, flush=True)
            self.due = self.clock() + self.every_s

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        return None


def input_producer(bootstrap: str, largest_bytes: int = 0) -> AIOKafkaProducer:
    """The producer of the input topics' records (idempotent, acks from all replicas)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=20,
        max_batch_size=256 * 1024,
        max_request_size=max(1024 * 1024, largest_bytes),
    )


def partition_for(key: bytes, partitions: list[int]) -> int:
    """The partition Kafka's default partitioner gives `key`: murmur2(key) & 0x7fffffff mod n."""
    return int(_partitioner(key, partitions, partitions))


def _open_jsonl(path: Path) -> BinaryIO:
    try:
        return path.open("wb")
    except OSError as exc:
        raise ProduceError(f"cannot write {path}: {exc.strerror}; choose a writable path") from None


def jsonl_line(emission: Emission, topic: str, partition: int) -> bytes:
    record = {
        "topic": topic,
        "partition": partition,
        "key": emission.key.decode(),
        "value": emission.value.decode(),
        "timestamp_ms": emission.emit_at_ms,
        "label": emission.label,
    }
    return orjson.dumps(record) + b"\n"


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a produce() JSONL file, in the order they were sent."""
    with path.open("rb") as lines:
        for line in lines:
            if line.strip():
                yield orjson.loads(line)


async def _wait_until_due(emit_at_ms: int, pace: bool) -> None:
    ahead_ms = emit_at_ms - time.time() * 1000
    if pace and ahead_ms > 0:
        await asyncio.sleep(ahead_ms / 1000)
    elif not pace and ahead_ms > MAX_FUTURE_MS:
        raise ProduceError(
            f"record timestamp {emit_at_ms} is over an hour ahead of now and Kafka would reject "
            "it; start earlier (--start) or send fewer records (--count/--duration)"
        )


async def _acknowledged(unacked: list[asyncio.Future[Any]]) -> None:
    await asyncio.gather(*unacked)
    unacked.clear()
