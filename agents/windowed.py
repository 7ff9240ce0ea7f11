"""The batched hot path shared by the windowed agents.

Per batch of raw records (many partitions; a whole fetch from agents.batch_delivery, or a
take_events batch under test_context): decode and validate each (ticks are recognised by their
header); advance each source partition's window state (tables.window_state.apply_batch, over
the stored state overlaid with what earlier batches staged, and the partition's in-memory dedup
index); emit dead letters, late events and the results of the windows that closed; stage the
changed keys. Once per commit interval the staged keys go to Redis and to the changelog, each
key once however many batches changed it, and only then are the batches' offsets acked, so
committed offsets never pass saved state. A rebalance in between discards what was staged:
the partition's next owner reprocesses from the committed offset, and the per-key offsets in
the state make that exact.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import faust
import orjson
from faust.types import TP, EventT

from agents.batch_delivery import Ack
from agents.metrics import forget_unassigned, record_progress
from agents.session_summaries import session_summary
from agents.window_results import progress_record, window_key, window_result
from serving.projection import RedisProjection
from streams.control import control_verdict
from streams.eventtime import event_time_ms, format_timestamp
from streams.order_facts import is_order_facts, order_facts_records, read_order_facts
from streams.ticks import is_tick, read_tick, tick_record
from streams.topics import Topology
from streams.validation import InvalidEvent, Limits
from tables.attribution import OrderFacts
from tables.bounded import RECORD_BYTES
from tables.dedup import SeenIndex, seen_prefix
from tables.event_clock import EventClock
from tables.sessions import SessionIndex
from tables.state_table import PartitionState, StagedState, commit_writes
from tables.window_state import (
    NO_WATERMARK,
    WRITE_ORDER,
    BatchOutcome,
    ClosedWindow,
    Observation,
    Progress,
    Rejected,
    Tick,
    apply_batch,
    load_sessions,
    progress_key,
)
from tables.windows import WindowSpec

ATTRIBUTION = "attribution"  # the stream name of attribution results


@dataclass(frozen=True)
class EventKind:
    """How one input stream is read: its parser and what each valid event adds to its pane."""

    agent: str  # the agent's name, a verb
    table: str  # its state table's name
    stream: str  # clicks | orders: names its counters, results and Prometheus labels
    parse: Callable[[bytes, int, Limits], Any]  # raises InvalidEvent
    measure: Callable[[Any], tuple[Any, ...]]  # Observation's fields after its time
    forwards_facts: bool = False  # orders: forward accepted orders to the clicks side


class WindowedAggregation:
    def __init__(
        self,
        app: faust.App,
        table: faust.Table,
        kind: EventKind,
        source_topic: str,
        spec: WindowSpec,
        limits: Limits,
        projection: RedisProjection,
        topics: Topology,
        idle_s: float,
        commit_s: float,
        session_gap_ms: int | None = None,
    ) -> None:
        """`session_gap_ms`: None when this stream measures no sessions."""
        self.app = app
        self.table = table
        self.kind = kind
        self.source_topic = source_topic
        self.spec = spec
        self.limits = limits
        self.projection = projection
        self.topics = topics
        self.clock = EventClock(idle_s)
        self.commit_s = commit_s
        self.session_gap_ms = session_gap_ms
        self._lock = asyncio.Lock()  # batches and the commit timer take turns
        self._generation: int | None = None  # of everything below
        self._seen: dict[int, SeenIndex] = {}
        self._sessions: dict[int, SessionIndex] = {}
        self._final_panes: dict[int, dict[int, ClosedWindow]] = {}  # partition -> start -> pane
        self._staged: dict[int, dict[bytes, bytes | None]] = {}  # partition -> key -> value
        self._to_ack: list[tuple[Ack, TP, list[int]]] = []
        self._staged_since: float | None = None  # monotonic time of the oldest staged batch
        self._forwarded: dict[int, int] = {}  # partition -> orders watermark forwarded last

    def observe(self, record: Any, log_time_ms: int) -> Observation | Tick | OrderFacts | Rejected:
        offset = record.offset
        headers = record.headers
        if headers and is_tick(headers):
            tick = read_tick(record.value)
            if tick is None:
                return Rejected(offset, "bad_tick", "a record with the tick header but no tick_ms")
            at, by = tick
            return self._untrusted(offset, "tick", by, at, log_time_ms) or Tick(offset, at)
        if headers and is_order_facts(headers):
            read = read_order_facts(record.value)
            if read is None:
                return Rejected(offset, "bad_order_facts", "order facts header, unreadable value")
            facts, watermark, by = read
            latest = max([watermark, *(fact[2] for fact in facts)])
            untrusted = self._untrusted(offset, "order_facts", by, latest, log_time_ms)
            return untrusted or OrderFacts(offset, facts, watermark)
        try:
            event = self.kind.parse(record.value or b"", log_time_ms, self.limits)
            return Observation(
                offset, event.event_id, event_time_ms(event), *self.kind.measure(event)
            )
        except InvalidEvent as exc:
            return Rejected(offset, exc.reason, exc.detail)
        except Exception as exc:  # a bug's, not the data's fault: the record still moves on
            return processing_error(offset, exc)

    def _untrusted(
        self, offset: int, kind: str, by: str, latest_ms: int, log_time_ms: int
    ) -> Rejected | None:
        """The dead letter of a control record this app must not take (streams.control)."""
        app_id, skew_ms = self.app.conf.id, self.limits.max_future_skew_ms
        verdict = control_verdict(kind, by, latest_ms, app_id, log_time_ms, skew_ms)
        return None if verdict is None else Rejected(offset, *verdict)

    async def apply_fetched(self, fetched: Mapping[TP, list[Any]], ack: Ack) -> None:
        """The fast path: whole fetched lists of aiokafka records (timestamps in ms); their
        offsets are acked with the commit that saves their effect."""
        batch = {tp.partition: records for tp, records in fetched.items()}
        async with self._lock:
            await self._apply(batch, timestamp_unit_ms=1)
            self._to_ack.extend((ack, tp, [r.offset for r in rs]) for tp, rs in fetched.items())
            if time.monotonic() - (self._staged_since or 0.0) >= self.commit_s:
                await self._commit()

    async def apply_events(self, events: Sequence[EventT]) -> list[BatchOutcome]:
        """The Faust agent path (test_context, or a topic not delivered in batches): committed
        at once, since Faust acks the events when the agent takes the next ones."""
        batch: dict[int, list[Any]] = defaultdict(list)
        for event in events:
            batch[event.message.partition].append(event.message)
        async with self._lock:
            outcomes = await self._apply(batch, timestamp_unit_ms=1000)  # Faust's are in s
            await self._commit()
        return outcomes

    async def commit_if_due(self) -> None:
        """The commit timer's round: batches may have stopped coming (caught up)."""
        async with self._lock:
            if self._staged_since is not None and (
                time.monotonic() - self._staged_since >= self.commit_s
            ):
                await self._commit()

    async def _apply(
        self, batch: Mapping[int, list[Any]], timestamp_unit_ms: int
    ) -> list[BatchOutcome]:
        """`batch`: source partition -> its records (offset, timestamp, key, value) in order."""
        self._discard_if_rebalanced()
        outcomes: list[BatchOutcome] = []
        derived: list[Derived] = []
        now = time.monotonic()
        observe = self.observe
        for partition, records in batch.items():
            if timestamp_unit_ms == 1:  # aiokafka's: int ms already
                items = [observe(r, r.timestamp) for r in records]
            else:
                items = [observe(r, round(r.timestamp * timestamp_unit_ms)) for r in records]
            for out, records_out in self._advance(partition, items, records):
                outcomes.append(out)
                derived += records_out
            if any(type(item) not in (OrderFacts, Tick) for item in items):  # only events count
                self.clock.received(partition, now)
        # Everything derived goes out before the commit: a crash in between only repeats it
        # (same ids, same content); after the commit, redelivered events are skipped.
        send = self.app.producer.send
        acks = [await send(d.topic, d.key, d.value, d.partition, None, d.headers) for d in derived]
        for ack in acks:
            await ack
        self.projection.stage(outcomes)
        if self._staged_since is None:
            self._staged_since = now
        record_progress(self.kind.stream, outcomes)
        return outcomes

    def _advance(
        self, partition: int, items: list[Item], records: Sequence[Any]
    ) -> list[tuple[BatchOutcome, list[Derived]]]:
        """Fold `items` into the partition's staged state and encode what they derive.

        No record can stop a partition: when the fold or an encoding raises, the items are
        split in halves and each half is advanced alone (the first half staged before the
        second runs), down to the single records that raise; each of those becomes a dead
        letter `processing_error`. Only a failure with no record to blame (the partition's
        stored state itself) goes up."""
        try:
            out = apply_batch(
                partition,
                items,
                self.spec,
                self._state(partition),
                self._seen_ids(partition),
                self._open_sessions(partition),
                Progress.decode(self._state(partition).stored.get(progress_key(partition))),
                self._final_panes.setdefault(partition, {}),
            )
            derived = self._derived(out, records)
            _check_sizes(out, derived)
        except Exception as exc:
            # the fold may have advanced the in-memory indexes half-way: rebuild them from
            # the staged state, which holds only whole, encoded outcomes
            for index in (self._seen, self._sessions, self._final_panes):
                index.pop(partition, None)
            if len(items) > 1:
                half = len(items) // 2
                return [
                    *self._advance(partition, items[:half], records),
                    *self._advance(partition, items[half:], records),
                ]
            if not items or type(items[0]) is Rejected:
                raise
            return self._advance(partition, [processing_error(items[0].offset, exc)], records)
        self._staged.setdefault(partition, {}).update(out.writes)
        seen = self._seen_ids(partition)
        for bucket in out.new_buckets:
            seen.add(*bucket)
        seen.drop(out.expired_buckets)
        if self.kind.forwards_facts:
            self._forwarded[partition] = out.progress.watermark_ms
        return [(out, derived)]

    async def _commit(self) -> None:
        """Staged keys to Redis and the changelog (each once), then ack what they cover."""
        if self._discard_if_rebalanced() or self._staged_since is None:
            return
        await self.projection.flush()
        if self._discard_if_rebalanced():  # checked again just before writing the changelog
            return
        ordered = {
            partition: dict(sorted(writes.items(), key=lambda kv: WRITE_ORDER[kv[0][:1]]))
            for partition, writes in self._staged.items()
        }
        await commit_writes(self.app, self.table, ordered)
        if not self._discard_if_rebalanced():  # else the partitions' new owners redo them
            for ack, tp, offsets in self._to_ack:
                await ack(tp, offsets)
        self._staged.clear()
        self._to_ack.clear()
        self._staged_since = None

    def _discard_if_rebalanced(self) -> bool:
        """After a rebalance, what was staged or loaded belongs to the partitions' next owners:
        drop it (uncommitted offsets are redelivered to them). True if something was dropped."""
        generation = self.app.consumer_generation_id
        if generation == self._generation:
            return False
        if self._generation is not None:  # a rebalance, not the start
            assigned = self.app.consumer.assignment()
            forget_unassigned(
                self.kind.stream, {tp.partition for tp in assigned if tp.topic == self.source_topic}
            )
        self._generation = generation
        dropped = self._staged_since is not None
        self._seen.clear()
        self._sessions.clear()
        self._forwarded.clear()
        self._final_panes.clear()
        self._staged.clear()
        self._to_ack.clear()
        self._staged_since = None
        return dropped

    def _state(self, partition: int) -> StagedState:
        staged = self._staged.setdefault(partition, {})
        return StagedState(PartitionState(self.table, partition), staged)

    async def tick_idle_partitions(self) -> dict[int, int]:
        """Append a tick to each assigned source partition that is due one
        (tables.event_clock); returns partition -> tick time."""
        source_topic = self.source_topic
        consumer = self.app.consumer
        watermarks: dict[int, int] = {}
        caught_up: dict[int, bool] = {}
        for tp in consumer.assignment():
            if tp.topic != source_topic:
                continue
            progress = Progress.decode(self._state(tp.partition).get(progress_key(tp.partition)))
            watermarks[tp.partition] = progress.watermark_ms
            highwater = consumer.highwater(tp)
            caught_up[tp.partition] = highwater is not None and progress.offset + 1 >= highwater
        due = self.clock.due_ticks(watermarks, caught_up, time.monotonic())
        ceiling = round(time.time() * 1000) + self.limits.max_future_skew_ms  # see _untrusted
        due = {partition: min(at, ceiling) for partition, at in due.items()}
        for partition, at in due.items():
            value, headers = tick_record(at, self.app.conf.id)
            await self.app.producer.send(source_topic, None, value, partition, None, headers)
        return due

    def _seen_ids(self, partition: int) -> SeenIndex:
        """The partition's dedup index, read once per assignment (after a rebalance the
        partition may have been advanced elsewhere)."""
        index = self._seen.get(partition)
        if index is None:
            index = self._seen[partition] = SeenIndex.load(
                self._state(partition).items(seen_prefix(partition))
            )
        return index

    def _open_sessions(self, partition: int) -> SessionIndex | None:
        """The partition's open sessions, read once per assignment, like the dedup index."""
        if self.session_gap_ms is None:
            return None
        index = self._sessions.get(partition)
        if index is None:
            state = self._state(partition)
            index = load_sessions(partition, self.spec, self.session_gap_ms, state)
            self._sessions[partition] = index
        return index

    def _derived(self, out: BatchOutcome, records: Sequence[Any]) -> list[Derived]:
        """What one outcome sends, encoded, each with a deterministic id: window results and
        then the partition's progress (agents.window_results), session summaries, dead
        letters, late events; attribution results, late orders and order facts for the clicks
        side."""
        topics, stream = self.topics, self.kind.stream
        partitions = topics.clicks.partitions  # orders: the same (co-partitioned)
        derived = self._derived_attribution(out)
        results = topics.window_results.name
        for window in out.closed:
            result = window_result(stream, out.partition, partitions, window, self.spec.size_ms)
            key = window_key(result["kind"], window.start_ms)
            derived.append(Derived(results, key, orjson.dumps(result)))
        if out.passed_a_close:
            watermark, grace = out.progress.watermark_ms, self.spec.grace_ms
            value = orjson.dumps(
                progress_record(stream, out.partition, partitions, watermark, grace)
            )
            derived += [
                Derived(results, None, value, r) for r in range(topics.window_results.partitions)
            ]
        for session in out.sessions:
            value = orjson.dumps(session_summary(out.partition, session))
            derived.append(Derived(topics.sessions.name, session.user.encode(), value))
        if not out.dead_letters and not out.late:
            return derived
        source_at = _RecordsByOffset(records)
        for rejected in out.dead_letters:
            source = source_at[rejected.offset]
            headers = [
                *_source_headers(source),
                ("reason", rejected.reason.encode()),
                ("detail", rejected.detail.encode(errors="replace")),
            ]
            value = source.value
            if value is not None and len(value) > DEAD_LETTER_BYTES:  # the source keeps it whole
                headers.append(("truncated", str(len(value)).encode()))
                value = value[:DEAD_LETTER_BYTES]
            derived.append(Derived(topics.dead_letters.name, source.key, value, headers=headers))
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
            value = orjson.dumps(record)
            derived.append(
                Derived(topics.late_events.name, source.key, value, headers=_source_headers(source))
            )
        return derived

    def _derived_attribution(self, out: BatchOutcome) -> list[Derived]:
        """Orders side: the batch's accepted orders and watermark, forwarded to the clicks
        partition of the same number. Clicks side: attribution results and late orders."""
        topics, derived = self.topics, []
        watermark = out.progress.watermark_ms
        if self.kind.forwards_facts and (
            out.facts or watermark > self._forwarded.get(out.partition, NO_WATERMARK)
        ):
            for value, headers in order_facts_records(out.facts, watermark, self.app.conf.id):
                derived.append(Derived(topics.clicks.name, None, value, out.partition, headers))
        for pane in out.attributions:
            window = ClosedWindow(pane.start_ms, pane.start_ms + self.spec.size_ms, pane.counts, {})
            result = window_result(
                ATTRIBUTION, out.partition, topics.clicks.partitions, window, self.spec.size_ms
            )
            key = window_key("tumbling", pane.start_ms)
            derived.append(Derived(topics.window_results.name, key, orjson.dumps(result)))
        for late in out.late_orders:
            record = {
                "id": f"{topics.clicks.name}/{out.partition}/{late.offset}/{late.event_id}",
                "reason": "attribution closed: the order's facts came after its window's",
                "event_id": late.event_id,
                "occurred_at": format_timestamp(late.time_ms),
                "window_start": format_timestamp(late.pane_ms),
                "watermark": format_timestamp(late.joined_watermark_ms),
                "source": {
                    "topic": topics.clicks.name,
                    "partition": out.partition,
                    "offset": late.offset,
                },
            }
            value = orjson.dumps(record)
            derived.append(Derived(topics.late_events.name, late.event_id.encode(), value))
        return derived


@dataclass(frozen=True, slots=True)
class Derived:
    """A derived record, encoded, and where it goes (partition None: by its key)."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    headers: list[tuple[str, bytes]] | None = None


Item = Observation | Tick | OrderFacts | Rejected
DETAIL_CHARS = 500  # of an exception's message kept in a dead letter's detail
DEAD_LETTER_BYTES = 512 * 1024  # of a rejected payload copied into its dead letter


def _check_sizes(out: BatchOutcome, derived: list[Derived]) -> None:
    """Raise when a record would not fit a Kafka message (tables.bounded keeps the usual ones
    small): the batch is then split, like one that fails to encode."""
    for key, value in out.writes.items():
        if value is not None and len(value) > RECORD_BYTES:
            raise ValueError(f"state record {key[:60]!r} of {len(value)} bytes")
    for record in derived:
        if len(record.value) > RECORD_BYTES:
            raise ValueError(f"a {record.topic} record of {len(record.value)} bytes")


def processing_error(offset: int, exc: Exception) -> Rejected:
    """The dead letter of a record whose processing raised (not an invalid event)."""
    return Rejected(offset, "processing_error", f"{type(exc).__name__}: {exc}"[:DETAIL_CHARS])


class _RecordsByOffset:
    """A partition's records (offsets ascending, rarely with gaps) looked up by offset, without
    indexing them all for the few dead letters and late events of a batch."""

    def __init__(self, records: Sequence[Any]) -> None:
        self.records = records

    def __getitem__(self, offset: int) -> Any:
        records = self.records
        at = offset - records[0].offset
        if not (0 <= at < len(records) and records[at].offset == offset):
            at = bisect.bisect_left(records, offset, key=_offset_of)
        return records[at]


def _offset_of(record: Any) -> int:
    return cast(int, record.offset)


def _source_id(message: Any) -> str:
    return f"{message.topic}/{message.partition}/{message.offset}"


def _source_headers(message: Any) -> list[tuple[str, bytes]]:
    return [
        ("id", _source_id(message).encode()),
        ("source_topic", message.topic.encode()),
        ("source_partition", str(message.partition).encode()),
        ("source_offset", str(message.offset).encode()),
    ]
