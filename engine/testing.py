"""A processor driven without a broker, in the spirit of Kafka Streams' TopologyTestDriver: the
real engine.runner.Runner, unchanged, over an in-memory broker and a virtual clock.

    driver = TestDriver(processor, partitions=2, commit_s=5, idle_s=10, ticks_by="app")
    driver = TestDriver([forward, read], ...)  # a topology: one worker, several processors
    driver.produce(processor.inputs.source, b"...", partition=1)  # -> its offset
    await driver.pump()                # every undelivered input record, in fetch-like batches
    await driver.settle()              # pump and commit until no processor has more to read
    driver.advance(5)                  # virtual time, monotonic and wall
    await driver.commit_if_due()       # the commit timer's round; `commit()`: commit now
    await driver.tick()                # the tick timer's round: partition -> tick time
    driver.outputs("results")          # the records sent to that output's topic
    driver.state(0)                    # partition 0's committed state, a dict
    await driver.crash(land=3)         # a commit cut short after 3 state writes; a restart
    driver.rebalance()                 # a new generation

- `VirtualClock`: monotonic and wall seconds that move only by `advance(seconds)`.
- `MemoryBroker`: Kafka and the worker's consumer, as an engine.runner.ConsumerView, and per
  table an engine.commit.Committer (`committer(table)`). Topics are in-memory logs of
  InputRecord (timestamps in ms from the virtual wall clock unless given). A commit does what
  KafkaCommitter does: it appends the derived records (partition given, else crc32 of the key,
  else 0), and if the worker still owns its partitions applies the state writes in order to
  the table's committed state (None deletes), then records the consumer's committed offsets
  (last acked + 1 per TP). Every commit is logged in `commits` (when, the step, how many
  writes landed, whether the offsets were). The consumer fetches each assigned partition of
  the inputs from its position, which a rebalance or a restart resets to the committed offset
  (uncommitted records are delivered again); a fetch updates the highwaters the runner reads.
- `TestDriver`: processors, their broker and a runner each, as in one worker (one consumer
  group and generation, one event clock); a fetch goes to the runner reading its topic.
  `pump` hands the runners whole fetched batches as the Faust consumer does (`batch`: at most
  that many records per partition and fetch; `rng`: random split across partitions and
  topics; `topics`: fetch only those, e.g. the source before its time log). `crash(land)`:
  with `land`, the next commit (of the first processor with something staged; `after=n`: the
  one after n full ones) lands only its derived records and first `land` state writes (no
  offsets); then the worker dies: its
  staged state and the processors' indexes (`forget`) are lost and new runners over the same
  broker start from the committed offsets. `rebalance(assigned)` bumps the generation: the
  runners discard what they staged, the consumer fetches again from the committed offsets.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from faust.types import TP

from engine.commit import CommitStep, Derived, Flush, SharedOffsets
from engine.processor import InputRecord, Processor
from engine.runner import Runner, RunnerConfig
from tables.event_clock import EventClock


class VirtualClock:
    def __init__(self, wall: float = 1_767_225_600.0, monotonic: float = 0.0) -> None:
        self._wall, self._monotonic = wall, monotonic

    def monotonic(self) -> float:
        return self._monotonic

    def wall(self) -> float:
        return self._wall

    def wall_ms(self) -> int:
        return round(self._wall * 1000)

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, "time does not go back"
        self._wall += seconds
        self._monotonic += seconds


class WorkerDied(Exception):
    """Raised by a commit cut short (`MemoryBroker.cut`): the worker is gone."""


class DictStore:
    """An engine.processor.Store over a dict; `items` sorted, like RocksDB's."""

    def __init__(self, data: dict[bytes, bytes]) -> None:
        self.data = data

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def items(self, prefix: bytes) -> Iterable[tuple[bytes, bytes]]:
        return sorted((k, v) for k, v in self.data.items() if k.startswith(prefix))


@dataclass
class CommitRecord:
    at_s: float  # virtual monotonic time
    step: CommitStep
    landed: int = 0  # state writes applied
    acked: bool = False  # input offsets committed
    table: str = ""  # whose commit


class MemoryBroker:
    """Kafka and this worker's consumer in memory (see the module docstring)."""

    def __init__(
        self,
        clock: VirtualClock,
        partitions: int = 1,
        topic_partitions: dict[str, int] | None = None,
    ) -> None:
        self.clock = clock
        self.partitions = partitions
        self.topic_partitions = dict(topic_partitions or {})
        self.logs: dict[TP, list[InputRecord]] = {}
        self.tables: dict[str, dict[int, dict[bytes, bytes]]] = {}  # table -> partition -> state
        self.committed_offsets: dict[TP, int] = {}  # the consumer group's: next offset to read
        self.shared = SharedOffsets()  # topics several processors (tables) read
        self.commits: list[CommitRecord] = []
        self.cut: int | None = None  # the next commit lands this many state writes, then dies
        self.cut_after = 0  # commits that land in full before the one `cut` cuts short
        self._generation = 1
        self._assigned = set(range(partitions))
        self._positions: dict[TP, int] = {}  # the consumer's fetch positions
        self._highwaters: dict[TP, int] = {}  # as of the last fetch

    # the log

    def partitions_of(self, topic: str) -> int:
        return self.topic_partitions.get(topic, self.partitions)

    def log(self, topic: str, partition: int) -> list[InputRecord]:
        assert 0 <= partition < self.partitions_of(topic), f"{topic} has no partition {partition}"
        return self.logs.setdefault(TP(topic, partition), [])

    def produce(
        self,
        topic: str,
        value: bytes | None,
        partition: int = 0,
        key: bytes | None = None,
        timestamp_ms: int | None = None,
        headers: Any = (),
    ) -> int:
        log = self.log(topic, partition)
        at = self.clock.wall_ms() if timestamp_ms is None else timestamp_ms
        log.append(InputRecord(topic, partition, len(log), at, key, value, headers))
        return len(log) - 1

    def records(self, topic: str, partition: int | None = None) -> list[InputRecord]:
        partitions = range(self.partitions_of(topic)) if partition is None else [partition]
        return [record for p in partitions for record in self.log(topic, p)]

    # engine.commit.Committer, one per table

    def committer(self, table: str) -> TableCommitter:
        return TableCommitter(self, table)

    def committed_state(self, table: str) -> dict[int, dict[bytes, bytes]]:
        return self.tables.setdefault(table, {})

    async def _commit(
        self, table: str, step: CommitStep, owner: Callable[[], bool], flush: Flush
    ) -> None:
        if self.cut is not None and self.cut_after > 0:
            self.cut_after -= 1
            cut = None
        else:
            cut, self.cut = self.cut, None
        record = CommitRecord(self.clock.monotonic(), step, table=table)
        self.commits.append(record)
        for derived in step.sends:
            self.send(derived)
        await flush()
        if not owner():
            return
        writes = [
            (p, k, v) for p, partition_writes in step.writes.items() for k, v in partition_writes
        ]
        for partition, key, value in writes if cut is None else writes[:cut]:
            state = self.committed_state(table).setdefault(partition, {})
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
            record.landed += 1
        if cut is not None:
            raise WorkerDied(f"a commit cut short after {record.landed} of {len(writes)} writes")
        if not owner():
            return
        for tp, acked in step.offsets.items():
            offsets = self.shared.acked(table, tp, acked, self._generation)
            if offsets:
                self.committed_offsets[tp] = max(
                    self.committed_offsets.get(tp, 0), max(offsets) + 1
                )
        record.acked = True

    def send(self, derived: Derived) -> None:
        """A derived record to its topic: its partition, else crc32 of its key, else 0."""
        partition = derived.partition
        if partition is None:
            partitions = self.partitions_of(derived.topic)
            partition = 0 if derived.key is None else zlib.crc32(derived.key) % partitions
        self.produce(derived.topic, derived.value, partition, derived.key, None, derived.headers)

    # engine.runner.ConsumerView

    def generation(self) -> int | None:
        return self._generation

    def assigned(self, topic: str) -> set[int]:
        return {p for p in self._assigned if p < self.partitions_of(topic)}

    def highwater(self, topic: str, partition: int) -> int | None:
        return self._highwaters.get(TP(topic, partition))

    async def ends(self, topic: str, partitions: set[int]) -> dict[int, int]:
        return {p: len(self.log(topic, p)) for p in partitions}

    def recovered(self) -> bool:
        return True  # the memory state is there at once

    # the consumer

    def fetch(
        self,
        topics: Sequence[str],
        batch: int | None = None,
        rng: random.Random | None = None,
        budget: int | None = None,
    ) -> dict[TP, list[InputRecord]]:
        """One fetch of the assigned partitions of `topics` from their positions: up to `batch`
        records per partition (`rng`: a random number of them, in a random order of
        partitions), `budget` in all; {} when every partition is at its end."""
        pending: dict[TP, list[InputRecord]] = {}
        for topic in topics:
            for p in sorted(self.assigned(topic)):
                tp = TP(topic, p)
                log = self.log(topic, p)
                self._highwaters[tp] = len(log)
                position = self._positions.get(tp, self.committed_offsets.get(tp, 0))
                if position < len(log):
                    pending[tp] = log[position:]
        if not pending:
            return {}
        counts = {tp: len(records) if batch is None else min(batch, len(records))
                  for tp, records in pending.items()}  # fmt: skip
        order = list(pending)
        if rng is not None:
            rng.shuffle(order)
            counts = {tp: rng.randint(0, counts[tp]) for tp in order}
            if not any(counts.values()):
                counts[order[0]] = 1
        fetched: dict[TP, list[InputRecord]] = {}
        left = budget
        for tp in order:
            take = counts[tp] if left is None else min(counts[tp], left)
            if take > 0:
                fetched[tp] = pending[tp][:take]
                self._positions[tp] = pending[tp][take - 1].offset + 1
                left = None if left is None else left - take
        return fetched

    def fetch_pending(self, topics: Sequence[str]) -> bool:
        """Whether an assigned partition of `topics` has records past its fetch position."""
        return any(
            self._positions.get(TP(t, p), self.committed_offsets.get(TP(t, p), 0))
            < len(self.log(t, p))
            for t in topics
            for p in self.assigned(t)
        )

    def rebalance(self, assigned: Iterable[int] | None = None) -> None:
        """A new generation; positions go back to the committed offsets."""
        self._generation += 1
        if assigned is not None:
            self._assigned = set(assigned)
        self._positions.clear()
        self._highwaters.clear()


class TableCommitter:
    """An engine.commit.Committer of one table's state on the memory broker."""

    def __init__(self, broker: MemoryBroker, table: str) -> None:
        self.broker, self.table = broker, table

    def stored(self, partition: int) -> DictStore:
        return DictStore(self.broker.committed_state(self.table).setdefault(partition, {}))

    async def append(
        self,
        topic: str,
        partition: int,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> int:
        return self.broker.produce(topic, value, partition, key, headers=headers or ())

    async def commit(self, step: CommitStep, owner: Callable[[], bool], flush: Flush) -> None:
        await self.broker._commit(self.table, step, owner, flush)


class TestDriver:
    """Processors (one, or a topology of several sharing the broker and a worker), their
    in-memory broker and their runners (see the module docstring)."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        processor: Processor | Sequence[Processor],
        partitions: int = 1,
        commit_s: float = 1.0,
        idle_s: float = 0.0,
        ticks_by: str | None = None,
        max_skew_ms: int = 0,
        *,
        clock: VirtualClock | None = None,
        topic_partitions: dict[str, int] | None = None,
    ) -> None:
        self.processors = list(processor) if isinstance(processor, Sequence) else [processor]
        self.processor = self.processors[0]
        self.clock = clock or VirtualClock()
        self.broker = MemoryBroker(self.clock, partitions, topic_partitions)
        self.config = RunnerConfig(commit_s, idle_s, ticks_by, max_skew_ms)
        self.runners = self._start()
        self.restarts = 0

    @property
    def runner(self) -> Runner:
        return self.runners[0]

    def _start(self) -> list[Runner]:
        """The worker's runners, wired as engine.topology wires them: the first reader of a
        time log writes its ticks and hands them to the others; a topic several read is done
        once all have committed it."""
        clock, broker = self.clock, self.broker
        events = EventClock(self.config.idle_s)  # one per worker, as engine.topology has it
        runners: list[Runner] = []
        writers: dict[str, Runner] = {}
        for processor in self.processors:
            time_log = processor.inputs.time_log
            writer = writers.get(time_log) if time_log else None
            config = self.config if writer is None else replace(self.config, ticks_by=None)
            runner = Runner(
                processor,
                broker.committer(processor.table),
                broker,
                config,
                monotonic=clock.monotonic,
                wall=clock.wall,
                clock=events,
            )
            if writer is not None:
                writer.followers.append(runner)
            elif time_log is not None:
                writers[time_log] = runner
            for topic in processor.inputs.topics():
                broker.shared.reads(processor.table, topic)
            runners.append(runner)
        return runners

    def produce(
        self,
        topic: str,
        value: bytes | None,
        partition: int = 0,
        key: bytes | None = None,
        timestamp_ms: int | None = None,
        headers: Any = (),
    ) -> int:
        return self.broker.produce(topic, value, partition, key, timestamp_ms, headers)

    async def pump(
        self,
        max_records: int | None = None,
        *,
        batch: int | None = None,
        rng: random.Random | None = None,
        topics: Sequence[str] | None = None,
    ) -> int:
        """Deliver every undelivered record of the processors' inputs (or of `topics`), fetch
        by fetch, each to the runner reading it, committing when a runner finds it due; the
        number of records delivered."""
        reads = {r: r.processor.inputs.topics() for r in self.runners}  # in order: no sets
        names = tuple(topics or dict.fromkeys(t for read in reads.values() for t in read))
        delivered = 0
        while max_records is None or delivered < max_records:
            budget = None if max_records is None else max_records - delivered
            fetched = self.broker.fetch(names, batch, rng, budget)
            if not fetched:
                break
            delivered += sum(len(records) for records in fetched.values())
            for runner in self.runners:  # in order: a time log's writer before its followers
                mine = {tp: rs for tp, rs in fetched.items() if tp.topic in reads[runner]}
                if mine:
                    await runner.deliver(mine)
        return delivered

    async def settle(self, **pump: Any) -> int:
        """Pump and commit until nothing is left to deliver (a topology: what one processor
        sends, the next one reads); the number of records delivered."""
        total = 0
        while True:
            delivered = await self.pump(**pump)
            await self.commit()
            total += delivered
            if delivered == 0 and not self.broker.fetch_pending(self._topics()):
                return total

    def _topics(self) -> list[str]:
        return [t for p in self.processors for t in p.inputs.topics()]

    async def commit(self) -> None:
        """Commit what is staged now, processor by processor (Runner.deliver_now of nothing)."""
        for runner in self.runners:
            await runner.deliver_now({})

    async def commit_if_due(self) -> None:
        for runner in self.runners:
            await runner.commit_if_due()

    async def tick(self) -> dict[int, int]:
        """The tick timer's round; partition -> tick time (of the processors with time logs)."""
        due: dict[int, int] = {}
        for runner in self.runners:
            due.update(await runner.tick_idle_partitions())
        return due

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    async def crash(self, land: int | None = None, after: int = 0) -> None:
        """The worker dies (with `land`: during the next commit, after its derived records and
        first `land` state writes; `after`: once that many other commits have landed in full,
        processor by processor); a new one starts from what was committed."""
        if land is not None:
            self.broker.cut, self.broker.cut_after = land, after
            try:
                for runner in self.runners:  # the first with something staged is cut short
                    await runner.deliver_now({})
            except WorkerDied:
                pass
            finally:
                self.broker.cut, self.broker.cut_after = None, 0
        for processor in self.processors:
            for partition in range(self.broker.partitions):
                processor.forget(partition)
        self.broker.rebalance()  # the new worker joins: a new generation, from committed offsets
        self.runners = self._start()
        self.restarts += 1

    def rebalance(self, assigned: Iterable[int] | None = None) -> None:
        self.broker.rebalance(assigned)

    def outputs(
        self, name: str, partition: int | None = None, processor: Processor | None = None
    ) -> list[InputRecord]:
        """The records sent to output `name`'s topic (of `processor`, else the first), by
        partition then offset."""
        return self.broker.records((processor or self.processor).outputs[name], partition)

    def state(self, partition: int, processor: Processor | None = None) -> dict[bytes, bytes]:
        """A partition's committed state (of `processor`, else the first)."""
        table = (processor or self.processor).table
        return dict(sorted(self.broker.committed_state(table).get(partition, {}).items()))

    def committed(self, topic: str, partition: int = 0) -> int | None:
        """The consumer group's committed offset of a partition (None: none yet)."""
        return self.broker.committed_offsets.get(TP(topic, partition))
