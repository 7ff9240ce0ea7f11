"""Replay against live on the same data: `python -m bench.replay [--count N] [--rounds R]`.

Throwaway Kafka and Redis on loopback; N generator records (default faults) produced once.
Per round, side by side on the same machine and broker:

  live    `clickstream worker` under a fresh app id, from its spawn until its consumer group
          has committed every input partition's end and read back its derived topics
          (clickstream.replay.watch, the rule `clickstream replay` stops by)
  replay  `clickstream replay --app-id <live>-v2` beside it (one worker, following live's
          time log), the command's wall time: preparation, worker start-up and stop included
  diff    `clickstream diff <live> <live>-v2`: its wall time, and it must say identical

Rates are records / seconds (start-up included for both); the report gives each round and the
medians. Live is stopped before its replay starts, so the two never share the two cores. Both
run without idle ticks (CLICKSTREAM_IDLE_SECONDS=0): the work measured is the records'.
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

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from bench.harness import local_services, produce_data, stop, warm_up_broker
from clickstream.local.process import free_port
from clickstream.replay import Bounds, watch
from clickstream.settings import Settings, load

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 4


def _cli(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "clickstream", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    return done, time.monotonic() - began


def _live(env: dict[str, str], log: Path) -> float:
    """Seconds from a live worker's spawn to all of its input read and its results out."""
    settings = load(env, dotenv=None)
    began = time.monotonic()
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "clickstream", "worker"],
            env={**env, "CLICKSTREAM_WORKER_PORT": str(free_port())},
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        bounds = asyncio.run(_all_of_it(settings))

        def seen(_progress: object) -> None:
            if worker.poll() is not None:
                raise RuntimeError(f"the live worker exited; see {log}")

        asyncio.run(watch(settings, bounds, seen))
        return time.monotonic() - began
    finally:
        stop(worker)


async def _all_of_it(settings: Settings) -> Bounds:
    """Every record of the inputs now, as bounds (the live worker reads on past them)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap)
    await consumer.start()
    try:
        tps = [
            TopicPartition(spec.name, p)
            for spec in settings.topics.inputs()
            for p in range(settings.partitions)
        ]
        start = dict(await consumer.beginning_offsets(tps))
        stop = dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()
    return Bounds(settings.app_id, settings.app_id, "earliest", "now", start, stop)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.replay", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--count", type=int, default=200_000, help="generator records")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rows: list[tuple[float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as home_text:
        home = Path(home_text)
        with local_services(home) as (kafka, redis_server):
            clicks, orders = "bench-clicks", "bench-orders"
            report = produce_data(
                kafka.bootstrap, clicks, orders, PARTITIONS, args.count, args.seed
            )
            records = report.total
            warm_up_broker(kafka.bootstrap, clicks)
            for round_ in range(1, args.rounds + 1):
                app = f"bench-{round_}-{uuid.uuid4().hex[:6]}"
                env = {
                    **{k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_")},
                    "CLICKSTREAM_KAFKA_BOOTSTRAP": kafka.bootstrap,
                    "CLICKSTREAM_REDIS_URL": redis_server.url,
                    "CLICKSTREAM_APP_ID": app,
                    "CLICKSTREAM_CLICKS_TOPIC": clicks,
                    "CLICKSTREAM_ORDERS_TOPIC": orders,
                    "CLICKSTREAM_PARTITIONS": str(PARTITIONS),
                    "CLICKSTREAM_VAR_DIR": str(home / app),
                    "CLICKSTREAM_LOG_LEVEL": "warn",
                    # no ticks: an idle live worker's ticks keep its derived topics moving,
                    # so it would never look done (a replay bounds the ticks it follows)
                    "CLICKSTREAM_IDLE_SECONDS": "0",
                }
                live_s = _live(env, home / f"{app}-live.log")
                replayed, replay_s = _cli(env, "replay", "--app-id", f"{app}-v2")
                if replayed.returncode:
                    print(replayed.stderr[-2000:], file=sys.stderr)
                    return 1
                diffed, diff_s = _cli(env, "diff", app, f"{app}-v2")
                if diffed.returncode:
                    print(diffed.stdout, file=sys.stderr)
                    return 1
                rows.append((records / live_s, records / replay_s, diff_s))
                print(
                    f"round {round_}: live {records / live_s:,.0f} rec/s, replay "
                    f"{records / replay_s:,.0f} rec/s ({live_s / replay_s:.2f}x live), diff "
                    f"{diff_s:.1f} s, identical",
                    flush=True,
                )
    live, replay, diff = (statistics.median(column) for column in zip(*rows, strict=True))
    ratio = statistics.median(r / v for v, r, _ in rows)  # of the rounds' own ratios
    print(
        f"median of {len(rows)}, {records:,} records: live {live:,.0f} rec/s, replay "
        f"{replay:,.0f} rec/s, replay / live {ratio:.2f}x, diff {diff:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
