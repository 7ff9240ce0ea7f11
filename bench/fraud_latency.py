"""`python -m bench.fraud_latency`: how long from an order to its score, both streams flowing.

Throwaway Kafka and Redis on loopback; one worker with the default settings (fraud on, commit
interval 1 s, idle ticks after 15 s: `--commit`, `--idle`); the generator paced at `--rate`
(its calibration sends about half that) for `--seconds`. An order's
latency = its scored record's timestamp (the worker's producer stamps it when it sends) minus
the order record's (the generator's send time), one host's clock for both. Every accepted
order must be scored once: the run fails otherwise. Reports p50, p95, p99 and max per round,
and their medians over the rounds.

  python -m bench.fraud_latency --rate 1000 --seconds 60 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
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


def one_round(home: Path, bootstrap: str, redis_url: str, args: argparse.Namespace) -> dict:
    app = f"latency-{uuid.uuid4().hex[:8]}"
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
        "CLICKSTREAM_IDLE_SECONDS": f"{args.idle:g}",
        "CLICKSTREAM_COMMIT_SECONDS": str(args.commit),
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
            seed=7, events_per_second=args.rate, duration_s=args.seconds,
            start_ms=round(time.time() * 1000),
        )  # fmt: skip
        asyncio.run(produce(settings, config, None, pace=True, progress=True))
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
    finally:
        stop(worker)
        log.close()
    if orders.keys() - scored.keys():
        raise SystemExit(f"{len(orders.keys() - scored.keys())} valid orders never scored")
    latencies = sorted(scored[i] - orders[i] for i in orders)
    return {
        "orders": len(latencies),
        "p50_ms": _pick(latencies, 0.50),
        "p95_ms": _pick(latencies, 0.95),
        "p99_ms": _pick(latencies, 0.99),
        "max_ms": latencies[-1] if latencies else None,
    }


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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=int, default=15, help="CLICKSTREAM_IDLE_SECONDS")
    parser.add_argument("--commit", type=float, default=1.0, help="CLICKSTREAM_COMMIT_SECONDS")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fraud-latency-") as tmp:
        home = Path(tmp)
        with local_services(home) as (kafka, redis_server):
            rounds = [
                one_round(home, kafka.bootstrap, redis_server.url, args) for _ in range(args.rounds)
            ]
    for i, r in enumerate(rounds, 1):
        print(f"round {i}: {r}")
    medians = {
        k: statistics.median(r[k] for r in rounds)
        for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")
        if all(r[k] is not None for r in rounds)
    }
    print(
        f"medians over {len(rounds)} rounds, generator rate {args.rate:g}, idle {args.idle:g} s, "
        f"commit {args.commit:g} s: {medians}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
