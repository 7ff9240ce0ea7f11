"""Creating our topics on the configured cluster (idempotent)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from streams.topics import TopicSpec


class KafkaUnreachable(RuntimeError):
    pass


async def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec], replication: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await admin.start()
    except KafkaConnectionError:
        raise KafkaUnreachable(
            f"cannot reach Kafka at {bootstrap}; start it with `clickstream kafka start` "
            f"or set CLICKSTREAM_KAFKA_BOOTSTRAP to a reachable broker"
        ) from None
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
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was first
                await admin.create_topics(missing)
    finally:
        await admin.close()
