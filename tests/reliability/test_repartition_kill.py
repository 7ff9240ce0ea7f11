"""Repartitioning on a real broker under SIGKILL: the card counts topology (tests.card_counts)
runs as a Faust worker while orders arrive, and dies five times: inside a commit of the
forwarder or of the reader, just after its records went out (so a batch is forwarded twice, and
counts sent twice), or by a SIGKILL at a random moment. Its output, read back from Kafka, must
be the oracle's over the orders and ticks logs exactly: every order counted once on its card,
in the one release order."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from clickstream.kafka_admin import ensure_topics
from clickstream.local.process import free_port
from streams.repartition import read_entry
from streams.topics import TopicSpec
from tests.card_counts import counted, expected_counts
from tests.rig import ROOT, read_to_end, wait_until

pytestmark = pytest.mark.integration

PARTITIONS = 4
ORDERS_PER_S, TOTAL = 40, 2000
T0 = 1_767_225_600_000


def produce_paced(bootstrap: str, topic: str, rng: random.Random) -> None:
    """TOTAL orders at about ORDERS_PER_S (so kills land while records flow), some late, and one
    the re-keying raises on."""

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        try:
            for i in range(TOTAL):
                late = rng.randrange(120_000) if rng.random() < 0.05 else 0
                order = {"id": f"o{i}", "card": f"card-{rng.randrange(40)}",
                         "t": T0 + i * 250 - late}  # fmt: skip
                user = f"user-{rng.randrange(200)}".encode()
                await producer.send(topic, orjson.dumps(order), key=user)
                if i == TOTAL // 3:
                    await producer.send(topic, b"boom", key=b"user-0")
                await asyncio.sleep(1 / ORDERS_PER_S)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(send())


def test_sigkill_while_repartitioning_then_restart_counts_each_order_once(kafka, app_id, tmp_path):
    orders = f"{app_id}-orders"
    asyncio.run(ensure_topics(kafka.bootstrap, [TopicSpec(orders, "", "", PARTITIONS)], 1))
    env = {
        **os.environ,
        "CARDS_APP_ID": app_id,
        "CARDS_ORDERS": orders,
        "CARDS_BOOTSTRAP": kafka.bootstrap,
        "CARDS_PARTITIONS": str(PARTITIONS),
        "CARDS_DATA_DIR": str(tmp_path / "data"),
    }
    outputs, repartition = f"{app_id}-card-counts", f"{app_id}-by_card-repartition"
    rng = random.Random(11)  # kill times

    def start(die_at: str | None = None) -> subprocess.Popen[bytes]:
        log = (tmp_path / "worker.log").open("ab")
        extra = {"CARDS_DIE_AT": die_at} if die_at else {}
        return subprocess.Popen(
            [sys.executable, "-m", "tests.card_counts"],
            env={**env, "CARDS_WEB_PORT": str(free_port()), **extra},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def out_count() -> int:  # 0 until the worker has created its topics
        return len(read_to_end(kafka.bootstrap, outputs)) if exists(outputs) else 0

    def exists(topic: str) -> bool:
        async def names() -> list[str]:
            admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
            await admin.start()
            try:
                return list(await admin.list_topics())
            finally:
                await admin.close()

        return topic in asyncio.run(names())

    producer = threading.Thread(
        target=produce_paced, args=(kafka.bootstrap, orders, random.Random(3)), daemon=True
    )
    producer.start()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        # each worker dies: inside a commit of the forwarder or the reader, just after its
        # records went out (so they go out twice), or by a SIGKILL at a random moment
        for kill, runner in enumerate(["forward", "read", None, "forward", "read"]):
            worker = start(f"{runner}:{rng.randrange(2, 8)}" if runner else None)
            workers.append(worker)
            if runner:
                wait_until(lambda w=worker: w.poll() is not None, 180, f"death {kill} in {runner}")
                continue
            before = out_count()
            wait_until(  # at work: counts coming out
                lambda b=before: out_count() >= b + 40,
                within=180,
                why=f"counts coming out before kill {kill}",
                alive=lambda w=worker: w.poll() is None,
            )
            time.sleep(rng.uniform(0, 1.5))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        worker = start()
        workers.append(worker)
        producer.join(TOTAL / ORDERS_PER_S + 120)
        wait_until(
            lambda: len(counted(read_to_end(kafka.bootstrap, outputs))) >= TOTAL,
            within=240,
            why="every order counted after the last restart",
            alive=lambda: worker.poll() is None,
        )
    finally:
        for worker in workers:  # the last one stops as a user stops it; any other is dead
            if worker.poll() is None:
                worker.send_signal(signal.SIGINT)
                try:
                    worker.wait(60)
                except subprocess.TimeoutExpired:
                    worker.kill()

    by_partition: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for topic in (orders, f"{app_id}-{orders}-ticks"):
        for record in read_to_end(kafka.bootstrap, topic):
            by_partition[topic][record.partition].append(record)
    assert sum(len(records) for records in by_partition[orders].values()) == TOTAL + 1  # read only
    logs = [
        [sorted(by_partition[t][p], key=lambda r: r.offset) for p in range(PARTITIONS)]
        for t in (orders, f"{app_id}-{orders}-ticks")
    ]
    records = read_to_end(kafka.bootstrap, outputs)
    assert counted(records) == expected_counts({orders: (logs[0], logs[1])})
    entries = [read_entry(r.headers) for r in read_to_end(kafka.bootstrap, repartition)]
    ids = [entry.id for entry in entries if entry is not None]
    assert len(ids) > len(set(ids)) == TOTAL  # entries were forwarded twice, and count once
    assert len(records) > TOTAL  # and counts sent twice
    letters = read_to_end(kafka.bootstrap, f"{app_id}-dead-letters")
    assert {r.value for r in letters} == {b"boom"}
