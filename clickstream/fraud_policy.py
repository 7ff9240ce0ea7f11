"""`clickstream fraud policy publish|show`: versions of the scoring policy in the control topic
(streams.fraud_policy), written to every partition, each at least POLICY_LEAD_MS ahead."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from agents.fraud import POLICY_LEAD_MS
from clickstream.kafka_admin import KafkaUnreachable, ensure_topics
from clickstream.settings import Settings, SettingsError
from fraud.features import FEATURES
from fraud.policy import PolicyError, load_policy
from streams.eventtime import format_timestamp
from streams.fraud_policy import (
    PolicyRecord,
    policy_key,
    policy_record_value,
    read_policy_record,
)


async def published(settings: Settings) -> list[PolicyRecord]:
    """The versions in the control topic (partition 0 holds every one), oldest first."""
    topic = settings.topics.fraud_policy
    await ensure_topics(settings.bootstrap, [topic], settings.replication)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    try:
        await consumer.start()
    except KafkaConnectionError:
        raise _unreachable(settings) from None
    try:
        tp = TopicPartition(topic.name, 0)
        consumer.assign([tp])
        # an explicit seek: seek_to_beginning() races the reset that assign() started, which
        # (auto_offset_reset "latest") could skip every version
        consumer.seek(tp, (await consumer.beginning_offsets([tp]))[tp])
        end = (await consumer.end_offsets([tp]))[tp]
        records, deadline = [], time.monotonic() + 10
        while await consumer.position(tp) < end and time.monotonic() < deadline:
            for batch in (await consumer.getmany(tp, timeout_ms=500)).values():
                records += [read_policy_record(r.value) for r in batch]
        return [record for record in records if record is not None]
    finally:
        with contextlib.suppress(asyncio.CancelledError):  # aiokafka 0.14, group-less stop
            await consumer.stop()


async def publish(settings: Settings, path: Path, effective_ms: int | None) -> PolicyRecord:
    """Publish the policy file as a new version; raises SettingsError naming what is wrong."""
    if settings.clock != settings.app_id:
        raise SettingsError(
            f"this app follows the control logs of {settings.clock} (CLICKSTREAM_CLOCK_APP_ID): "
            f"publish with CLICKSTREAM_APP_ID={settings.clock}"
        )
    try:
        policy = load_policy(path, FEATURES)
    except PolicyError as exc:
        raise SettingsError(str(exc)) from None
    earliest = round(time.time() * 1000) + POLICY_LEAD_MS
    if effective_ms is not None and effective_ms < earliest:
        raise SettingsError(
            f"--effective {format_timestamp(effective_ms)} is too soon: a version takes effect "
            f"at least {POLICY_LEAD_MS // 1000} s after it is published (omit it for that)"
        )
    newest = max(
        [settings.fraud_policy.version, *(r.policy.version for r in await published(settings))]
    )
    if policy.version <= newest:
        raise SettingsError(
            f"{path}: version {policy.version} is not new; versions never change, so set "
            f"`version = {newest + 1}` in the file"
        )
    record = PolicyRecord(policy, effective_ms or earliest)
    value = policy_record_value(policy, record.effective_ms, settings.app_id)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all")
    try:
        await producer.start()
    except KafkaConnectionError:
        raise _unreachable(settings) from None
    try:
        topic = settings.topics.fraud_policy
        for partition in range(topic.partitions):
            await producer.send_and_wait(
                topic.name, value, key=policy_key(policy.version), partition=partition
            )
    finally:
        await producer.stop()
    return record


def _unreachable(settings: Settings) -> KafkaUnreachable:
    return KafkaUnreachable(
        f"cannot reach Kafka at {settings.bootstrap}; set CLICKSTREAM_KAFKA_BOOTSTRAP or start it"
    )
