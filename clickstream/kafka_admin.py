"""Reaching the configured cluster: clients that fail in one line, our topics created
(idempotent), consumer groups described, whole topics read."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    GroupCoordinatorNotAvailableError,
    KafkaConnectionError,
    TopicAlreadyExistsError,
    for_code,
)
from aiokafka.structs import TopicPartition as TP

from streams.topics import TopicSpec


class KafkaUnreachable(RuntimeError):
    """Kafka cannot be reached or refuses what we need; the message says the fix."""


def _unreachable(bootstrap: str) -> KafkaUnreachable:
    return KafkaUnreachable(
        f"cannot reach Kafka at {bootstrap}; start it with `clickstream kafka start` "
        f"or set CLICKSTREAM_KAFKA_BOOTSTRAP to a reachable broker"
    )


async def admin_client(bootstrap: str) -> AIOKafkaAdminClient:
    """A started admin client (close() it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await admin.start()
    except KafkaConnectionError:
        raise _unreachable(bootstrap) from None
    return admin


async def start_consumer(consumer: AIOKafkaConsumer, bootstrap: str) -> None:
    try:
        await consumer.start()
    except KafkaConnectionError:
        raise _unreachable(bootstrap) from None


async def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec], replication: int) -> None:
    admin = await admin_client(bootstrap)
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                spec.name,
                spec.partitions,
                replication,
                topic_configs={"cleanup.policy": "compact"} if spec.compacted else {},
            )
            for spec in specs
            if spec.name not in existing
        ]
        if missing:
            response = await admin.create_topics(missing)
            for topic, code, *_ in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):  # another worker was first
                    raise KafkaUnreachable(
                        f"Kafka at {bootstrap} refused to create topic {topic}: "
                        f"{for_code(code).__name__}; check CLICKSTREAM_PARTITIONS and "
                        f"CLICKSTREAM_REPLICATION against the cluster"
                    )
    finally:
        await admin.close()


async def group_members(admin: AIOKafkaAdminClient, group: str, within_s: float = 30) -> int:
    """How many members consumer group `group` has now (0 when it does not exist). A cluster
    that has not placed group coordinators yet (a new one) is asked again for `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            responses = await admin.describe_consumer_groups([group])
            break
        except GroupCoordinatorNotAvailableError:
            if time.monotonic() > deadline:
                raise KafkaUnreachable(
                    f"Kafka has no group coordinator for {group} after {within_s:g} s; check "
                    f"that the cluster can create its __consumer_offsets topic"
                ) from None
            await asyncio.sleep(0.5)
    return sum(
        len(described[5])  # (error_code, group, state, protocol_type, protocol, members, ...)
        for response in responses
        for described in response.groups
        if described[1] == group
    )


async def partitions_of(bootstrap: str, topics: list[str]) -> dict[str, list[int]]:
    """Topic -> its partitions, for those of `topics` that exist."""
    admin = await admin_client(bootstrap)
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {
        d["topic"]: sorted(p["partition"] for p in d["partitions"])
        for d in described
        if d["error_code"] == 0
    }


async def read_whole(
    bootstrap: str,
    topics: dict[str, list[int]],
    take: Callable[[str, Any], None],
    seen: Callable[[int, int], None],
) -> tuple[int, int]:
    """Every record of `topics` (name -> partitions) up to their ends now, each given to
    `take(topic, record)`, with `seen(read, total)` as it goes; no group, nothing committed.
    Returns (read, total): fewer read means records vanished meanwhile (retention)."""
    tps = [TP(name, p) for name, numbers in topics.items() for p in numbers]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await start_consumer(consumer, bootstrap)
    read = total = 0
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        total = sum(ends[tp] - starts[tp] for tp in tps)
        for tp in tps:  # explicit seeks: seek_to_beginning() races assign()'s own reset
            consumer.seek(tp, starts[tp])
        left = {tp for tp in tps if ends[tp] > starts[tp]}
        while left:
            batches = await consumer.getmany(*left, timeout_ms=1000, max_records=10_000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < ends[tp]:
                        take(tp.topic, record)
                        read += 1
                if records and records[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
            seen(read, total)
    finally:
        with contextlib.suppress(asyncio.CancelledError):  # aiokafka 0.14, group-less stop
            await consumer.stop()
    return read, total
