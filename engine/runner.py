"""The runner: one processor driven over the partitions this worker owns, batch by batch.

Per delivery (whole fetched record lists of the processor's input topics, many partitions):
per partition, ticks are placed among the source records (engine.time_log) and the processor
applies the records to its state overlaid with what earlier batches staged; the writes are
staged, the records to send and the input offsets are kept for the commit. Once per commit
interval one commit step (engine.commit) makes it all durable: derived records, then the sink
(Redis), each staged key once in the keyspace's write order, then the input offsets.
A rebalance in between discards what was staged: the partition's next owner redoes it from the
committed offsets, and the offsets kept in the state make that exact.

No record stops a partition: when a batch raises (its fold, or the encoding of what it
writes), it is split in halves and each half applied alone (the first staged before the
second runs), down to the single records that raise; each is handed back to the processor
as `Poisoned`, to reject. Only a failure with no record to blame goes up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

from faust.types import TP

from engine.commit import CommitStep, Committer, Derived
from engine.processor import (
    MAX_RECORD_BYTES,
    InputRecord,
    Outcome,
    Poisoned,
    Processor,
    Record,
    Send,
)
from engine.state import StagedState
from engine.time_log import TimeLogMerge
from streams.retries import Request, copy_headers, read_request
from streams.ticks import tick_value
from tables.event_clock import EventClock

log = logging.getLogger(__name__)
CONTROL_TICK_MS = 5_000  # a control log's ticks (Inputs.wall_ticks_lead_ms) at most this often


class ConsumerView(Protocol):
    """What a runner reads of the consumer (Faust's here; memory in tests)."""

    def generation(self) -> int | None: ...

    def assigned(self, topic: str) -> set[int]: ...

    def highwater(self, topic: str, partition: int) -> int | None: ...

    async def ends(self, topic: str, partitions: set[int]) -> dict[int, int]: ...

    def recovered(self) -> bool:
        """Whether the tables of the current assignment are recovered (state readable)."""
        ...


@dataclass(frozen=True)
class RunnerConfig:
    commit_s: float  # the commit interval
    idle_s: float = 0.0  # a caught-up partition silent this long gets a tick; 0: no ticks
    ticks_by: str | None = None  # the app id that writes ticks; None: this runner writes none
    max_skew_ms: int = 0  # no tick runs further ahead of the wall clock


@dataclass
class _Staged:
    """What the batches since the last commit changed: lost in a crash, discarded on rebalance."""

    writes: dict[int, dict[bytes, bytes | None]] = field(default_factory=dict)
    step: CommitStep = field(default_factory=CommitStep)
    since: float | None = None  # monotonic time of the oldest staged batch


class Runner:
    def __init__(
        self,
        processor: Processor,
        committer: Committer,
        consumer: ConsumerView,
        config: RunnerConfig,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        clock: EventClock | None = None,
    ) -> None:
        """`clock`: the worker's event clock, shared by its runners (tables.event_clock)."""
        self.processor, self.committer, self.consumer = processor, committer, consumer
        self.config = config
        self.monotonic, self.wall = monotonic, wall
        self.clock = clock or EventClock(config.idle_s)
        self._lock = asyncio.Lock()  # deliveries, commits and ticks take turns
        self._generation: int | None = None  # of everything below
        self._staged = _Staged()
        self._merges: dict[int, TimeLogMerge] = {}  # partition -> its time log merge
        self._merges_generation: int | None = None
        self._known: set[int] = set()  # partitions the processor may keep indexes of
        # runners of this worker that read the time log this one writes: each tick written
        # goes to them at once, as to this one (engine.time_log: only the writer's ticks are
        # known before they are fetched)
        self.followers: list[Runner] = []
        self._written: dict[int, Record] = {}  # ticks applied before fetched, by id: acked then
        self._restated: set[int] = set()  # partitions restated to the sink, this generation
        self.applied_at: float | None = None  # monotonic time records were last applied

    async def deliver(self, fetched: Mapping[TP, Sequence[Record]], gate: bool = True) -> None:
        """Whole fetched record lists of the processor's inputs; committed when due.
        `gate` False: ticks are taken as they come (no consumer to ask for the time log's
        end, as under Faust's test_context)."""
        async with self._lock:
            if gate:
                await self._on_generation()
            else:
                self._discard_if_rebalanced()
            now = self.monotonic()
            by_partition: dict[int, dict[str, Sequence[Record]]] = defaultdict(dict)
            for tp, records in fetched.items():
                by_partition[tp.partition][tp.topic] = records
            source = self.processor.inputs.source
            for partition, topics in by_partition.items():
                records = self._ordered(partition, topics)
                if records:
                    self._advance(partition, records)
                await self._copy_requests(partition)
                if topics.get(source):  # only input records count as activity
                    self.clock.received((source, partition), now)
            since = self._staged.since
            if since is not None and self.monotonic() - since >= self.config.commit_s:
                await self._commit()

    async def deliver_now(self, fetched: Mapping[TP, Sequence[Record]]) -> None:
        """The Faust agent path (test_context): committed at once."""
        await self.deliver(fetched, gate=False)
        async with self._lock:
            await self._commit()

    async def commit_if_due(self) -> None:
        """The commit timer's round: deliveries may have stopped coming (caught up); then the
        restates due."""
        async with self._lock:
            since = self._staged.since
            if since is not None and self.monotonic() - since >= self.config.commit_s:
                await self._commit()
            await self._restate()

    async def _restate(self) -> None:
        """Give the sink each owned partition's state whole: once per assignment, and again
        when the sink lost what it wrote. Staged on top of what batches staged (flushed with
        their commit), or flushed now when nothing is staged (the state is then committed)."""
        sink = self.processor.sink
        if sink is None or not self.consumer.recovered():
            return
        self._discard_if_rebalanced()
        if await sink.lost():
            self._restated.clear()
        due = self.consumer.assigned(self.processor.inputs.source) - self._restated
        if not due:
            return
        for partition in sorted(due):
            sink.restate(partition, self._state(partition))
        self._restated |= due
        if self._staged.since is None:
            await sink.flush()  # failed: kept pending, sent with the next flush

    async def tick_idle_partitions(self) -> dict[int, int]:
        """Append a tick to the time log of each assigned partition that is due one
        (tables.event_clock; a control log's: engine.processor.Inputs.wall_ticks_lead_ms) and
        apply it at once; returns partition -> tick time."""
        inputs, by = self.processor.inputs, self.config.ticks_by
        time_log, lead = inputs.time_log, inputs.wall_ticks_lead_ms
        if time_log is None or by is None or not (lead or self.config.idle_s > 0):
            return {}
        async with self._lock:
            await self._on_generation()
            source = inputs.source
            watermarks: dict[tuple[str, int], int] = {}
            caught_up: dict[tuple[str, int], bool] = {}
            for partition in self.consumer.assigned(source):
                position = self.processor.position(partition, self._state(partition))
                watermarks[source, partition] = position.watermark_ms
                highwater = self.consumer.highwater(source, partition)
                merge = self._merges.get(partition)
                caught_up[source, partition] = (
                    highwater is not None
                    and position.offset + 1 >= highwater
                    and not (merge and merge.waiting())
                )
            wall_ms = round(self.wall() * 1000)
            if lead:  # a control log: its time is the wall clock's, ahead by the lead
                at = wall_ms + lead
                due = {
                    partition: at
                    for (_, partition), watermark in watermarks.items()
                    if caught_up[source, partition] and at >= watermark + CONTROL_TICK_MS
                }
            else:
                due = {
                    partition: at
                    for (_, partition), at in self.clock.due_ticks(
                        watermarks, caught_up, self.monotonic()
                    ).items()
                }
            ceiling = wall_ms + self.config.max_skew_ms  # streams.control
            for partition, at in due.items():
                position = self.processor.position(partition, self._state(partition))
                value = tick_value(min(at, ceiling), position.offset, by)
                offset = await self.committer.append(time_log, partition, value)
                tick = InputRecord(time_log, partition, offset, wall_ms, None, value)
                self._written[id(tick)] = tick  # acked once fetched
                self._advance(partition, self._ordered(partition, {time_log: [tick]}, written=True))
                for follower in self.followers:
                    await follower.take_tick(partition, tick)
                due[partition] = min(at, ceiling)
            return due

    def lag(self) -> dict[int, int]:
        """Per assigned source partition, the records between the last one applied and the
        high watermark its latest fetch reported (partitions not fetched yet left out)."""
        source = self.processor.inputs.source
        behind = {}
        for partition in self.consumer.assigned(source):
            highwater = self.consumer.highwater(source, partition)
            if highwater is not None:
                state = StagedState(  # read only: no staged entry is made for it
                    self.committer.stored(partition), self._staged.writes.get(partition, {})
                )
                applied = self.processor.position(partition, state).offset
                behind[partition] = max(highwater - applied - 1, 0)
        return behind

    async def take_tick(self, partition: int, tick: Record) -> None:
        """A tick that the runner writing this processor's time log just wrote, placed among
        the source records by its `after` (acked once fetched)."""
        time_log = self.processor.inputs.time_log
        assert time_log is not None and tick.topic == time_log, "a tick of this time log"
        async with self._lock:
            await self._on_generation()
            if partition in self.consumer.assigned(self.processor.inputs.source):
                self._written[id(tick)] = tick
                records = self._ordered(partition, {time_log: [tick]}, written=True)
                if records:
                    self._advance(partition, records)

    async def _copy_requests(self, partition: int) -> None:
        """Copy the partition's due re-injection requests into its time log, each after the
        source offset applied, and apply each copy as it is written (streams.retries); a
        request covered already, or of another source, is only acked."""
        inputs, by = self.processor.inputs, self.config.ticks_by
        merge = self._merges.get(partition)
        if inputs.retries is None or inputs.time_log is None or by is None:
            return
        if merge is None or not merge.requests:
            return
        position = self.processor.position(partition, self._state(partition))
        due, done = merge.take_requests(position.ticks_offset, position.retry_request)
        copy_now = {id(request) for request in due}
        acks = self._staged.step.offsets.setdefault(TP(inputs.retries, partition), [])
        for request in sorted(due + done, key=_offset):
            original = read_request(request.headers)
            if id(request) in copy_now and original is not None and original.topic == inputs.source:
                if original.partition != partition:
                    where = f"{request.topic}/{partition}/{request.offset}"
                    log.warning("re-injection request %s names another partition: ignored", where)
                else:
                    await self._copy(partition, request, original, by)
            acks.append(request.offset)
        if self._staged.since is None:
            self._staged.since = self.monotonic()

    async def _copy(self, partition: int, request: Record, original: Request, by: str) -> None:
        time_log = self.processor.inputs.time_log
        assert time_log is not None
        position = self.processor.position(partition, self._state(partition))
        headers = copy_headers(original, position.offset, request.offset, by)
        value = request.value or b""
        offset = await self.committer.append(time_log, partition, value, request.key, headers)
        copy = InputRecord(
            time_log, partition, offset, round(self.wall() * 1000), request.key, value, headers
        )
        self._written[id(copy)] = copy  # acked once fetched
        self._advance(partition, self._ordered(partition, {time_log: [copy]}, written=True))
        for follower in self.followers:
            await follower.take_tick(partition, copy)

    def _ordered(
        self, partition: int, topics: Mapping[str, Sequence[Record]], written: bool = False
    ) -> list[Record]:
        """The records to apply now: side inputs as they came, then the source records with
        the ticks placed among them (engine.time_log; `written`: ticks written now, not
        fetched); re-injection requests wait in the merge (`_copy_requests`)."""
        inputs = self.processor.inputs
        sides = [record for topic in inputs.sides for record in topics.get(topic, ())]
        source = topics.get(inputs.source, ())
        if inputs.time_log is None:
            return [*sides, *source]
        merge = self._merges.setdefault(partition, TimeLogMerge(None))
        if inputs.retries:
            merge.requests.extend(topics.get(inputs.retries, ()))
        position = self.processor.position(partition, self._state(partition))
        ticks = topics.get(inputs.time_log, ())
        applied, applied_ticks = position.offset, position.ticks_offset
        return [*sides, *merge.take(source, ticks, applied, applied_ticks, written)]

    def _advance(self, partition: int, records: Sequence[Record | Poisoned]) -> None:
        """Apply `records` to the partition's staged state; split them when that raises."""
        processor = self.processor
        self._known.add(partition)
        try:
            state = self._state(partition)
            settled = self.committer.stored(partition)
            out = processor.apply(partition, records, state, settled)
            sends = [self._resolve(send) for send in out.sends]
            _check_sizes(out, sends)
        except Exception as exc:
            processor.forget(partition)  # indexes advanced half-way: rebuilt from the state
            if len(records) > 1:
                half = len(records) // 2
                self._advance(partition, records[:half])
                self._advance(partition, records[half:])
                return
            record = records[0] if records else None
            if record is None or type(record) is Poisoned:
                raise
            self._advance(partition, [Poisoned(cast(Record, record), exc)])
            return
        staged = self._staged
        staged.writes.setdefault(partition, {}).update(out.writes)
        staged.step.sends += sends
        offsets = staged.step.offsets
        written = self._written
        for record in records:
            source = record.record if type(record) is Poisoned else record
            if written and written.get(id(source)) is source:
                del written[id(source)]  # a tick written here: acked once fetched
            else:
                offsets.setdefault(TP(source.topic, partition), []).append(source.offset)
        if processor.sink is not None:
            processor.sink.stage([out.staged])
        self.applied_at = now = self.monotonic()
        if staged.since is None:
            staged.since = now

    def _resolve(self, send: Send) -> Derived:
        topic = self.processor.outputs[send.output]
        return Derived(topic, send.key, send.value, send.partition, send.headers)

    async def _commit(self) -> None:
        """One commit step (the sink is flushed once its derived records are out); then
        nothing is staged."""
        if self._discard_if_rebalanced() or self._staged.since is None:
            return
        staged, keyspace, sink = self._staged, self.processor.keyspace, self.processor.sink
        staged.step.writes = {p: keyspace.ordered(w) for p, w in staged.writes.items()}
        generation = self._generation
        await self.committer.commit(
            staged.step,
            owner=lambda: self.consumer.generation() == generation,
            flush=sink.flush if sink is not None else _nothing,
        )
        self._staged = _Staged()

    def _discard_if_rebalanced(self) -> bool:
        """After a rebalance, what was staged or indexed belongs to the partitions' next owners:
        drop it (uncommitted offsets are redelivered to them). True if something was dropped."""
        generation = self.consumer.generation()
        if generation == self._generation:
            return False
        if self._generation is not None and self.processor.sink is not None:
            self.processor.sink.assigned(self.consumer.assigned(self.processor.inputs.source))
        self._generation = generation
        dropped = self._staged.since is not None
        for partition in self._known:
            self.processor.forget(partition)
        self._known.clear()
        self._staged = _Staged()
        self._merges.clear()
        self._written.clear()
        self._restated.clear()
        return dropped

    async def _on_generation(self) -> None:
        """After an assignment: what each partition's time log holds (engine.time_log)."""
        self._discard_if_rebalanced()
        time_log = self.processor.inputs.time_log
        if time_log is None or self._merges_generation == self._generation:
            return
        generation = self._generation
        partitions = self.consumer.assigned(self.processor.inputs.source)
        try:
            ends = await self.consumer.ends(time_log, partitions)
        except Exception as exc:  # a broker hiccup: ticks are taken as they come meanwhile
            log.warning("no end offsets of %s, will retry: %r", time_log, exc)
            return
        if generation == self.consumer.generation():
            for partition in partitions:  # merges made meanwhile (end unknown) keep their ticks
                self._merges.setdefault(partition, TimeLogMerge(None)).end = ends.get(partition)
            self._merges_generation = generation

    def _state(self, partition: int) -> StagedState:
        staged = self._staged.writes.setdefault(partition, {})
        return StagedState(self.committer.stored(partition), staged)


async def _nothing() -> None:
    pass


def _offset(record: Record) -> int:
    return record.offset


def _check_sizes(out: Outcome, sends: list[Derived]) -> None:
    """Raise when a record would not fit a Kafka message (processors keep the usual ones
    small): the batch is then split, like one that fails to encode."""
    for key, value in out.writes.items():
        if value is not None and len(value) > MAX_RECORD_BYTES:
            raise ValueError(f"state record {key[:60]!r} of {len(value)} bytes")
    for record in sends:
        if record.value is not None and len(record.value) > MAX_RECORD_BYTES:
            raise ValueError(f"a {record.topic} record of {len(record.value)} bytes")
