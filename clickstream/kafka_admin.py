"""Reaching the configured cluster: clients that fail in one line, our topics created
(idempotent), consumer groups deleted."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError, for_code

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


async def group_members(admin: AIOKafkaAdminClient, group: str) -> int:
    """How many members consumer group `group` has now (0 when it does not exist)."""
    responses = await admin.describe_consumer_groups([group])
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
