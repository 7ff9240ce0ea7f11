"""Creating our topics on the configured cluster (idempotent)."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError, for_code

from streams.topics import TopicSpec


class KafkaUnreachable(RuntimeError):
    """Kafka cannot be reached or refuses what we need; the message says the fix."""


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
