"""The batched hot path shared by the windowed agents.

Per batch of raw records (many partitions; a whole fetch from agents.batch_delivery, or a
take_events batch under test_context): decode and validate each (ticks are recognised by their
header); advance each source partition's window state (tables.window_state.apply_batch, with
the partition's in-memory dedup index); emit dead letters, late events and the results of the
windows that closed; project to Redis; commit the changed keys to the changelog once per
batch. The batch is acked only after all of this, so committed offsets never pass saved state.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from faust.types import TP, EventT

from agents.metrics import record_progress
from agents.window_results import result_key, window_result
from serving.projection import RedisProjection
from streams.eventtime import event_time_ms, format_timestamp
from streams.ticks import is_tick, tick_record, tick_time
from streams.topics import Topology
from streams.validation import InvalidEvent, Limits
from tables.dedup import SeenIndex, seen_prefix
from tables.event_clock import EventClock
from tables.state_table import PartitionState, commit_outcomes
from tables.window_state import (
    BatchOutcome,
    Increments,
    Observation,
    Progress,
    Rejected,
    Tick,
    Uniques,
    apply_batch,
    progress_key,
)
from tables.windows import WindowSpec


@dataclass(frozen=True)
class EventKind:
    """How one input stream is read: its parser and what each valid event adds to its pane."""

    agent: str  # the agent's name, a verb
    table: str  # its state table's name
    stream: str  # clicks | orders: names its counters, results and Prometheus labels
    parse: Callable[[bytes, int, Limits], Any]  # raises InvalidEvent
    measure: Callable[[Any], tuple[Increments, Uniques]]


class WindowedAggregation:
    def __init__(
        self,
        app: faust.App,
        table: faust.Table,
        kind: EventKind,
        spec: WindowSpec,
        limits: Limits,
        projection: RedisProjection,
        topics: Topology,
        idle_s: float,
    ) -> None:
        self.app = app
        self.table = table
        self.kind = kind
        self.spec = spec
        self.limits = limits
        self.projection = projection
        self.topics = topics
        self.clock = EventClock(idle_s)
        self._seen: dict[int, SeenIndex] = {}
        self._seen_generation: int | None = None

    def observe(self, record: Any, log_time_ms: int) -> Observation | Tick | Rejected:
        offset = record.offset
        if is_tick(record.headers):
            at = tick_time(record.value)
            if at is None:
                return Rejected(offset, "bad_tick", "a record with the tick header but no tick_ms")
            return Tick(offset, at)
        try:
            event = self.kind.parse(record.value or b"", log_time_ms, self.limits)
        except InvalidEvent as exc:
            return Rejected(offset, exc.reason, exc.detail)
        return Observation(offset, event.event_id, event_time_ms(event), *self.kind.measure(event))

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
        now = time.monotonic()
        for partition, records in batch.items():
            items = [self.observe(r, round(r.timestamp * timestamp_unit_ms)) for r in records]
            store = PartitionState(self.table, partition)
            seen = self._seen_ids(partition)
            outcomes.append(apply_batch(partition, items, self.spec, store, seen))
            self.clock.received(partition, now)
        # Everything derived goes out before the commit: a crash in between only repeats it
        # (same ids, same content); after the commit, redelivered events are skipped.
        await self._emit(outcomes, batch)
        self.projection.stage(outcomes)
        await self.projection.flush()
        await commit_outcomes(self.app, self.table, outcomes)
        for out in outcomes:
            index = self._seen_ids(out.partition)
            if out.new_bucket is not None:
                index.add(*out.new_bucket)
            index.drop(out.expired_buckets)
        record_progress(self.kind.stream, outcomes)
        return outcomes

    async def tick_idle_partitions(self, source_topic: str) -> dict[int, int]:
        """Append a tick to each assigned partition of `source_topic` that is due one
        (tables.event_clock); returns partition -> tick time."""
        consumer = self.app.consumer
        watermarks: dict[int, int] = {}
        caught_up: dict[int, bool] = {}
        for tp in consumer.assignment():
            if tp.topic != source_topic:
                continue
            progress = Progress.decode(
                PartitionState(self.table, tp.partition).get(progress_key(tp.partition))
            )
            watermarks[tp.partition] = progress.watermark_ms
            highwater = consumer.highwater(tp)
            caught_up[tp.partition] = highwater is not None and progress.offset + 1 >= highwater
        due = self.clock.due_ticks(watermarks, caught_up, time.monotonic())
        for partition, at in due.items():
            value, headers = tick_record(at, self.app.conf.id)
            await self.app.producer.send(source_topic, None, value, partition, None, headers)
        return due

    def _seen_ids(self, partition: int) -> SeenIndex:
        """The partition's dedup index, read from the table once per assignment: after a
        rebalance the partition may have been advanced elsewhere."""
        generation = self.app.consumer_generation_id
        if generation != self._seen_generation:
            self._seen.clear()
            self._seen_generation = generation
        index = self._seen.get(partition)
        if index is None:
            stored = PartitionState(self.table, partition).items(seen_prefix(partition))
            index = self._seen[partition] = SeenIndex.load(stored)
        return index

    async def _emit(self, outcomes: Sequence[BatchOutcome], batch: Mapping[int, list[Any]]) -> None:
        """Dead letters, late events and window results, each with a deterministic id."""
        send = self.app.producer.send
        sends = []
        stream = self.kind.stream
        partitions = self.topics.clicks.partitions  # orders: the same (co-partitioned)
        for out in outcomes:
            for window in out.closed:
                result = window_result(stream, out.partition, partitions, window, self.spec.size_ms)
                key = result_key(stream, result["kind"], window.start_ms).encode()
                value = orjson.dumps(result)
                sends.append(
                    await send(self.topics.window_results.name, key, value, None, None, None)
                )
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
                    await send(
                        self.topics.dead_letters.name, source.key, source.value, None, None, headers
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
                    await send(
                        self.topics.late_events.name,
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
