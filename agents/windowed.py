"""The batched hot path shared by the windowed agents.

Per batch of raw records (many partitions; a whole fetch from agents.batch_delivery, or a
take_events batch under test_context): decode and validate each; advance each source
partition's window state (tables.window_state.apply_batch, with the partition's in-memory dedup
index); emit dead letters and late events; project to Redis; commit the changed keys to the
changelog once per batch. The batch is acked only after all of this, so committed offsets never
pass saved state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from faust.types import TP, EventT

from agents.metrics import record_progress
from serving.projection import MetricLayout, RedisProjection
from streams.eventtime import event_time_ms, format_timestamp
from streams.validation import InvalidEvent, Limits
from tables.dedup import SeenIndex, seen_prefix
from tables.state_table import commit_outcomes, partition_items, partition_reader
from tables.window_state import (
    BatchOutcome,
    Observation,
    Rejected,
    apply_batch,
)
from tables.windows import WindowSpec

Increments = tuple[tuple[str, tuple[int, ...]], ...]


@dataclass(frozen=True)
class EventKind:
    """How one input stream is read: its parser and what each valid event adds to which cells."""

    agent: str  # the agent's name, a verb
    table: str  # its state table's name
    parse: Callable[[bytes, int, Limits], Any]  # raises InvalidEvent
    increments: Callable[[Any], Increments]
    layout: MetricLayout  # where its numbers go in Redis


class WindowedAggregation:
    def __init__(
        self,
        app: faust.App,
        table: faust.Table,
        kind: EventKind,
        spec: WindowSpec,
        limits: Limits,
        projection: RedisProjection,
        dead_letter_topic: str,
        late_topic: str,
    ) -> None:
        self.app = app
        self.table = table
        self.kind = kind
        self.spec = spec
        self.limits = limits
        self.projection = projection
        self.dead_letter_topic = dead_letter_topic
        self.late_topic = late_topic
        self._seen: dict[int, SeenIndex] = {}
        self._seen_generation: int | None = None

    def observe(self, offset: int, log_time_ms: int, value: bytes | None) -> Observation | Rejected:
        try:
            event = self.kind.parse(value or b"", log_time_ms, self.limits)
        except InvalidEvent as exc:
            return Rejected(offset, exc.reason, exc.detail)
        return Observation(
            offset, event.event_id, event_time_ms(event), self.kind.increments(event)
        )

    async def apply_fetched(self, fetched: Mapping[TP, list[Any]]) -> list[BatchOutcome]:
        """The fast path: whole fetched lists of aiokafka records (timestamps in ms)."""
        batch = {tp.partition: records for tp, records in fetched.items()}
        return await self._apply(batch, timestamp_unit_ms=1)

    async def apply_events(self, events: Sequence[EventT]) -> list[BatchOutcome]:
        """The Faust agent path (test_context, or a topic not delivered in batches)."""
        batch: dict[int, list[Any]] = defaultdict(list)
        for event in events:
            batch[event.message.partition].append(event.message)
        return await self._apply(batch, timestamp_unit_ms=1000)  # Faust's are in seconds

    async def _apply(
        self, batch: Mapping[int, list[Any]], timestamp_unit_ms: int
    ) -> list[BatchOutcome]:
        """`batch`: source partition -> its records (offset, timestamp, key, value) in order."""
        outcomes = []
        for partition, records in batch.items():
            items = [
                self.observe(r.offset, round(r.timestamp * timestamp_unit_ms), r.value)
                for r in records
            ]
            read = partition_reader(self.table, partition)
            seen = self._seen_ids(partition)
            outcomes.append(apply_batch(partition, items, self.spec, read, seen))
        # Everything derived goes out before the commit: a crash in between only repeats it
        # (same ids, same absolute values); after the commit, redelivered events are skipped.
        await self._emit(outcomes, batch)
        self.projection.stage(outcomes)
        await self.projection.flush()
        await commit_outcomes(self.app, self.table, outcomes)
        for out in outcomes:
            index = self._seen_ids(out.partition)
            if out.new_bucket is not None:
                index.add(*out.new_bucket)
            index.drop(out.expired_buckets)
        record_progress(self.kind.layout.stream, outcomes)
        return outcomes

    def _seen_ids(self, partition: int) -> SeenIndex:
        """The partition's dedup index, read from the table once per assignment: after a
        rebalance the partition may have been advanced elsewhere."""
        generation = self.app.consumer_generation_id
        if generation != self._seen_generation:
            self._seen.clear()
            self._seen_generation = generation
        index = self._seen.get(partition)
        if index is None:
            stored = partition_items(self.table, partition, seen_prefix(partition))
            index = self._seen[partition] = SeenIndex.load(stored)
        return index

    async def _emit(self, outcomes: Sequence[BatchOutcome], batch: Mapping[int, list[Any]]) -> None:
        """Dead letters and late events, each with a deterministic id: topic/partition/offset."""
        sends = []
        for out in outcomes:
            if not out.dead_letters and not out.late:
                continue
            source_at = {record.offset: record for record in batch[out.partition]}
            for rejected in out.dead_letters:
                source = source_at[rejected.offset]
                headers = [
                    *_source_headers(source),
                    ("reason", rejected.reason.encode()),
                    ("detail", rejected.detail.encode()),
                ]
                sends.append(
                    await self.app.producer.send(
                        self.dead_letter_topic, source.key, source.value, None, None, headers
                    )
                )
            for late in out.late:
                source = source_at[late.offset]
                record = {
                    "id": _source_id(source),
                    "reason": "window closed: event later than allowed lateness",
                    "event_id": late.event_id,
                    "occurred_at": format_timestamp(late.time_ms),
                    "window_start": format_timestamp(late.window_start_ms),
                    "watermark": format_timestamp(late.watermark_ms),
                    "source": {
                        "topic": source.topic,
                        "partition": source.partition,
                        "offset": source.offset,
                    },
                }
                sends.append(
                    await self.app.producer.send(
                        self.late_topic,
                        source.key,
                        orjson.dumps(record),
                        None,
                        None,
                        _source_headers(source),
                    )
                )
        for ack in sends:
            await ack


def _source_id(message: Any) -> str:
    return f"{message.topic}/{message.partition}/{message.offset}"


def _source_headers(message: Any) -> list[tuple[str, bytes]]:
    return [
        ("id", _source_id(message).encode()),
        ("source_topic", message.topic.encode()),
        ("source_partition", str(message.partition).encode()),
        ("source_offset", str(message.offset).encode()),
    ]
