"""The windowed metrics of one input stream (clicks or orders) as an engine processor.

Per partition and batch: decode each record (an event of the source topic, a tick of the time
log, order facts from the orders side; a Poisoned record is a `processing_error`), fold them
into the window state (tables.window_state.apply_batch, over the staged state and the
partition's in-memory indexes), and encode what the batch sends, each with a deterministic
id: window results and then the partition's progress (agents.window_results), session
summaries, dead letters, late events; attribution results and late orders on the clicks side,
order facts for the clicks side on the orders side.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson

from agents.metrics import forget_unassigned, record_progress
from agents.session_summaries import session_summary
from agents.window_results import progress_record, window_key, window_result
from engine.processor import (
    InputRecord,
    Inputs,
    Outcome,
    Poisoned,
    Position,
    Record,
    Send,
    Sink,
    Store,
)
from serving.epoch import Epoch
from serving.projection import RedisProjection
from streams.control import control_verdict
from streams.dead_letters import dead_letter, processing_error_detail
from streams.eventtime import event_time_ms
from streams.late_events import EVENT_LATE, ORDER_LATE, late_event_value
from streams.order_facts import order_facts_values, read_order_facts
from streams.retries import is_retry, read_copy
from streams.ticks import read_tick
from streams.topics import Topology
from streams.validation import InvalidEvent, Limits
from tables import positions
from tables.attribution import LateOrder, OrderFacts
from tables.dedup import SeenIndex, seen_prefix
from tables.panes import ClosedWindow
from tables.sessions import SessionIndex
from tables.user_sessions import load_sessions
from tables.window_state import (
    FACTS,
    KEYSPACE,
    NO_WATERMARK,
    SOURCE,
    TICKS,
    BatchOutcome,
    Observation,
    Progress,
    Rejected,
    Retried,
    Tick,
    apply_batch,
    progress_key,
    served,
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
    reads_facts: bool = False  # clicks: join the orders side's facts (attribution)


@dataclass(frozen=True)
class WindowedConfig:
    spec: WindowSpec
    limits: Limits
    topics: Topology
    app_id: str  # writes the order facts
    clock_app_id: str  # writes the ticks this app follows
    session_gap_ms: int | None = None  # None: this stream measures no sessions


class WindowedSink:
    """Outcomes to the Redis projection and the Prometheus gauges; restated whole when Redis
    lost them (serving.epoch)."""

    def __init__(self, projection: RedisProjection, stream: str) -> None:
        self.projection, self.stream = projection, stream
        self.epoch = Epoch(projection.client, projection.app_id)

    def stage(self, staged: Sequence[Any]) -> None:
        outcomes = cast(Sequence[BatchOutcome], staged)
        self.projection.stage(outcomes)
        record_progress(self.stream, outcomes)

    async def flush(self) -> bool:
        return await self.projection.flush()

    def size(self) -> int:
        return self.projection.size()

    @property
    def failure(self) -> str:
        return self.projection.failure

    def assigned(self, partitions: set[int]) -> None:
        self.projection.keep_only(partitions)
        forget_unassigned(self.stream, partitions)

    async def lost(self) -> bool:
        return await self.epoch.changed()

    def restate(self, partition: int, state: Store) -> None:
        outcome = served(partition, state)
        if outcome.progress != Progress():  # a partition that never had a record shows none
            self.projection.stage([outcome])
        self.projection.acknowledge(partition, self.epoch.mark or "")


class WindowedMetrics:
    """An engine processor (engine.processor) over one input stream."""

    keyspace = KEYSPACE

    def __init__(self, kind: EventKind, config: WindowedConfig, sink: Sink | None) -> None:
        topics = config.topics
        clicks = kind.stream == "clicks"
        self.kind, self.config, self.sink = kind, config, sink
        self.name, self.table = kind.agent, kind.table
        self.inputs = Inputs(
            source=(topics.clicks if clicks else topics.orders).name,
            time_log=(topics.clicks_ticks if clicks else topics.orders_ticks).name,
            sides=(topics.order_facts.name,) if kind.reads_facts else (),
            # re-injections are copied into the time log: only by the app that writes it
            retries=topics.retry.name if config.app_id == config.clock_app_id else None,
        )
        self.outputs = {
            "results": topics.window_results.name,
            "sessions": topics.sessions.name,
            "dead_letters": topics.dead_letters.name,
            "late_events": topics.late_events.name,
            "order_facts": topics.order_facts.name,
        }
        self._log_of = {self.inputs.source: SOURCE, self.inputs.time_log: TICKS}
        self._log_of.update((side, FACTS) for side in self.inputs.sides)
        self._seen: dict[int, SeenIndex] = {}
        self._sessions: dict[int, SessionIndex] = {}
        self._final_panes: dict[int, dict[int, ClosedWindow]] = {}  # partition -> start -> pane
        self._forwarded: dict[int, int] = {}  # partition -> orders watermark forwarded last

    def apply(
        self, partition: int, records: Sequence[Record | Poisoned], state: Store, settled: Store
    ) -> Outcome:
        decode = self.decode
        items = [decode(record) for record in records]
        out = apply_batch(
            partition,
            items,
            self.config.spec,
            state,
            self._seen_ids(partition, state),
            self._open_sessions(partition, state),
            Progress.decode(settled.get(progress_key(partition))),
            self._final_panes.setdefault(partition, {}),
        )
        sends = self._sends(out, records)
        seen = self._seen_ids(partition, state)
        for bucket in out.new_buckets:
            seen.add(*bucket)
        seen.drop(out.expired_buckets)
        if self.kind.forwards_facts:
            self._forwarded[partition] = out.progress.watermark_ms
        return Outcome(partition, out.writes, sends, out)

    def position(self, partition: int, state: Store) -> Position:
        progress = Progress.decode(state.get(progress_key(partition)))
        return Position(
            progress.offset, progress.ticks_offset, progress.watermark_ms, progress.retry_request
        )

    def forget(self, partition: int) -> None:
        for index in (self._seen, self._sessions, self._final_panes, self._forwarded):
            index.pop(partition, None)

    def decode(
        self, record: Record | Poisoned
    ) -> Observation | Tick | Retried | OrderFacts | Rejected:
        log = self._log_of.get(record.topic, SOURCE)
        offset = record.offset
        if isinstance(record, Poisoned):
            return Rejected(offset, "processing_error", processing_error_detail(record.error), log)
        if log is SOURCE:
            return self._event(offset, record.value, record.timestamp)
        if log is TICKS:
            if is_retry(record.headers):
                return self._retried(record)
            tick = read_tick(record.value)
            if tick is None:
                return Rejected(offset, "bad_tick", "not a tick: no tick_ms, after or by", log)
            verdict = self._untrusted("tick", tick.by, tick.time_ms, record.timestamp)
            return Rejected(offset, *verdict, log) if verdict else Tick(offset, tick.time_ms)
        read = read_order_facts(record.value)
        if read is None:
            return Rejected(offset, "bad_order_facts", "not an order facts record", log)
        facts, watermark, by = read
        latest = max([watermark, *(fact[2] for fact in facts)])
        verdict = self._untrusted("order_facts", by, latest, record.timestamp)
        return Rejected(offset, *verdict, log) if verdict else OrderFacts(offset, facts, watermark)

    def _event(
        self, at: positions.Position, value: bytes | None, timestamp_ms: int
    ) -> Observation | Rejected:
        """The event at position `at` (a source offset, or a re-injected one's At), parsed at
        its record timestamp."""
        offset, log = (at, SOURCE) if type(at) is int else (at.tick, TICKS)  # type: ignore[union-attr]
        try:
            event = self.kind.parse(value or b"", timestamp_ms, self.config.limits)
            return Observation(at, event.event_id, event_time_ms(event), *self.kind.measure(event))
        except InvalidEvent as exc:
            return Rejected(offset, exc.reason, exc.detail, log)
        except Exception as exc:  # a bug's, not the data's fault: the record still moves on
            return Rejected(offset, "processing_error", processing_error_detail(exc), log)

    def _retried(self, record: Record) -> Retried | Rejected:
        """A re-injected event's copy in the time log (streams.retries): the original event,
        judged at its original record timestamp, at its place in the time log."""
        copy, offset = read_copy(record.headers), record.offset
        if copy is None:
            return Rejected(offset, "bad_retry", "retry_of without after, request or by", TICKS)
        if copy.by != self.config.clock_app_id or copy.request.topic != self.inputs.source:
            detail = f"a copy of {copy.request.source_id} by app {copy.by[:100]!r}"
            return Rejected(offset, "foreign_retry", detail, TICKS)
        at = positions.At(copy.after, offset)
        event = self._event(at, record.value, copy.request.timestamp_ms)
        return Retried(offset, copy.request_offset, event)

    def _untrusted(
        self, kind: str, by: str, latest_ms: int, log_time_ms: int
    ) -> tuple[str, str] | None:
        """The reason a control record must not be taken (streams.control), or None."""
        config = self.config
        writer = config.clock_app_id if kind == "tick" else config.app_id
        skew = config.limits.max_future_skew_ms
        return control_verdict(kind, by, latest_ms, writer, log_time_ms, skew)

    def _seen_ids(self, partition: int, state: Store) -> SeenIndex:
        """The partition's dedup index, read once per assignment (after a rebalance the
        partition may have been advanced elsewhere)."""
        index = self._seen.get(partition)
        if index is None:
            index = self._seen[partition] = SeenIndex.load(state.items(seen_prefix(partition)))
        return index

    def _open_sessions(self, partition: int, state: Store) -> SessionIndex | None:
        """The partition's open sessions, read once per assignment, like the dedup index."""
        gap_ms = self.config.session_gap_ms
        if gap_ms is None:
            return None
        index = self._sessions.get(partition)
        if index is None:
            index = load_sessions(partition, self.config.spec, gap_ms, state)
            self._sessions[partition] = index
        return index

    def _sends(self, out: BatchOutcome, records: Sequence[Record | Poisoned]) -> list[Send]:
        """What one outcome sends, encoded, by output name."""
        config, stream = self.config, self.kind.stream
        partitions = config.topics.clicks.partitions  # orders: the same (co-partitioned)
        find = _RecordsByOffset(records, self._log_of)  # indexes only when first asked
        sends = self._attribution_sends(out, find)
        for window in out.closed:
            result = window_result(stream, out.partition, partitions, window, config.spec.size_ms)
            key = window_key(result["kind"], window.start_ms)
            sends.append(Send("results", key, orjson.dumps(result)))
        if out.passed_a_close:
            watermark, grace = out.progress.watermark_ms, config.spec.grace_ms
            value = orjson.dumps(
                progress_record(stream, out.partition, partitions, watermark, grace)
            )
            results = config.topics.window_results.partitions
            sends += [Send("results", None, value, r) for r in range(results)]
        for session in out.sessions:
            value = orjson.dumps(session_summary(out.partition, session))
            sends.append(Send("sessions", session.user.encode(), value))
        for rejected in out.dead_letters:
            letter = dead_letter(
                find(rejected.log, rejected.offset), rejected.reason, rejected.detail
            )
            sends.append(Send("dead_letters", letter[0], letter[1], headers=letter[2]))
        for late in out.late:
            at = late.offset  # a re-injected event's record: its copy in the time log
            source = find(SOURCE, at) if type(at) is int else find(TICKS, at.tick)  # type: ignore[union-attr]
            late_value = late_event_value(
                source, EVENT_LATE, late.event_id, late.time_ms, late.window_start_ms,
                late.watermark_ms,
            )  # fmt: skip
            sends.append(Send("late_events", source.key, late_value))
        return sends

    def _attribution_sends(self, out: BatchOutcome, find: _RecordsByOffset) -> list[Send]:
        """Orders side: the batch's accepted orders and watermark, forwarded to the clicks
        partition of the same number. Clicks side: attribution results and late orders."""
        config, sends = self.config, []
        watermark = out.progress.watermark_ms
        if self.kind.forwards_facts and (
            out.facts or watermark > self._forwarded.get(out.partition, NO_WATERMARK)
        ):
            for value in order_facts_values(out.facts, watermark, config.app_id):
                sends.append(Send("order_facts", None, value, out.partition))
        partitions, size_ms = config.topics.clicks.partitions, config.spec.size_ms
        for pane in out.attributions:
            window = ClosedWindow(pane.start_ms, pane.start_ms + size_ms, pane.counts, {})
            result = window_result(ATTRIBUTION, out.partition, partitions, window, size_ms)
            key = window_key("tumbling", pane.start_ms)
            sends.append(Send("results", key, orjson.dumps(result)))
        for late in out.late_orders:
            value = late_event_value(
                self._order_source(find, late), ORDER_LATE, late.event_id, late.time_ms,
                late.pane_ms, late.joined_watermark_ms, within=late.source_offset < 0,
            )  # fmt: skip
            sends.append(Send("late_events", late.event_id.encode(), value))
        return sends

    def _order_source(self, find: _RecordsByOffset, late: LateOrder) -> Record:
        """A late order's source: the order's own record (the same in every version of the app,
        however its facts were batched), or its facts record when the facts predate that."""
        if late.source_offset < 0:
            return find(FACTS, late.offset)
        orders, partition = self.config.topics.orders.name, find(FACTS, late.offset).partition
        return InputRecord(orders, partition, late.source_offset, -1, None, None)


class _RecordsByOffset:
    """A partition's records (per input, offsets ascending, rarely with gaps) looked up by
    (input, offset), without indexing them all for the few dead letters and late events."""

    def __init__(self, records: Sequence[Record | Poisoned], log_of: dict[Any, str]) -> None:
        self.records, self.log_of = records, log_of
        self.by_log: dict[str, list[Record]] | None = None

    def __call__(self, log: str, offset: int) -> Record:
        if self.by_log is None:
            self.by_log = {}
            for record in self.records:
                source = record.record if isinstance(record, Poisoned) else record
                self.by_log.setdefault(self.log_of.get(source.topic, SOURCE), []).append(source)
        records = self.by_log[log]
        at = offset - records[0].offset
        if not (0 <= at < len(records) and records[at].offset == offset):
            at = bisect.bisect_left(records, offset, key=_offset_of)
        return records[at]


def _offset_of(record: Record) -> int:
    return record.offset
