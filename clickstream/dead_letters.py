"""Reading the dead-letter topic back: what was rejected, why, and from where; and sending
the originals back in, as requests to `<app>-retry` (streams.retries), never to an input.

Re-injection rule: a letter's original is the record retry_of names (a re-injected copy
rejected again), else its source; only an original of an input topic is re-injected, once per
run (by its source id); its bytes and record timestamp are the letter's when the payload is
whole and the letter has source_timestamp, else the input topic's (gone: skipped).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.structs import TopicPartition as TP

from clickstream.kafka_admin import (
    KafkaUnreachable,
    partitions_of,
    read_whole,
    start_consumer,
)
from clickstream.settings import Settings, SettingsError
from generator.produce import UNACKED_LIMIT, input_producer
from streams.dead_letters import DeadLetter, read_dead_letter
from streams.retries import Request, request_headers

READ_SECONDS = 30.0  # to wait for an original's fetch before giving up


class NoDeadLetterTopic(LookupError):
    """The dead-letter topic does not exist; the message names it and the likely fix."""


class NoRetryTopic(LookupError):
    """The app's retry topic does not exist; the message says who creates it."""


def _no_dead_letter_topic(topic: str, bootstrap: str) -> NoDeadLetterTopic:
    return NoDeadLetterTopic(
        f"topic {topic} does not exist at {bootstrap}: check CLICKSTREAM_APP_ID "
        f"(the topic is <app id>-dead-letters), or start a worker first (it creates it)"
    )


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
            raise _no_dead_letter_topic(topic, bootstrap)
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


@dataclass(frozen=True, slots=True)
class Reinjection:
    """One request to send: the original (its position and record timestamp), its key and
    bytes, and the reason its letter gives."""

    request: Request
    key: bytes | None
    value: bytes | None
    reason: str

    @property
    def topic(self) -> str:
        return self.request.topic

    @property
    def source_id(self) -> str:
        return self.request.source_id


@dataclass(frozen=True, slots=True)
class Unread:
    """An original whose bytes and record timestamp are to be read from its input topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None  # the letter's: the original key
    reason: str

    @property
    def source_id(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    def read(self, record: Any) -> Reinjection:
        """Its reinjection, given the input topic's record at its position."""
        request = Request(self.topic, self.partition, self.offset, record.timestamp)
        return Reinjection(request, self.key, record.value, self.reason)


@dataclass
class Selection:
    """The originals of the letters chosen, each once."""

    letters: int = 0  # that matched
    whole: list[Reinjection] = field(default_factory=list)  # from their letters
    unread: list[Unread] = field(default_factory=list)  # to read from their input topics
    not_reinjectable: int = 0  # of no input topic (ticks, order facts, ...) or of no source


def original_of(letter: DeadLetter) -> Reinjection | Unread | None:
    """A letter's original: whole when the letter holds its bytes (not truncated) and record
    timestamp (source_timestamp), else to be read; None when the letter names no source."""
    if letter.original is not None and not letter.truncated:
        return Reinjection(letter.original, letter.key, letter.payload, letter.reason)
    where = letter.source if letter.original is None else letter.original.source_id
    try:
        topic, partition, offset = where.rsplit("/", 2)
        return Unread(topic, int(partition), int(offset), letter.key, letter.reason)
    except ValueError:
        return None


def select_originals(
    letters: list[tuple[int, DeadLetter]],
    inputs: Collection[str],
    reason: str | None = None,
    source: str | None = None,
    since_ms: int | None = None,
) -> Selection:
    """The originals of the letters with that reason, whose original is from that topic,
    rejected at or after `since_ms`: each once (as its newest letter has it), those of an
    input topic kept, the others counted."""
    selection = Selection()
    originals: dict[str, Reinjection | Unread] = {}
    for at, letter in sorted(letters, key=lambda pair: pair[0]):
        original = original_of(letter)
        if (
            (reason is not None and letter.reason != reason)
            or (source is not None and (original is None or original.topic != source))
            or (since_ms is not None and at < since_ms)
        ):
            continue
        selection.letters += 1
        if original is None:
            selection.not_reinjectable += 1
        else:
            originals[original.source_id] = original
    for original in originals.values():
        if original.topic not in inputs:
            selection.not_reinjectable += 1
        elif isinstance(original, Reinjection):
            selection.whole.append(original)
        else:
            selection.unread.append(original)
    return selection


@dataclass(frozen=True, slots=True)
class Reinjected:
    """What a run re-injected (or would, dry), per reason, and what it skipped and why."""

    topic: str
    letters: int
    by_reason: Counter[str]
    not_reinjectable: int
    gone: int
    dry_run: bool

    def describe(self) -> str:
        verb = "would re-inject" if self.dry_run else "re-injected"
        dry = " (dry run: nothing sent)" if self.dry_run else ""
        lines = [
            f"{verb} {self.by_reason.total()} originals of {self.letters} dead letters "
            f"into {self.topic}{dry}",
            *(f"{n:>8}  {reason}" for reason, n in self.by_reason.most_common()),
            f"skipped: {self.not_reinjectable} not re-injectable (not from an input topic), "
            f"{self.gone} original gone (no longer in its input topic)",
        ]
        return "\n".join(lines)


async def reinject(
    s: Settings,
    reason: str | None,
    source: str | None,
    since_ms: int | None,
    dry_run: bool,
    meter: Callable[[int], Any],
) -> Reinjected:
    """Send the originals of the matching dead letters to `<app>-retry` as requests
    (`dry_run`: read and report only); `meter(total)` a progress bar of the sends."""
    if s.clock != s.app_id:
        raise SettingsError(
            f"{s.app_id} follows the clock of {s.clock} (CLICKSTREAM_CLOCK_APP_ID), so its time "
            f"logs are {s.clock}'s: re-inject into that app instead "
            f"(CLICKSTREAM_APP_ID={s.clock}, no CLICKSTREAM_CLOCK_APP_ID)"
        )
    letters_topic, retry_topic = s.topics.dead_letters.name, s.topics.retry.name
    partitions = await partitions_of(s.bootstrap, [letters_topic, retry_topic])
    if letters_topic not in partitions:
        raise _no_dead_letter_topic(letters_topic, s.bootstrap)
    if retry_topic not in partitions:
        raise NoRetryTopic(
            f"topic {retry_topic} does not exist at {s.bootstrap}: start a worker first: it "
            f"creates it (a worker of this version, CLICKSTREAM_APP_ID={s.app_id})"
        )
    letters: list[tuple[int, DeadLetter]] = []

    def take(_topic: str, record: Any) -> None:
        letters.append(
            (record.timestamp, read_dead_letter(record.headers, record.value, record.key))
        )

    await read_whole(
        s.bootstrap, {letters_topic: partitions[letters_topic]}, take, lambda _n, _of: None
    )
    inputs = (s.topics.clicks.name, s.topics.orders.name)
    chosen = select_originals(letters, inputs, reason, source, since_ms)
    read = await read_originals(s.bootstrap, chosen.unread)
    requests = sorted([*chosen.whole, *read], key=lambda r: (r.topic, r.request.partition,
                                                              r.request.offset))  # fmt: skip
    if not dry_run:
        await send_requests(s.bootstrap, retry_topic, partitions[retry_topic], requests, meter)
    return Reinjected(
        retry_topic,
        chosen.letters,
        Counter(r.reason for r in requests),
        chosen.not_reinjectable,
        len(chosen.unread) - len(read),
        dry_run,
    )


async def read_originals(bootstrap: str, unread: list[Unread]) -> list[Reinjection]:
    """The originals as their input topics hold them (bytes, record timestamp); one no longer
    there (retention, compaction, a topic recreated) is left out."""
    wanted: dict[TP, dict[int, Unread]] = {}
    for original in unread:
        wanted.setdefault(TP(original.topic, original.partition), {})[original.offset] = original
    if not wanted:
        return []
    partitions = await partitions_of(bootstrap, sorted({tp.topic for tp in wanted}))
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await start_consumer(consumer, bootstrap)
    found: list[Reinjection] = []
    try:
        for tp, at in sorted(wanted.items()):
            if tp.partition in partitions.get(tp.topic, ()):
                found += [at[r.offset].read(r) for r in await _records_at(consumer, tp, set(at))]
    finally:
        with contextlib.suppress(asyncio.CancelledError):  # aiokafka 0.14, group-less stop
            await consumer.stop()
    return found


async def _records_at(consumer: AIOKafkaConsumer, tp: TP, offsets: set[int]) -> list[Any]:
    """The records of partition `tp` at `offsets`, those it still holds: runs of offsets in
    one fetch, a seek to each gap."""
    consumer.assign([tp])
    start = (await consumer.beginning_offsets([tp]))[tp]
    end = (await consumer.end_offsets([tp]))[tp]
    left = sorted(o for o in offsets if start <= o < end)
    records: list[Any] = []
    i, position = 0, None
    deadline = time.monotonic() + READ_SECONDS
    while i < len(left):
        if position != left[i]:
            consumer.seek(tp, left[i])
            position = left[i]
        batch = (await consumer.getmany(tp, timeout_ms=1000, max_records=500)).get(tp, [])
        if not batch:
            if time.monotonic() > deadline:
                raise KafkaUnreachable(
                    f"Kafka sent no record of {tp.topic} partition {tp.partition} from offset "
                    f"{left[i]} in {READ_SECONDS:g} s; run it again"
                )
            continue
        records += [r for r in batch if r.offset in offsets]
        position = batch[-1].offset + 1
        i = bisect_right(left, batch[-1].offset, lo=i)
        deadline = time.monotonic() + READ_SECONDS
    return records


async def send_requests(
    bootstrap: str,
    topic: str,
    partitions: list[int],
    requests: list[Reinjection],
    meter: Callable[[int], Any],
) -> None:
    """Each request to its original's partition of `topic` (not by key), keyed and valued as
    the original, headers streams.retries.request_headers; acks from all replicas, awaited."""
    beyond = {r.request.partition for r in requests} - set(partitions)
    if beyond:
        raise KafkaUnreachable(
            f"topic {topic} has no partition {min(beyond)} (it has {len(partitions)}, the inputs "
            f"more): recreate it with the inputs' partition count, CLICKSTREAM_PARTITIONS"
        )
    largest = max((len(r.value or b"") for r in requests), default=0)
    producer = input_producer(bootstrap, 2 * largest)  # idempotent, acks="all", linger 20 ms
    try:
        await producer.start()
        with meter(len(requests)) as bar:
            unacked: list[asyncio.Future[Any]] = []
            for r in requests:
                headers = request_headers(r.request, r.reason)
                unacked.append(
                    await producer.send(
                        topic, r.value, key=r.key, partition=r.request.partition, headers=headers
                    )
                )
                bar.update()
                if len(unacked) >= UNACKED_LIMIT:
                    await asyncio.gather(*unacked)
                    unacked.clear()
            await asyncio.gather(*unacked)
    except KafkaError as exc:
        raise KafkaUnreachable(
            f"Kafka at {bootstrap} did not take the requests to {topic}: {exc!r}; run it again "
            f"(an original re-injected twice counts once)"
        ) from None
    finally:
        await producer.stop()
