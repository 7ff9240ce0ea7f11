"""`python -m bench.fraud_latency`: how long from an order to its score, both streams flowing.

Throwaway Kafka and Redis on loopback; one worker per round, with the default settings or
each `--setting IDLE:COMMIT:FRAUD_COMMIT` in turn (the latency-CPU trade:
CLICKSTREAM_IDLE_SECONDS, _COMMIT_SECONDS, _FRAUD_COMMIT_SECONDS); the generator paced at
`--rate` (it sends less: about 2,500 events/s at 9,000) for `--seconds`. An order's latency =
its scored record's timestamp (the worker's producer stamps it when it sends) minus the order
record's (the generator's send time), one host's clock for both; the hops likewise, through
the first forwarded entry and the last part. Every accepted order must be scored once: the
run fails otherwise. Reports each round, then per setting the medians over the rounds of
p50, p95, p99, max, each hop's median and the worker's CPU (cores) while the traffic ran.

  python -m bench.fraud_latency --rate 9000 --seconds 40 --rounds 3 \
      --setting 15:1:1 --setting 0.5:1:0.1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from bench.harness import local_services, stop
from clickstream.local.process import free_port
from clickstream.settings import load
from generator.config import GeneratorConfig
from generator.produce import produce
from streams.validation import InvalidEvent, parse_order

PARTITIONS = 4


def one_round(
    home: Path,
    bootstrap: str,
    redis_url: str,
    rate: float,
    seconds: float,
    setting: tuple[float, ...],
) -> dict:
    app = f"latency-{uuid.uuid4().hex[:8]}"
    idle, commit, fraud_commit = setting
    env = {
        "CLICKSTREAM_KAFKA_BOOTSTRAP": bootstrap,
        "CLICKSTREAM_REDIS_URL": redis_url,
        "CLICKSTREAM_APP_ID": app,
        "CLICKSTREAM_CLICKS_TOPIC": f"{app}-clicks",
        "CLICKSTREAM_ORDERS_TOPIC": f"{app}-orders",
        "CLICKSTREAM_PARTITIONS": str(PARTITIONS),
        "CLICKSTREAM_VAR_DIR": str(home / app),
        "CLICKSTREAM_WORKER_PORT": str(free_port()),
        "CLICKSTREAM_LOG_LEVEL": "warn",
        "CLICKSTREAM_IDLE_SECONDS": f"{idle:g}",
        "CLICKSTREAM_COMMIT_SECONDS": f"{commit:g}",
        "CLICKSTREAM_FRAUD_COMMIT_SECONDS": f"{fraud_commit:g}",
    }
    settings = load(env, dotenv=None)
    log = (home / f"{app}.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "clickstream", "worker"], env=env, cwd=home,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        time.sleep(15)  # joined and assigned before the traffic starts
        config = GeneratorConfig(
            seed=7, events_per_second=rate, duration_s=seconds,
            start_ms=round(time.time() * 1000),
        )  # fmt: skip
        cpu_before, wall_before = _cpu_seconds(worker.pid), time.monotonic()
        asyncio.run(produce(settings, config, None, pace=True, progress=True))
        cores = (_cpu_seconds(worker.pid) - cpu_before) / (time.monotonic() - wall_before)
        topics = settings.topics
        orders: dict[str, int] = {}  # event id -> when its first copy was sent
        for record in asyncio.run(read_all(bootstrap, topics.orders.name)):
            try:
                event_id = parse_order(record.value or b"", record.timestamp).event_id
            except InvalidEvent:
                continue  # a dead letter, never scored
            orders.setdefault(event_id, record.timestamp)
        deadline, scored = time.monotonic() + 120, dict[str, int]()
        while time.monotonic() < deadline:
            for record in asyncio.run(read_all(bootstrap, topics.scored_orders.name)):
                scored.setdefault(orjson.loads(record.value)["event_id"], record.timestamp)
            if scored.keys() >= orders.keys():
                break
            time.sleep(2)
        forwarded, parted = _hops(bootstrap, topics.fraud_repartition.name, topics.fraud_parts.name)
    finally:
        stop(worker)
        log.close()
    if orders.keys() - scored.keys():
        raise SystemExit(f"{len(orders.keys() - scored.keys())} valid orders never scored")
    latencies = sorted(scored[i] - orders[i] for i in orders)
    hops = {  # the median of each hop: order -> entry -> last part -> score
        "forward_ms": statistics.median(forwarded[i] - orders[i] for i in orders),
        "profile_ms": statistics.median(parted[i] - forwarded[i] for i in orders),
        "score_ms": statistics.median(scored[i] - parted[i] for i in orders),
    }
    return {
        "orders": len(latencies),
        "p50_ms": _pick(latencies, 0.50),
        "p95_ms": _pick(latencies, 0.95),
        "p99_ms": _pick(latencies, 0.99),
        "max_ms": latencies[-1] if latencies else None,
        **hops,
        "worker_cores": round(cores, 2),  # CPU while the traffic was sent
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _hops(bootstrap: str, repartition: str, parts: str) -> tuple[dict[str, int], dict[str, int]]:
    """Event id -> when its first entry was forwarded, and when its last part was sent."""
    forwarded: dict[str, int] = {}
    for record in asyncio.run(read_all(bootstrap, repartition)):
        body = orjson.loads(record.value) if record.value and record.value[:2] == b'["' else None
        if body and body[0] == "o":
            forwarded.setdefault(body[1], record.timestamp)
    parted: dict[str, int] = {}
    for record in asyncio.run(read_all(bootstrap, parts)):
        event_id = (record.key or b"").decode()
        parted[event_id] = max(parted.get(event_id, 0), record.timestamp)
    return forwarded, parted


async def read_all(bootstrap: str, topic: str) -> list:
    """Every record of `topic` up to its end now."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records: list = []
    try:
        while not consumer.assignment():  # a group-less subscription assigns every partition
            batch = await consumer.getmany(timeout_ms=200)
            records += [m for messages in batch.values() for m in messages]
        ends = await consumer.end_offsets(list(consumer.assignment()))
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            batch = await consumer.getmany(timeout_ms=500)
            records += [m for messages in batch.values() for m in messages]
    finally:
        await consumer.stop()
    return records


def _pick(values: list[int], q: float) -> int | None:
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="of paced traffic")
    parser.add_argument("--rounds", type=int, default=3, help="per setting")
    parser.add_argument(
        "--setting",
        action="append",
        metavar="IDLE:COMMIT:FRAUD_COMMIT",
        help="CLICKSTREAM_IDLE_SECONDS, _COMMIT_SECONDS and _FRAUD_COMMIT_SECONDS of one "
        "contender (repeatable; default: the defaults)",
    )
    args = parser.parse_args()
    defaults = load({}, dotenv=None)
    settings = [
        tuple(float(x) for x in text.split(":"))
        for text in args.setting
        or [f"{defaults.idle_seconds}:{defaults.commit_seconds}:{defaults.fraud_commit_seconds}"]
    ]
    results: dict[tuple[float, ...], list[dict]] = {s: [] for s in settings}
    with tempfile.TemporaryDirectory(prefix="fraud-latency-") as tmp:
        home = Path(tmp)
        with local_services(home) as (kafka, redis_server):
            for i in range(args.rounds):  # the settings side by side, round after round
                for setting in settings:
                    r = one_round(home, kafka.bootstrap, redis_server.url, args.rate,
                                  args.seconds, setting)  # fmt: skip
                    print(f"round {i + 1}, idle:commit:fraud commit {_shown(setting)}: {r}")
                    results[setting].append(r)
    names = ("p50_ms", "p95_ms", "p99_ms", "max_ms", "forward_ms", "profile_ms", "score_ms",
             "worker_cores")  # fmt: skip
    print(f"\nmedians of {args.rounds} rounds, generator rate {args.rate:g}:")
    print("| idle s : commit s : fraud commit s | " + " | ".join(names) + " |")
    for setting, rounds in results.items():
        medians = [statistics.median(r[k] for r in rounds) for k in names]
        print(f"| {_shown(setting)} | " + " | ".join(f"{m:g}" for m in medians) + " |")
    return 0


def _shown(setting: tuple[float, ...]) -> str:
    return ":".join(f"{x:g}" for x in setting)


if __name__ == "__main__":
    raise SystemExit(main())
