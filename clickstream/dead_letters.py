"""Reading the dead-letter topic back: what was rejected, why, and from where."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError

from clickstream.kafka_admin import KafkaUnreachable
from streams.dead_letters import DeadLetter, read_dead_letter


class NoDeadLetterTopic(LookupError):
    """The dead-letter topic does not exist; the message names it and the likely fix."""


async def read_dead_letters(
    bootstrap: str, topic: str, last: int | None
) -> list[tuple[int, DeadLetter]]:
    """(record timestamp ms, letter) of the newest `last` dead letters of every partition (None:
    all of them); no consumer group, nothing committed.

    Raises NoDeadLetterTopic at once when `topic` is missing (subscribing to it would wait for
    its metadata until the request timeout, then raise UnknownTopicOrPartitionError).
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        await consumer.start()
    except KafkaConnectionError:
        raise KafkaUnreachable(
            f"cannot reach Kafka at {bootstrap}; set CLICKSTREAM_KAFKA_BOOTSTRAP or start it"
        ) from None
    try:
        if topic not in await consumer.topics():
            raise NoDeadLetterTopic(
                f"topic {topic} does not exist at {bootstrap}: check CLICKSTREAM_APP_ID "
                f"(the topic is <app id>-dead-letters), or start a worker first (it creates it)"
            )
        consumer.subscribe([topic])
        deadline = time.monotonic() + 10
        while not consumer.assignment() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # a group-less subscription assigns every partition
        partitions = sorted(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, 0 if last is None else max(0, ends[tp] - last))
        letters: list[tuple[int, DeadLetter]] = []
        while time.monotonic() < deadline and [
            tp for tp in partitions if await consumer.position(tp) < ends[tp]
        ]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                letters += [(r.timestamp, read_dead_letter(r.headers, r.value)) for r in records]
        return letters
    finally:
        # aiokafka 0.14 re-raises the cancellation of its own idle commit task when a
        # group-less consumer stops; nothing of ours was cancelled.
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()


def matching(
    letters: list[tuple[int, DeadLetter]],
    reason: str | None = None,
    source: str | None = None,
    since_ms: int | None = None,
) -> list[tuple[int, DeadLetter]]:
    """The letters with that reason, from that source topic, rejected at or after `since_ms`."""
    return [
        (at, letter)
        for at, letter in letters
        if (reason is None or letter.reason == reason)
        and (source is None or letter.source.rsplit("/", 2)[0] == source)
        and (since_ms is None or at >= since_ms)
    ]
