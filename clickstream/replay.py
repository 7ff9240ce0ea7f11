"""`clickstream replay`: a shadow version of the app recomputed from the input topics.

A version is an app id: its own consumer group, tables, changelogs, derived topics and Redis
prefix, beside the live one (the inputs are only read). Its bounds are the one record of its
`<version>-replay` topic: per input partition the first offset to read (committed for its
consumer group before any worker starts) and the first not to read (none: it follows live).
Every worker of the version reads them at start, so `clickstream worker` under that app id, on
any machine, joins the same replay. By default it follows the live version's time log and
fraud policy log (CLICKSTREAM_CLOCK_APP_ID): each tick and policy change lands where live
applied it, so the same input gives the same results.

The replay is done when every input partition's committed offset reached its stop and the
derived topics the version reads back (window results, order facts, the fraud topics) are
consumed to their ends: a commit writes Redis before the offsets, so its numbers are final.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import orjson
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as TP
from tqdm import tqdm

from clickstream import versions
from clickstream.kafka_admin import admin_client, ensure_topics, partitions_of, start_consumer
from clickstream.local.process import free_port, stop_with_parent
from clickstream.settings import Settings, SettingsError
from streams.eventtime import format_timestamp, parse_timestamp
from streams.topics import TopicSpec

BOUNDS_KEY = b"bounds"
POLL_S = 0.5
PROGRESS_LINE_S = 30.0  # without a terminal: one line this often
PARTITION_BARS = 16  # per-partition bars up to this many input partitions


class ReplayFailed(RuntimeError):
    """A replay cannot start or went wrong; the message says why and what to do."""


@dataclass(frozen=True)
class Bounds:
    base: str  # the version replayed beside (whose registry lists this one)
    clock: str  # the app id whose time log and policy log it follows
    asked_from: str  # "earliest" or an ISO time
    asked_to: str | None  # "now" or an ISO time; None: follows live
    start: dict[TP, int]  # input partition -> first offset read
    # input and followed log partition -> first offset not read: the logs' ends are those
    # of the moment the inputs' were taken (or the records before --to), so the ticks and
    # policy versions that live writes on while idle do not move the shadow on for ever
    stop: dict[TP, int] | None

    def as_json(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "clock": self.clock,
            "from": self.asked_from,
            "to": self.asked_to,
            "start": _offsets_json(self.start),
            "stop": _offsets_json(self.stop) if self.stop is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Bounds:
        stop = data["stop"]
        return cls(
            data["base"],
            data["clock"],
            data["from"],
            data["to"],
            _offsets(data["start"]),
            _offsets(stop) if stop is not None else None,
        )

    def same_run(self, other: Bounds) -> bool:
        """Asked the same way (the offsets of `now` move on)."""
        return (self.base, self.clock, self.asked_from, self.asked_to) == (
            other.base,
            other.clock,
            other.asked_from,
            other.asked_to,
        )

    def total(self) -> int | None:
        if self.stop is None:
            return None
        return sum(self.stop[tp] - offset for tp, offset in self.start.items())


def _offsets_json(offsets: dict[TP, int]) -> dict[str, int]:
    return {f"{tp.topic}/{tp.partition}": offset for tp, offset in sorted(offsets.items())}


def _offsets(data: dict[str, int]) -> dict[TP, int]:
    found = {}
    for name, offset in data.items():
        topic, _, partition = name.rpartition("/")
        found[TP(topic, int(partition))] = offset
    return found


def parse_when(text: str, option: str, allowed: tuple[str, ...]) -> int | None:
    """An ISO time -> epoch ms; one of the `allowed` words -> None. SettingsError otherwise."""
    if text in allowed:
        return None
    try:
        return parse_timestamp(text)
    except ValueError:
        words = f"neither {' or '.join(allowed)} nor" if allowed else "not"
        raise SettingsError(
            f"{option} {text!r} is {words} an ISO time with its offset, like 2026-12-01T18:00Z"
        ) from None


def version_settings(settings: Settings, version: str, clock: str) -> Settings:
    """`settings` as version `version` has them, following `clock`'s time log."""
    return replace(settings, app_id=version, clock_app_id="" if clock == version else clock)


async def read_bounds(settings: Settings) -> Bounds | None:
    """The bounds of the version `settings.app_id`, or None when it is no replay."""
    topic = settings.topics.replay.name
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await start_consumer(consumer, settings.bootstrap)
    try:
        if topic not in await consumer.topics():
            return None
        tp = TP(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        found = None
        # an explicit seek: seek_to_beginning() races the reset that assign() started
        consumer.seek(tp, (await consumer.beginning_offsets([tp]))[tp])
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                for record in records:
                    if record.key == BOUNDS_KEY and record.value is not None:
                        found = Bounds.from_json(orjson.loads(record.value))
        return found
    finally:
        with contextlib.suppress(asyncio.CancelledError):  # aiokafka 0.14, group-less stop
            await consumer.stop()


def check_worker(settings: Settings, bounds: Bounds | None) -> None:
    """A worker of a replayed version must follow the clock the replay follows."""
    if bounds is not None and bounds.clock != settings.clock:
        fix = (
            "unset CLICKSTREAM_CLOCK_APP_ID"
            if bounds.clock == settings.app_id
            else f"set CLICKSTREAM_CLOCK_APP_ID={bounds.clock}"
        )
        raise SettingsError(
            f"version {settings.app_id} is a replay that follows {bounds.clock}'s time log; {fix}"
        )


async def prepare(
    live: Settings,
    version: str,
    asked_from: str,
    asked_to: str | None,
    clock: str,
) -> Bounds:
    """Resolve the bounds to offsets, create the version's topics, write its bounds and commit
    its first offsets; or the bounds written before, when the same replay is run again."""
    shadow = version_settings(live, version, clock)
    start_ms = parse_when(asked_from, "--from", ("earliest",))
    stop_ms = parse_when(asked_to, "--to", ("now",)) if asked_to is not None else None
    if start_ms is not None and stop_ms is not None and stop_ms <= start_ms:
        raise SettingsError(f"--to {asked_to} is not after --from {asked_from}")
    inputs = [spec.name for spec in live.topics.inputs()]
    logs = [spec.name for spec in followed_logs(shadow)]
    partitions = await partitions_of(live.bootstrap, [*inputs, *logs])
    for name in inputs:
        if name not in partitions:
            raise ReplayFailed(
                f"input topic {name} does not exist at {live.bootstrap}: nothing to replay "
                f"(check CLICKSTREAM_CLICKS_TOPIC / CLICKSTREAM_ORDERS_TOPIC)"
            )
    tps = [TP(name, p) for name in inputs for p in partitions[name]]
    log_tps = [TP(name, p) for name in logs if name in partitions for p in partitions[name]]
    consumer = AIOKafkaConsumer(bootstrap_servers=live.bootstrap, enable_auto_commit=False)
    await start_consumer(consumer, live.bootstrap)
    try:
        earlier = await read_bounds(shadow)
        stop = None
        if asked_to is not None:  # the logs' ends first: a tick there is after input read
            stop = await _offsets_at(consumer, log_tps, stop_ms, end=True)
            stop.update(await _offsets_at(consumer, tps, stop_ms, end=True))
        start = await _offsets_at(consumer, tps, start_ms)
        if stop is not None:
            stop.update({tp: max(stop[tp], start[tp]) for tp in tps})
        bounds = Bounds(live.app_id, clock, asked_from, asked_to, start, stop)
        if earlier is not None:
            if not earlier.same_run(bounds):
                raise ReplayFailed(
                    f"version {version} exists, replayed --from {earlier.asked_from} --to "
                    f"{earlier.asked_to or '(follow)'} following {earlier.clock}; run it that way "
                    f"to continue, or `clickstream retire {version}` first"
                )
            return earlier
        first = {**start, **await consumer.beginning_offsets(log_tps)}
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()
    await ensure_topics(live.bootstrap, shadow.topics.all(), live.replication)
    await _commit_first_offsets(live.bootstrap, version, first)
    producer = AIOKafkaProducer(bootstrap_servers=live.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            shadow.topics.replay.name, orjson.dumps(bounds.as_json()), key=BOUNDS_KEY
        )
    finally:
        await producer.stop()
    return bounds


async def _offsets_at(
    consumer: AIOKafkaConsumer, tps: list[TP], at_ms: int | None, end: bool = False
) -> dict[TP, int]:
    """Per partition, the first offset whose record timestamp is at or after `at_ms`
    (None: the log's start, or its end with `end`); past every record: the end."""
    ends = await consumer.end_offsets(tps)
    if at_ms is None:
        return dict(ends) if end else dict(await consumer.beginning_offsets(tps))
    found = await consumer.offsets_for_times({tp: at_ms for tp in tps})
    return {tp: found[tp].offset if found.get(tp) else ends[tp] for tp in tps}


async def _commit_first_offsets(bootstrap: str, group: str, start: dict[TP, int]) -> None:
    """The version's consumer group starts at `start` (inputs: the replay's start; logs
    followed: their beginning), unless it committed before."""
    admin = await admin_client(bootstrap)
    try:
        committed = await admin.list_consumer_group_offsets(group, partitions=list(start))
    finally:
        await admin.close()
    if any(meta.offset >= 0 for meta in committed.values()):
        return
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await start_consumer(consumer, bootstrap)
    try:
        consumer.assign(list(start))
        await consumer.commit(dict(start))
    finally:
        await consumer.stop()


@dataclass
class Progress:
    done: dict[TP, int]  # input partition -> records read
    totals: dict[TP, int]  # input partition -> records to read (following: so far)
    drained: bool  # the logs followed read to their stops, and what it reads back to its ends

    def finished(self) -> bool:
        return self.drained and all(self.done[tp] >= self.totals[tp] for tp in self.totals)


async def watch(shadow: Settings, bounds: Bounds, seen: Callable[[Progress], None]) -> int:
    """Hand `seen` where the version's consumer group stands (its committed offsets) every
    POLL_S, until it has finished (following: until cancelled); returns the records read."""
    inputs = list(bounds.start)
    logs = [tp for tp in bounds.stop or {} if tp not in bounds.start]
    reads_back = [TP(s.name, p) for s in reads_back_topics(shadow) for p in range(s.partitions)]
    asked = [*inputs, *logs, *reads_back]
    admin = await admin_client(shadow.bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=shadow.bootstrap, enable_auto_commit=False)
    try:
        await start_consumer(consumer, shadow.bootstrap)
        while True:
            answer = await admin.list_consumer_group_offsets(shadow.app_id, partitions=asked)
            committed = {TP(tp.topic, tp.partition): meta.offset for tp, meta in answer.items()}
            ends = {
                TP(tp.topic, tp.partition): offset
                for tp, offset in (await consumer.end_offsets([*inputs, *reads_back])).items()
            }
            stop = bounds.stop or {tp: ends[tp] for tp in inputs}
            current = Progress(
                done={tp: max(0, committed.get(tp, -1) - bounds.start[tp]) for tp in inputs},
                totals={tp: max(0, stop[tp] - bounds.start[tp]) for tp in inputs},
                drained=all(committed.get(tp, -1) >= ends[tp] for tp in reads_back if ends[tp])
                and all(committed.get(tp, -1) >= stop[tp] for tp in logs),
            )
            seen(current)
            if bounds.stop is not None and current.finished():
                return sum(current.done.values())
            await asyncio.sleep(POLL_S)
    finally:
        await admin.close()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()


def followed_logs(settings: Settings) -> list[TopicSpec]:
    """The time and control logs of the clock a version follows (none: it writes its own)."""
    if not settings.clock_app_id or settings.clock_app_id == settings.app_id:
        return []
    t = settings.topics
    return [t.clicks_ticks, t.orders_ticks, t.fraud_policy, t.fraud_policy_ticks]


def reads_back_topics(settings: Settings) -> list[TopicSpec]:
    """The topics the version writes and reads again (the inputs of its later stages)."""
    t = settings.topics
    specs = [t.window_results, t.order_facts]
    if settings.fraud == "on":
        specs += [t.fraud_repartition, t.fraud_parts]
    return [spec for spec in specs if spec.name.startswith(f"{settings.app_id}-")]


class ReplayWorkers:
    """`clickstream worker` processes of the version, each with its own port, id and log."""

    def __init__(self, shadow: Settings, count: int, logs: Path) -> None:
        self.shadow, self.logs = shadow, logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.processes: list[tuple[Path, subprocess.Popen[bytes]]] = []
        for n in range(count):
            log = logs / f"{shadow.app_id}-worker-{n}.log"
            env = {
                **os.environ,
                "CLICKSTREAM_APP_ID": shadow.app_id,
                "CLICKSTREAM_CLOCK_APP_ID": shadow.clock_app_id,
                "CLICKSTREAM_WORKER_PORT": str(free_port()),
                "CLICKSTREAM_WORKER_ID": f"{shadow.app_id}-replay-{n}",
            }
            with log.open("ab") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "clickstream", "worker"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=stop_with_parent,  # a killed replay leaves no worker running
                )
            self.processes.append((log, process))

    def check(self) -> None:
        for log, process in self.processes:
            if process.poll() is not None:
                raise ReplayFailed(
                    f"a worker of {self.shadow.app_id} exited with {process.returncode}; "
                    f"its log: {log}"
                )

    def stop(self, timeout: float = 60) -> None:
        for _, process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for _, process in self.processes:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Meter:
    """Records done per input partition and overall: tqdm bars on a terminal, else a line
    every PROGRESS_LINE_S seconds."""

    def __init__(self, partitions: list[TP], stream: TextIO) -> None:
        self.stream = stream
        self.bars: dict[TP | None, Any] = {}
        self.due = time.monotonic() + PROGRESS_LINE_S
        if stream.isatty():
            self.bars[None] = tqdm(desc="replay", unit="rec", file=stream, position=0)
            if len(partitions) <= PARTITION_BARS:
                for row, tp in enumerate(partitions, start=1):
                    desc = f"  {tp.topic} p{tp.partition}"
                    self.bars[tp] = tqdm(desc=desc, unit="rec", file=stream, position=row)

    def show(self, p: Progress) -> None:
        done, total = sum(p.done.values()), sum(p.totals.values())
        if not self.bars:
            if time.monotonic() >= self.due:
                print(f"replay: {done} of {total} records", file=self.stream, flush=True)
                self.due = time.monotonic() + PROGRESS_LINE_S
            return
        for tp, bar in self.bars.items():
            n, of = (done, total) if tp is None else (p.done[tp], p.totals[tp])
            bar.total = of
            bar.update(n - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def run(
    live: Settings,
    version: str,
    asked_from: str,
    asked_to: str | None,
    clock: str,
    workers: int,
    stream: TextIO,
) -> tuple[int, float]:
    """Replay into `version` until done (following: until interrupted); returns the records
    replayed and the seconds it took."""
    bounds = asyncio.run(prepare(live, version, asked_from, asked_to, clock))
    shadow = version_settings(live, version, clock)
    client = redis.Redis.from_url(live.redis, socket_timeout=5)
    about = {**bounds.as_json(), "state": "replaying" if bounds.stop else "following"}
    versions.register(client, live.app_id, version, {**about, "started": _now()})
    began = time.monotonic()
    meter = Meter(sorted(bounds.start), stream)
    fleet = ReplayWorkers(shadow, workers, live.var_dir / "logs")

    def seen(current: Progress) -> None:
        fleet.check()
        meter.show(current)

    try:
        done = asyncio.run(watch(shadow, bounds, seen))
    finally:
        meter.close()
        fleet.stop()
    elapsed = time.monotonic() - began
    versions.register(
        client,
        live.app_id,
        version,
        {**about, "state": "replayed", "records": done, "seconds": round(elapsed, 1),
         "finished": _now()},
    )  # fmt: skip
    return done, elapsed


def _now() -> str:
    return format_timestamp(round(time.time() * 1000))
