"""The backfill scenario's machinery: each layout's events produced once to its own input topics,
then, per round and layout, the `clickstream` contender (the worker as bench runs it, full
click metric set) started under a fresh app id and watched until its import is done, stopped,
and its derived topics read back and checked (bench.backfill says what is due).

Import time = worker spawn -> the `<app>-window-totals` topic holds a total for every window of
the data (bench.backfill.Expected). Those totals need every partition of both input topics to
have passed the data's last windows, which only its last record, the flush, does: so they are
out only once the whole input is consumed. The run also waits until the app's consumer group
has committed, on every input partition, the end offset it had when the worker was spawned
(reported as `committed s`: Faust commits acked offsets every few seconds, so that lags). Only
Kafka is read: committed offsets and the derived topics named by the README's contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from argparse import Namespace
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from tqdm import tqdm

from bench import backfill
from bench.backfill import SCENARIOS, BackfillRun, Expected, Layout
from bench.contenders import CONTENDERS, ROOT, Target
from bench.harness import POLL_S, local_services, stop, warm_up_broker
from clickstream.kafka_admin import KafkaUnreachable
from clickstream.local.process import LocalServiceError
from clickstream.settings import Settings, load
from generator.config import GeneratorConfig
from generator.produce import UNACKED_LIMIT, partition_for
from generator.simulate import simulate

CONTENDER = "clickstream"
OUT = ROOT / "var" / "bench"


def topics(layout: str) -> dict[str, str]:
    return {stream: f"bench-{layout}-{stream}" for stream in backfill.STREAMS}


def derived_topic(app_id: str, name: str) -> str:
    """`<app>-<name>`: the README's contract for the derived topics."""
    return f"{app_id}-{name}"


def generator_config(events: int, seed: int, start_ms: int) -> GeneratorConfig:
    """N emissions (at most) inside one hour from start_ms, without faults."""
    rate = events / (backfill.PACKED_SPAN_MS / 1000) * backfill.RATE_MARGIN
    return GeneratorConfig(
        seed=seed, start_ms=start_ms, events_per_second=rate, count=events,
        duration_s=backfill.PACKED_SPAN_MS / 1000, duplicate_rate=0, out_of_order_rate=0,
        late_rate=0, malformed_rate=0,
    )  # fmt: skip


def last_event_ms(config: GeneratorConfig) -> int:
    """The time of the last event the generator makes (a dry run: it is deterministic)."""
    last = None
    for emission in simulate(config):
        last = emission.label["occurred_at_ms"]
    if last is None:
        raise ValueError("the generator made no events")
    return last


def worker_settings(target: Target, folder: Path) -> Settings:
    """The settings the contender's worker runs with (its CLICKSTREAM_* environment)."""
    launch = CONTENDERS[CONTENDER].launch(target, folder, "bench-probe")
    launch.close()
    env = {k: v for k, v in launch.env.items() if k.startswith("CLICKSTREAM_")}
    return load(env, dotenv=None)


def expectation(settings: Settings) -> Expected:
    sessions = "sessions" in settings.click_metrics
    return Expected(
        settings.window_ms, settings.hop_seconds * 1000, settings.grace_ms,
        settings.session_gap_seconds * 1000 if sessions else None,
    )  # fmt: skip


async def _create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
        for topic, code, *_ in response.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise KafkaUnreachable(f"Kafka refused to create topic {topic} (error {code})")
    finally:
        await admin.close()


async def _produce(
    bootstrap: str, layout: Layout, config: GeneratorConfig, partitions: int, want: Expected
) -> None:
    names = topics(layout.name)
    await _create_topics(bootstrap, list(names.values()), partitions)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=20,
        max_batch_size=256 * 1024, max_request_size=max(1024 * 1024, 2 * config.max_event_bytes),
    )  # fmt: skip
    await producer.start()
    numbers = list(range(partitions))
    bar = tqdm(total=config.count, desc=f"producing {layout.name}", unit="rec", file=sys.stderr)
    try:
        unacked: list[asyncio.Future[Any]] = []
        for emission in simulate(config):
            occurred = emission.label["occurred_at_ms"]
            assert occurred is not None  # no malformed records are generated
            at = layout.at(occurred)
            partition = partition_for(emission.key, numbers)
            value = backfill.retimed(emission.value, at)
            # no timestamp: the record's is now, as an importer sending old events would set it
            unacked.append(
                await producer.send(
                    names[emission.stream], value, key=emission.key, partition=partition
                )
            )
            want.add(emission.stream, partition, emission.key.decode(), at)
            bar.update()
            if len(unacked) >= UNACKED_LIMIT:
                await asyncio.gather(*unacked)
                unacked.clear()
        await asyncio.gather(*unacked)  # the data first, then the flush after it
        for stream, topic in names.items():
            for partition in numbers:
                key = backfill.flush_key(partition, lambda k: partition_for(k, numbers))
                value = backfill.flush_value(stream, key, want.flush_ms, layout.name)
                unacked.append(await producer.send(topic, value, key=key, partition=partition))
        await asyncio.gather(*unacked)
    finally:
        bar.close()
        await producer.stop()


def produce_layout(
    bootstrap: str, layout: Layout, config: GeneratorConfig, partitions: int, settings: Settings
) -> Expected:
    want = expectation(settings)
    asyncio.run(_produce(bootstrap, layout, config, partitions, want))
    return want


async def _end_offsets(bootstrap: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def _assign_all(admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, topic: str) -> bool:
    """Assign every partition of `topic` from its beginning; False while it does not exist.
    (Only an existing topic is named in a metadata request: nothing is created by asking.)"""
    if topic not in await admin.list_topics():
        return False
    (described,) = await admin.describe_topics([topic])
    numbers = sorted(p["partition"] for p in described["partitions"])
    if described["error_code"] or not numbers:
        return False
    parts = [TopicPartition(topic, p) for p in numbers]
    consumer.assign(parts)
    for tp, offset in (await consumer.beginning_offsets(parts)).items():
        consumer.seek(tp, offset)  # explicit: seek_to_beginning() races assign()'s own reset
    return True


def _window(record: dict[str, Any]) -> backfill.Window:
    start = datetime.fromisoformat(record["start"]).timestamp() * 1000
    return record["stream"], record["kind"], round(start)


async def _watch(
    process: subprocess.Popen[bytes],
    app_id: str,
    bootstrap: str,
    ends: dict[TopicPartition, int],
    due: set[backfill.Window],
    spawned_at: float,
    limit_s: float,
    log: Path,
    bar: Any,
) -> tuple[float | None, float | None, float | None, str | None]:
    """(first total seen, every total seen, end offsets committed seen, error) in monotonic
    seconds, polled every POLL_S; returns once both of the last two are seen."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    totals = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await totals.start()
    reading = False
    seen: set[backfill.Window] = set()
    first: float | None = None
    out: float | None = None
    committed_at: float | None = None
    total_input = sum(ends.values())
    try:
        while True:
            if process.poll() is not None:
                error = f"exited with code {process.returncode}; see {log}"
                return first, out, committed_at, error
            if time.monotonic() - spawned_at > limit_s:
                return first, out, committed_at, f"timed out after {limit_s:.0f}s; see {log}"
            try:
                committed = await admin.list_consumer_group_offsets(app_id, partitions=list(ends))
            except KafkaError:  # the group's coordinator is still loading
                committed = {}
            done_input = sum(
                min(max(c.offset, 0), ends[tp]) for tp, c in committed.items() if tp in ends
            )
            if committed_at is None and done_input == total_input:
                committed_at = time.monotonic()
            if not reading:
                reading = await _assign_all(admin, totals, derived_topic(app_id, "window-totals"))
            if reading:
                batch = await totals.getmany(timeout_ms=round(POLL_S * 1000))
                for records in batch.values():
                    seen.update(_window(orjson.loads(r.value)) for r in records)
            else:
                await asyncio.sleep(POLL_S)
            matched = len(seen & due)
            if first is None and matched:
                first = time.monotonic()
            if out is None and matched == len(due):
                out = time.monotonic()
            bar.update(matched - bar.n)
            bar.set_postfix_str(f"committed {done_input / max(total_input, 1):.0%}", refresh=False)
            if out is not None and committed_at is not None:
                return first, out, committed_at, None
    finally:
        await totals.stop()
        await admin.close()


async def _records(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` up to its current end; none when there is no such topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        if not await _assign_all(admin, consumer, topic):
            return records
        ends = await consumer.end_offsets(list(consumer.assignment()))
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            batch = await consumer.getmany(timeout_ms=500)
            records.extend(r for part in batch.values() for r in part)
    finally:
        await consumer.stop()
        await admin.close()
    return records


async def _derived(bootstrap: str, app_id: str, want: Expected) -> backfill.Derived:
    read = [
        _records(bootstrap, derived_topic(app_id, name))
        for name in ("window-results", "window-totals", "sessions", "dead-letters", "late-events")
    ]
    results, totals, sessions, dead, late = await asyncio.gather(*read)
    reasons = [dict(r.headers).get("reason", b"").decode(errors="replace") for r in dead]

    def values(records: list[ConsumerRecord[bytes, bytes]]) -> list[bytes]:
        return [r.value or b"" for r in records]

    return backfill.derive(
        want, values(results), values(totals), values(sessions), reasons, len(late)
    )


def run_import(
    layout: str,
    want: Expected,
    target: Target,
    round: int,
    rounds: int,
    folder: Path,
    log: Path,
    timeout: float,
) -> BackfillRun:
    """One import of `layout` by a fresh worker; its time, derived records and check."""
    app_id = f"bench-backfill-{layout}-{round}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    names = topics(layout)
    here = Target(
        target.bootstrap, target.redis_url, names["clicks"], names["orders"], target.partitions,
        want.events["clicks"], target.max_seconds,
    )  # fmt: skip
    launch = CONTENDERS[CONTENDER].launch(here, folder, app_id)
    tps = [TopicPartition(t, p) for t in names.values() for p in range(target.partitions)]
    ends = asyncio.run(_end_offsets(target.bootstrap, tps))
    due = want.totals()
    bar = tqdm(
        total=len(due), desc=f"round {round}/{rounds} backfill {layout:<6}", unit="total",
        mininterval=0.5, file=sys.stderr,
    )  # fmt: skip
    with log.open("wb") as out:
        spawned_at = time.monotonic()
        process = subprocess.Popen(
            launch.argv, env=launch.env, cwd=launch.cwd, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        first, every, committed, error = asyncio.run(
            _watch(process, app_id, target.bootstrap, ends, due, spawned_at, timeout, log, bar)
        )
    finally:
        stop(process)
        launch.close()
        bar.close()
    derived = asyncio.run(_derived(target.bootstrap, app_id, want))
    problems = backfill.check(want, derived)
    if error is None and problems:
        error = "wrong output: " + "; ".join(problems)
    import_s, first_s, committed_s = (
        at - spawned_at if at is not None else None for at in (every, first, committed)
    )
    return BackfillRun(layout, round, import_s, first_s, committed_s, derived.counts(), error)


@contextlib.contextmanager
def _services() -> Iterator[tuple[Path, str, str]]:
    with (
        tempfile.TemporaryDirectory(prefix="clickstream-bench-") as tmp,
        local_services(Path(tmp)) as (kafka, redis_server),
    ):
        yield Path(tmp), kafka.bootstrap, redis_server.url


def main_backfill(args: Namespace) -> int:
    """`python -m bench --scenario backfill`: produce, import round after round, report."""
    started = datetime.now(UTC)
    began = time.monotonic()
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    logs = OUT / f"{stamp}-backfill-logs"
    logs.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    runs: list[BackfillRun] = []
    try:
        with _services() as (home, bootstrap, redis_url):
            target = Target(
                bootstrap, redis_url, "", "", args.partitions, 0, max_seconds=args.timeout + 60
            )
            settings = worker_settings(target, home / "probe")
            start = backfill.start_ms(round(time.time() * 1000), settings.window_ms)
            config = generator_config(args.events, args.seed, start)
            plans = backfill.layouts(start, last_event_ms(config), settings.window_ms)
            wants = {
                name: produce_layout(bootstrap, plans[name], config, args.partitions, settings)
                for name in SCENARIOS
            }
            warm_up_broker(bootstrap, topics("packed")["clicks"])
            for rnd in range(1, args.rounds + 1):
                shift = (rnd - 1) % len(SCENARIOS)  # alternate which layout goes first
                for name in SCENARIOS[shift:] + SCENARIOS[:shift]:
                    folder, log = home / f"{rnd}-{name}", logs / f"{rnd}-backfill-{name}.log"
                    runs.append(
                        run_import(
                            name, wants[name], target, rnd, args.rounds, folder, log, args.timeout
                        )
                    )
                    if runs[-1].error:
                        print(f"bench: {name} round {rnd}: {runs[-1].error}", file=sys.stderr)
    except KeyboardInterrupt:
        print("bench: interrupted; the worker, Kafka and Redis stopped", file=sys.stderr)
        return 130
    except (LocalServiceError, KafkaUnreachable, KafkaError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    took = time.monotonic() - began
    expected = {name: want.summary() for name, want in wants.items()}
    meta = {
        "scenario": "backfill",
        "started_at": started.isoformat(),
        "duration_s": round(took, 1),
        "events": args.events,
        "rounds": args.rounds,
        "partitions": args.partitions,
        "seed": args.seed,
        "contender": CONTENDER,
        "layouts": {n: asdict(p) for n, p in plans.items()},
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in ("faust-streaming", "aiokafka", "orjson")},
    }
    print(
        f"backfill: the same {sum(wants['packed'].events.values()):,} generated events, sparse "
        f"(one-window panes {plans['sparse'].stride_ms / 60_000:,.0f} minutes apart) or packed "
        f"into one hour, each imported by `{CONTENDER}` under a fresh app id; "
        f"rounds {args.rounds}, {args.partitions} partitions, {os.cpu_count()} CPUs; "
        f"run took {took / 60:.1f} min; "
        f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}\n"
    )
    print(backfill.render(runs, expected))
    report = OUT / f"{stamp}-backfill.json"
    report.write_text(json.dumps(backfill.to_json(meta, runs, expected), indent=2) + "\n")
    print("\nwrote " + ", ".join(str(p.relative_to(ROOT)) for p in (report, logs)))
    return 0 if runs and all(run.ok for run in runs) else 1
